"""CPUFallbackDDP in a CPU process group (torchrun + gloo, as tools/train.py sets up
without CUDA): DDP refuses a CPU module holding SyncBN; the wrapper reverts every
SyncBN layer (nested ones too) to BN sharing the parameters and buffers, wraps without
device ids, and the model trains."""
import pytest
import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.SyncBatchNorm(8),
                         nn.Sequential(nn.Conv2d(8, 4, 1), nn.SyncBatchNorm(4)))


@pytest.fixture
def cpu_process_group(tmp_path):
    assert not dist.is_initialized()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def test_reverts_sync_bn_and_wraps_without_device_ids(cpu_process_group):
    with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU'):
        MMDistributedDataParallel(module=net(), device_ids=None)
    module = net()
    weights = [module[1].weight, module[2][1].weight]
    running_var = module[2][1].running_var
    # what Runner.wrap_model does in a distributed run
    ddp = MODEL_WRAPPERS.build(dict(type='lsnet_mm.CPUFallbackDDP'),
                               default_args=dict(module=module, device_ids=[0]))
    assert type(ddp).__name__ == 'CPUFallbackDDP' and ddp.device_ids is None
    assert ddp.module is module  # the same model, its SyncBN layers replaced
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
    assert [type(m).__name__ for m in module.modules()].count('_BatchNormXd') == 2
    assert module[1].weight is weights[0] and module[2][1].weight is weights[1]
    assert module[2][1].running_var is running_var
    ddp(torch.randn(2, 3, 8, 8)).sum().backward()
    assert weights[0].grad is not None and int(module[1].num_batches_tracked) == 1
