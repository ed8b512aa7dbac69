"""LSNetFPN in the paper's three settings, on LSNet-T features."""
import pytest
import torch

from lsnet_mm import LSNet, LSNetFPN

SETTINGS = {
    # name: (neck kwargs, expected output strides)
    'retinanet': (dict(start_level=0, add_extra_convs='on_input', num_outs=5),
                  [8, 16, 32, 64, 128]),
    'mask_rcnn': (dict(start_level=0, num_outs=5, num_extra_trans_convs=1), [4, 8, 16, 32, 64]),
    'semantic_fpn': (dict(num_outs=4), [8, 16, 32, 64]),
}


@pytest.mark.parametrize('name', list(SETTINGS))
def test_outputs_and_strides(name):
    kwargs, strides = SETTINGS[name]
    backbone = LSNet('t').eval()
    neck = LSNetFPN(in_channels=[64, 128, 256, 384], out_channels=32, **kwargs).eval()
    h, w = 256, 384
    with torch.no_grad():
        outs = neck(backbone(torch.randn(1, 3, h, w)))
    assert len(outs) == len(strides)
    assert [(h // o.shape[2], w // o.shape[3]) for o in outs] == [(s, s) for s in strides]
    assert all(o.shape[1] == 32 for o in outs)


def test_key_names_follow_mmdet_fpn_and_extra_levels():
    neck = LSNetFPN(in_channels=[64, 128, 256, 384], out_channels=16, num_outs=5,
                    num_extra_trans_convs=1)
    keys = set(neck.state_dict())
    assert {'extra_trans_convs.0.conv.weight', 'extra_trans_convs.0.conv.bias',
            'extra_fpn_convs.0.conv.weight', 'lateral_convs.0.conv.weight',
            'fpn_convs.3.conv.weight'} <= keys
    assert isinstance(neck.extra_trans_convs[0].conv, torch.nn.ConvTranspose2d)
    assert neck.extra_trans_convs[0].conv.kernel_size == (2, 2)
    assert neck.extra_trans_convs[0].conv.stride == (2, 2)


def test_extra_level_is_built_from_finest_top_down_lateral():
    neck = LSNetFPN(in_channels=[8, 8], out_channels=8, num_outs=3,
                    num_extra_trans_convs=1).eval()
    feats = [torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)]
    with torch.no_grad():
        outs = neck(feats)
        lat0 = neck.lateral_convs[0](feats[0])
        lat1 = neck.lateral_convs[1](feats[1])
        finest = lat0 + torch.nn.functional.interpolate(lat1, scale_factor=2, mode='nearest')
        expected = neck.extra_fpn_convs[0](neck.extra_trans_convs[0](finest))
    torch.testing.assert_close(outs[0], expected)
    torch.testing.assert_close(outs[1], neck.fpn_convs[0](finest))


def test_bad_extra_count():
    with pytest.raises(ValueError, match='num_extra_trans_convs'):
        LSNetFPN(in_channels=[8, 8], out_channels=8, num_outs=2, num_extra_trans_convs=2)
