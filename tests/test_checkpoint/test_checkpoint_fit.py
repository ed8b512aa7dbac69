"""Released checkpoints fit the configs as released; a mismatch is explained by its cause.

The released COCO (mmdet 2.28) and ADE20K (mmseg 0.30) files are written in the
authors' layout (tests/released_checkpoints.py) and load strictly into the mmdet 3 /
mmseg 1 models of configs/; lsnet_mm.models.utils.checkpoint_fit names what differs
otherwise: the backbone arch, the neck widths, the class counts, missing modules.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import lsnet_mm  # noqa: F401
from lsnet_mm import LSNet
from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.checkpoint import load_state_dict, resize_attention_biases
from lsnet_mm.models.utils.checkpoint_fit import (
    check_state_dict_fits,
    compare_state_dict,
    explain_mismatch,
)
from lsnet_mm.utils.errors import CheckpointError
from released_checkpoints import (
    NECK_IN,
    ROOT,
    make_mmseg030_checkpoint,
    write_imagenet_checkpoint,
    write_mmdet228_checkpoint,
)

pytestmark = pytest.mark.usefixtures('one_thread')
_MODELS, _FILES = {}, {}  # built / written once per module


def model_of(name, **options):
    """The model of configs/NAME.py (options merged in), built once per module."""
    key = (name, tuple(sorted(options.items())))
    if key not in _MODELS:
        cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
        cfg.merge_from_dict(options)
        _MODELS[key] = build_model_from_cfg(cfg)[0]
    return _MODELS[key]


def shapes_of(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mmdet228(folder, name, **kwargs):
    """A released detector for configs/NAME.py: (path, state dict), written once."""
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _FILES:
        detector, arch = name.split('_lsnet_')
        path = str(folder / f'lsnet_{arch}_{detector}_{len(_FILES)}.pth')
        _FILES[key] = path, write_mmdet228_checkpoint(path, detector, arch,
                                                      shapes_of(model_of(name)), **kwargs)
    return _FILES[key]


def mmseg030(folder, arch):
    """A released ADE20K segmentor of LSNet-ARCH: (path, state dict), written once."""
    if arch not in _FILES:
        path = str(folder / f'lsnet_{arch}_semfpn.pth')
        _FILES[arch] = path, make_mmseg030_checkpoint(path, arch)
    return _FILES[arch]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    return tmp_path_factory.mktemp('released')


def error(model, sd, name='ckpt.pth', what='checkpoint'):
    with pytest.raises(CheckpointError) as e:
        check_state_dict_fits(model, sd, name, what)
    return str(e.value)


@pytest.mark.parametrize('name', ['retinanet_lsnet_t', 'mask_rcnn_lsnet_t', 'mask_rcnn_lsnet_s'])
def test_released_detectors_load_as_released(files, name):
    path, released = mmdet228(files, name)
    model = model_of(name)
    check_state_dict_fits(model, load_state_dict(path), path)  # what tools/test.py checks
    ckpt = load_checkpoint(model, path, map_location='cpu', strict=True)
    assert ckpt['meta']['mmdet_version'] == '2.28.2'
    own = model.state_dict()
    assert set(own) == set(released)
    assert all(torch.equal(own[k], v) for k, v in released.items())


def test_released_tables_of_another_grid_fit_and_are_upgraded(files):
    path, released = mmdet228(files, 'retinanet_lsnet_t', grid=4, module_prefix='module.')
    model = model_of('retinanet_lsnet_t')
    sd = load_state_dict(path)
    assert explain_mismatch(model, sd) == ''
    check_state_dict_fits(model, sd, path)
    load_checkpoint(model, path, map_location='cpu', strict=True)
    key = 'backbone.blocks4.3.mixer.m.attention_biases'
    assert torch.equal(model.state_dict()[key], resize_attention_biases(released[key], 14))


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_released_segmentors_load_as_released(files, arch):
    path, sd = mmseg030(files, arch)
    model = model_of(f'fpn_lsnet_{arch}_ade20k')
    own = model.state_dict()
    assert set(sd) == set(own), (sorted(set(sd) - set(own))[:5], sorted(set(own) - set(sd))[:5])
    check_state_dict_fits(model, load_state_dict(path), path)
    ckpt = load_checkpoint(model, path, map_location='cpu', strict=True)
    assert ckpt['meta']['mmseg_version'] == '0.30.0'
    new = model.state_dict()
    assert all(torch.equal(new[k], v) for k, v in sd.items())


@pytest.mark.parametrize('name,option,entry', [
    ('retinanet_lsnet_t', {'model.bbox_head.num_classes': 3},
     'bbox_head.retina_cls.weight (720, 256, 3, 3) in the checkpoint vs (27, 256, 3, 3) in '
     'the model (bbox_head.num_classes=3, the checkpoint implies num_classes=80)'),
    ('mask_rcnn_lsnet_t', {'model.roi_head.bbox_head.num_classes': 3,
                           'model.roi_head.mask_head.num_classes': 3},
     'roi_head.bbox_head.fc_cls.weight (81, 1024) in the checkpoint vs (4, 1024) in the '
     'model (roi_head.bbox_head.num_classes=3, the checkpoint implies num_classes=80)'),
])
def test_other_class_counts_are_named(files, name, option, entry):
    path, released = mmdet228(files, name)
    model = model_of(name, **option)
    msg = error(model, released, path, 'resume checkpoint')
    assert msg.startswith(f'resume checkpoint {path!r} was trained for a different number of '
                          f'classes than the model: {entry}; ')
    assert msg.endswith('start a training run with load_from=CHECKPOINT (the heads are then '
                        'skipped).')
    # the entries the non-strict load_from warning names
    assert entry in compare_state_dict(model, released)['heads']


def test_segmentor_of_other_class_count_is_named(files):
    path, _ = mmseg030(files, 't')
    msg = error(model_of('fpn_lsnet_t_ade20k', **{'model.decode_head.num_classes': 6}),
                load_state_dict(path), path)
    assert ('decode_head.conv_seg.weight (150, 128, 1, 1) in the checkpoint vs (6, 128, 1, 1) '
            'in the model (decode_head.num_classes=6, the checkpoint implies num_classes=150)'
            ) in msg and msg.startswith(f'checkpoint {path!r} was trained for a different')


def test_other_arch_is_named_with_its_neck(files):
    path, released = mmdet228(files, 'retinanet_lsnet_s')
    msg = error(model_of('retinanet_lsnet_t'), released, path)
    assert msg.startswith(
        f"checkpoint {path!r} does not fit the model of this config: backbone: the "
        f"checkpoint's backbone is LSNet-s (embed dims (96, 192, 320, 448), depths (1, 2, 8, "
        f"10)), the config has arch='t' (embed dims (64, 128, 256, 384), depths (0, 2, 8, "
        f"10)); use the LSNet-t checkpoint or set arch='s' [")
    assert msg.endswith(
        f' | neck: neck.lateral_convs.* widths differ: the neck was trained for in_channels '
        f'{NECK_IN["s"]}, the model has in_channels {NECK_IN["t"]} (5 tensors of these '
        f'widths). Use the config the checkpoint was trained with, or change the settings '
        f'named here to match the checkpoint.')
    assert 'bbox_head' not in msg and 'classes' not in msg


def test_neck_width_change_is_no_class_count_change(files):
    path, released = mmdet228(files, 'retinanet_lsnet_t')
    model = model_of('retinanet_lsnet_t', **{'model.neck.out_channels': 128,
                                             'model.bbox_head.in_channels': 128})
    assert explain_mismatch(model, released) == (
        'neck: neck was trained with out_channels [256], the model has [128] (18 tensors of '
        'these widths) | bbox_head: 2 tensors take inputs of width 256 in the checkpoint, 128 '
        'in the model (the width of what feeds them changed, not the classes), e.g. '
        'bbox_head.cls_convs.0.conv.weight')
    assert compare_state_dict(model, released)['heads'] == []


def test_missing_and_extra_modules_are_named(files, tmp_path):
    path, released = mmdet228(files, 'retinanet_lsnet_t')
    no_head = {k: v for k, v in released.items() if not k.startswith('bbox_head.')}
    no_head['ema_backbone_patch_embed_0_c_weight'] = torch.zeros(1)
    assert explain_mismatch(model_of('retinanet_lsnet_t'), no_head) == (
        "bbox_head: not in the checkpoint (20 tensors missing) | ema_backbone_patch_embed_0_c_"
        "weight: in the checkpoint but not in the model (1 tensor) (EMA copies of mmdet 2's "
        "EMAHook: convert the file with tools/model_converters/convert_checkpoint.py)")
    # an ImageNet classifier for the backbone alone: its heads, nothing else (the 4x4
    # tables and their index buffers are upgraded while loading)
    write_imagenet_checkpoint(str(tmp_path / 'lsnet_t.pth'), 't')
    imagenet = load_state_dict(str(tmp_path / 'lsnet_t.pth'))
    assert explain_mismatch(LSNet('t'), imagenet) == (
        'LSNet: 6 unexpected (head.bn.weight, head.l.weight, head.l.bias, and 3 more)')
    assert explain_mismatch(LSNet('s'), imagenet).startswith(
        "LSNet: the checkpoint's backbone is LSNet-t (embed dims (64, 128, 256, 384), depths "
        "(0, 2, 8, 10)), the config has arch='s' (embed dims (96, 192, 320, 448), depths (1, "
        "2, 8, 10)); use the LSNet-s checkpoint or set arch='t' [24 missing (")
