"""Every error the project raises on purpose, under one base class.

A tool (``tools/*.py``, through :func:`lsnet_mm.apis.launch.run_tool`) turns any
:class:`LSNetError` into one line, ``error: MESSAGE``, on stderr and exits with
status 2; the message names the file or setting at fault and the fix. Anything else
is a bug and keeps its traceback.

Each class also derives from the built-in exception a caller would expect
(``ValueError`` for bad values, ``RuntimeError`` for states, ``OSError`` for files),
and takes a single message argument, so mmengine's registry, which re-raises an
error of a module's constructor as ``type(e)(f'class ...: {e}')``, keeps the type.
"""


class LSNetError(Exception):
    """Base of the errors a user can cause; the message says what and how to fix it."""


class ConfigError(LSNetError, ValueError):
    """A config value, command-line flag or output path that cannot work."""


class DatasetError(LSNetError, ValueError):
    """A dataset whose files or annotations would fail the run or give wrong numbers."""


class ImageDecodeError(DatasetError):
    """An image or label map listed by a dataset cannot be read or decoded."""


class SegLabelError(DatasetError):
    """A label map holds values that are no class nor the ignore index, or is misshapen."""


class CheckpointError(LSNetError, RuntimeError):
    """A checkpoint that cannot be used: missing, damaged, unsafe or of another model."""


class CheckpointSaveError(LSNetError, OSError):
    """A checkpoint could not be written (e.g. no space left); earlier ones are intact."""


class NonFiniteLossError(LSNetError, RuntimeError):
    """Training diverged: a loss, a gradient norm or the weights became NaN or infinite."""


class WorkDirLockedError(LSNetError, RuntimeError):
    """Another training run is using the same work dir."""


class ExportError(LSNetError, ValueError):
    """A model (or part of it) that the exporter does not support."""


__all__ = ['CheckpointError', 'CheckpointSaveError', 'ConfigError', 'DatasetError',
           'ExportError', 'ImageDecodeError', 'LSNetError', 'NonFiniteLossError',
           'SegLabelError', 'WorkDirLockedError']
