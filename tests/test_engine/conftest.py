"""The engine tests: unit tests of the hooks, the wrapper, the checkpoint backend, the
work dir lock and resuming, on mmengine Runners of a toy model (engine_toys.py, which
this folder's conftest puts on the import path) that train in milliseconds."""
