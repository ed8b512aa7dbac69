"""mmengine file backends of the project (registered in ``mmengine.fileio``'s backends)."""
from .safe_checkpoint_backend import SAFE_CHECKPOINT_BACKEND, TMP_PREFIX, SafeCheckpointBackend

__all__ = ['SAFE_CHECKPOINT_BACKEND', 'SafeCheckpointBackend', 'TMP_PREFIX']
