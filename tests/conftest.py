"""Test settings: at most two compute threads (one per worker when pytest-xdist runs
several: ``tools/run_tests.sh`` does), a fixed seed per test. lsnet_mm is the
installed (editable) package; the helper modules of this folder (product_helpers, ...)
import because pytest puts this folder (no __init__.py) on sys.path."""
import os

import pytest
import setuptools  # noqa: F401 (see below)
import torch

# inductor's C++ builder imports setuptools lazily (torch.utils.cpp_extension), and
# setuptools then replaces whatever distutils is loaded, asserting that it gets its own;
# in a long-lived xdist worker where another test's libraries had loaded the standard
# library's distutils first (mmengine's collect_env imports it), that assertion failed
# once in CI (test_compile_inductor_lsconv_matches_eager). Importing setuptools before any
# test settles distutils once for the whole worker.

_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='module')
def one_thread():
    """One compute thread for a module: on the 2-core CI machine a second one competing
    with other work made model runs 2-3x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
