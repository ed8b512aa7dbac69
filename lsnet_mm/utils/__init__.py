"""The bottom layer: errors and optional-dependency checks, imported by every other part."""
from .errors import (
                     CheckpointError,
                     CheckpointSaveError,
                     ConfigError,
                     DatasetError,
                     ExportError,
                     ImageDecodeError,
                     LSNetError,
                     NonFiniteLossError,
                     SegLabelError,
                     WorkDirLockedError,
)
from .optional import is_installed

__all__ = ['CheckpointError', 'CheckpointSaveError', 'ConfigError', 'DatasetError',
           'ExportError', 'ImageDecodeError', 'LSNetError', 'NonFiniteLossError',
           'SegLabelError', 'WorkDirLockedError', 'is_installed']
