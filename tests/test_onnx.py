"""ONNX export: onnxruntime reproduces the PyTorch outputs (backbone, eager and deploy;
whole RetinaNet network in tensor mode)."""
import os

import pytest
import torch

from lsnet_mm import LSNet
from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.apis.onnx_export import TensorModeWrapper, check_onnx, export_backbone, export_onnx
from product_helpers import tool
from test_deploy import randomize

ort = pytest.importorskip('onnxruntime')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deploy'])
def test_backbone_onnx_matches_torch(tmp_path, deploy):
    model = randomize(LSNet('t')).eval()
    if deploy:
        model.switch_to_deploy()
    path = str(tmp_path / 'lsnet_t.onnx')
    shape = (2, 3, 96, 160)  # stage-4 map 2x3: the resized attention bias is exercised
    names = export_backbone(model, path, shape)
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']
    import onnx
    graph = onnx.load(path).graph
    assert [o.name for o in graph.output] == names
    ops = {n.op_type for n in graph.node}
    assert not ops & {'ATen', 'PythonOp'}  # standard ops only (the LS aggregation included)
    if deploy:
        assert 'BatchNormalization' not in ops
    diffs = check_onnx(model, path, torch.randn(*shape))  # a new input, not the traced one
    assert len(diffs) == 4
    for abs_diff, rel_diff in diffs:
        assert abs_diff < 1e-4 and rel_diff < 1e-4


CONFIG = os.path.join(ROOT, 'configs', 'retinanet_lsnet_t.py')


@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_retinanet_network_onnx(tmp_path):
    model, _ = build_model_from_cfg(CONFIG)
    randomize(model.backbone)
    model.backbone.switch_to_deploy()
    path = str(tmp_path / 'retinanet.onnx')
    x = torch.randn(1, 3, 128, 128)
    names = export_onnx(TensorModeWrapper(model), x, path)
    assert len(names) == 10  # 5 levels x (classification, box regression)
    diffs = check_onnx(TensorModeWrapper(model), path, torch.randn(1, 3, 128, 128))
    assert max(rel for _, rel in diffs) < 1e-4


@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_export_tool_loads_checkpoint_and_deploys(tmp_path):
    """tools/deployment/export_onnx.py: the graph computes the checkpoint's weights."""
    from lsnet_mm.apis.onnx_export import run_onnxruntime
    from lsnet_mm.checkpoint import CheckpointError
    model, _ = build_model_from_cfg(CONFIG)
    randomize(model.backbone, seed=3)
    ckpt = str(tmp_path / 'retinanet.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'onnx' / 'backbone.onnx')
    export = tool('deployment/export_onnx')
    diffs = export.main([CONFIG, '--checkpoint', ckpt, '--backbone-only', '--deploy',
                         '--shape', '64', '96', '--out', out])
    assert len(diffs) == len(model.backbone.out_indices)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model.backbone.switch_to_deploy()(x)
    for r, g in zip(ref, run_onnxruntime(out, x)):  # differs by O(1) with random weights
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
    import onnx
    assert 'BatchNormalization' not in {n.op_type for n in onnx.load(out).graph.node}

    sd = model.state_dict()
    sd.pop(next(k for k in sd if k.startswith('neck.')))
    torch.save(dict(state_dict=sd), ckpt)
    with pytest.raises(CheckpointError, match='does not fit'):
        export.main([CONFIG, '--checkpoint', ckpt, '--backbone-only', '--shape', '64', '64',
                     '--out', out])
