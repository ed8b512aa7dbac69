"""SyncBN that does not stop CPU runs.

The segmentation recipe normalises the decode head with SyncBN. In a single process
mmengine's Runner reverts SyncBN to plain BN itself (and PyTorch's ``SyncBatchNorm``
falls back to plain batch norm while no process group exists). A multi-process CPU
run (torchrun with the gloo backend, which ``tools/train.py`` sets up without CUDA) is
left: DistributedDataParallel refuses a CPU module holding SyncBN ("SyncBatchNorm
layers only work with GPU modules"), and SyncBN cannot synchronise CPU tensors anyway.

``CPUFallbackDDP`` (the segmentation configs' ``model_wrapper_cfg``) is mmengine's
``MMDistributedDataParallel``; for a module on the CPU it first reverts SyncBN to BN
(each process then normalises with its own batch) and wraps without ``device_ids``.
On GPUs it is ``MMDistributedDataParallel`` unchanged.
"""
import torch
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


def _sync_bn_types():
    types = [torch.nn.SyncBatchNorm]
    try:
        from mmcv.ops import SyncBatchNorm as MMSyncBN
        types.append(MMSyncBN)
    except ImportError:  # pragma: no cover - mmcv without compiled ops
        pass
    return tuple(types)


def revert_sync_bn_inplace(module: torch.nn.Module) -> int:
    """Replace every SyncBN layer inside ``module`` by a plain BN layer.

    The new layers share the parameters and buffers of the SyncBN layers they replace.

    Args:
        module (torch.nn.Module): The model (``module`` itself is not replaced).

    Returns:
        int: The number of layers replaced.
    """
    types = _sync_bn_types()
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, types):
            setattr(module, name, revert_sync_batchnorm(child))
            count += 1
        else:
            count += revert_sync_bn_inplace(child)
    return count


@MODEL_WRAPPERS.register_module()
class CPUFallbackDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also wraps CPU modules holding SyncBN.

    See the module docstring. For a module on the CPU, SyncBN layers are reverted to BN
    and no ``device_ids`` / ``output_device`` are passed on.

    Args:
        module (torch.nn.Module): The model to wrap.
        device_ids (list[int], optional): As for ``MMDistributedDataParallel`` (ignored
            for CPU modules). Defaults to None.
        **kwargs: The other arguments of ``MMDistributedDataParallel``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        param = next(module.parameters(), None)
        if param is not None and param.device.type == 'cpu':
            n = revert_sync_bn_inplace(module)
            if n:
                print_log(f'CPUFallbackDDP: {n} SyncBN layers reverted to BN (SyncBN cannot '
                          f'synchronise CPU tensors; each process normalises its own batch).',
                          logger='current')
            device_ids = None  # CPU modules are wrapped without device ids
            kwargs.pop('output_device', None)
        super().__init__(module=module, device_ids=device_ids, **kwargs)
