"""SyncBN that does not stop CPU runs.

The segmentation recipe normalises the decode head with SyncBN. In a single process
mmengine's Runner reverts SyncBN to plain BN itself (and PyTorch's ``SyncBatchNorm``
falls back to plain batch norm while no process group exists). A multi-process CPU
run (torchrun with the gloo backend, which ``tools/train.py`` sets up without CUDA) is
left: DistributedDataParallel refuses a CPU module holding SyncBN ("SyncBatchNorm
layers only work with GPU modules"), and SyncBN cannot synchronise CPU tensors anyway.

``CPUFallbackDDP`` (the segmentation configs' ``model_wrapper_cfg``) is mmengine's
``MMDistributedDataParallel``; for a module on the CPU it first reverts SyncBN to BN
with mmengine's ``revert_sync_batchnorm`` (each process then normalises with its own
batch; the BN layers share the SyncBN layers' parameters and buffers) and wraps
without ``device_ids``. On GPUs it is ``MMDistributedDataParallel`` unchanged.
"""
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from ...registry import MODEL_WRAPPERS


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
            before = [type(m) for m in module.modules()]
            module = revert_sync_batchnorm(module)  # the same module, SyncBN layers replaced
            reverted = sum(a is not type(m) for a, m in zip(before, module.modules()))
            if reverted:
                print_log(f'CPUFallbackDDP: {reverted} SyncBN layers reverted to BN (SyncBN '
                          f'cannot synchronise CPU tensors; each process normalises its own '
                          f'batch).', logger='current')
            device_ids = None  # CPU modules are wrapped without device ids
            kwargs.pop('output_device', None)
        super().__init__(module=module, device_ids=device_ids, **kwargs)
