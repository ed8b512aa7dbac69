"""LSNetFPN in the paper's three settings, on LSNet-T features; neck widths checked
against the LSNet arch, on the config and at the first forward pass."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from lsnet_mm import LSNet, LSNetFPN
from lsnet_mm.models.utils import check_neck_widths, lsnet_out_channels
from lsnet_mm.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures('one_thread')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WIDTHS_TABLE = 'Widths of the LSNet stages 0-3 per arch: t [64, 128, 256, 384], s [96, 192, ' \
    '320, 448], b [128, 256, 384, 512].'

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
    h, w = 128, 256
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


def test_neck_width_mismatch_named_at_the_first_forward():
    """mmdet's/mmseg's own tools and the inferencers build the model without the tools'
    checks: LSNetFPN names the mismatch instead of a conv shape error."""
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_lsnet_s.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.in_channels = [64, 128, 256, 384]
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad(), pytest.raises(ConfigError) as e:
        model._forward(torch.zeros(1, 3, 64, 64))
    assert str(e.value) == (
        "model.neck.in_channels=[64, 128, 256, 384] does not fit the backbone (LSNet arch 's'), "
        'whose outputs have [96, 192, 320, 448] channels: set model.neck.in_channels='
        '[96, 192, 320, 448] (or the backbone arch the neck was written for). ' + WIDTHS_TABLE)


def test_neck_widths_checked_on_the_config():
    model = dict(backbone=dict(type='LSNet', arch='s', out_indices=(1, 3)),
                 neck=dict(type='LSNetFPN', in_channels=[192, 448]))
    assert lsnet_out_channels(model['backbone']) == (
        "LSNet-s (arch='s', out_indices=(1, 3))", [192, 448])
    check_neck_widths(Config(dict(model=model)))  # fits: no error
    model['neck']['in_channels'] = [128, 384]
    with pytest.raises(ConfigError) as e:
        check_neck_widths(Config(dict(model=model)))
    assert str(e.value) == (
        "model.neck.in_channels=[128, 384] does not fit LSNet-s (arch='s', out_indices=(1, 3)), "
        'whose outputs have [192, 448] channels: set model.neck.in_channels=[192, 448] (or '
        'the backbone arch the neck was written for). ' + WIDTHS_TABLE)
    # other backbones and necks without a list of widths are not checked
    assert lsnet_out_channels(dict(type='ResNet', depth=50)) is None
    check_neck_widths(Config(dict(model=dict(backbone=dict(type='ResNet'),
                                             neck=dict(in_channels=[1])))))
