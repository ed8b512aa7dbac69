"""Optional dependencies: the parts of lsnet_mm that need mmcv, mmdet or mmseg."""
import importlib


def is_installed(package: str) -> bool:
    """Whether ``package`` imports.

    Args:
        package (str): A top-level package name such as 'mmdet'.

    Returns:
        bool: False when it is missing (or blocked with ``sys.modules[name] = None``).
    """
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True
