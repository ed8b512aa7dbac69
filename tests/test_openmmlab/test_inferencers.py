"""mmdet's DetInferencer / init_detector and mmseg's MMSegInferencer / init_model on the
paper configs (configs/*.py), with checkpoints of random weights written by the tests.

Each inferencer gets the paper config as loaded by ``Config.fromfile``, with only the
test-time size (and, for detectors, the score threshold and the number of boxes) made
small for a CPU; the model, pipeline and dataset settings are the paper's. The T
variants are compared with a direct ``model.test_step`` of the checkpoint's weights on
the same image; S and B check that the weights in the inferencer are the checkpoint's.
"""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from product_helpers import ROOT, random_checkpoint

pytestmark = pytest.mark.usefixtures('one_thread')
DET = [f'{m}_lsnet_{v}' for m in ('retinanet', 'mask_rcnn') for v in 'tsb']
SEG = [f'fpn_lsnet_{v}_ade20k' for v in 'tsb']
SIZE = (128, 96)  # test-time (long, short) edge bounds


def config_path(name):
    return osp.join(ROOT, 'configs', name + '.py')


def small_config(name):
    """The paper config with a small test-time size and permissive detector thresholds."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(name))
    for t in cfg.test_dataloader.dataset.pipeline:
        if t.type in ('Resize', 'lsnet_mm.AlignResize'):
            t.scale = SIZE
    test_cfg = cfg.model.test_cfg
    if 'rcnn' in test_cfg:  # Mask R-CNN
        test_cfg.rpn.update(nms_pre=300, max_per_img=100)
        test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    elif cfg.default_scope == 'mmdet':  # RetinaNet
        test_cfg.update(nms_pre=300, score_thr=0.0, max_per_img=20)
    return cfg


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A 128x96 picture: shapes on a gradient."""
    h, w = 96, 128
    img = np.dstack([np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))] * 3)
    cv2.circle(img, (40, 40), 22, (20, 200, 60), -1)
    cv2.rectangle(img, (70, 30), (118, 86), (200, 40, 40), -1)
    path = str(tmp_path_factory.mktemp('img') / 'shapes.png')
    assert cv2.imwrite(path, img)
    return path


@pytest.fixture
def checkpoint(request, tmp_path):
    """A checkpoint of the parametrised config's model at PyTorch's default initial
    weights (predictions that differ from box to box); removed after the test."""
    path = random_checkpoint(config_path(request.param), str(tmp_path / 'random.pth'),
                             init_weights=False)
    yield path
    os.remove(path)


def saved(path):
    ckpt = torch.load(path, map_location='cpu')
    return ckpt['state_dict'], ckpt['meta']['dataset_meta']


def assert_weights_are(model, state_dict):
    own = model.state_dict()
    assert set(own) == set(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(own[k], v), k


def direct_prediction(cfg, state_dict, img_path):
    """``model.test_step`` of the config's model with these weights, on the config's
    test pipeline (without its annotation loader)."""
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t.type != 'LoadAnnotations'])
    data = pipeline(dict(img_path=img_path, img_id=0))
    with torch.no_grad():
        return model.test_step(pseudo_collate([data]))[0]


@pytest.mark.parametrize('checkpoint', DET, indirect=True)
def test_det_inferencer_on_paper_configs(checkpoint, image, request):
    from mmdet.apis import DetInferencer
    from mmdet.structures import DetDataSample
    name = request.node.callspec.params['checkpoint']
    state_dict, meta = saved(checkpoint)
    cfg = small_config(name)
    inferencer = DetInferencer(model=cfg, weights=checkpoint, device='cpu', show_progress=False)
    assert_weights_are(inferencer.model, state_dict)
    assert inferencer.model.dataset_meta['classes'] == meta['classes']  # from the checkpoint
    pred = inferencer(image, return_datasamples=True)['predictions'][0]
    assert isinstance(pred, DetDataSample)
    inst = pred.pred_instances
    n = len(inst)
    assert 0 < n <= 20 and inst.bboxes.shape == (n, 4) and inst.labels.max() < 80
    assert ((inst.bboxes >= -1e-3) & (inst.bboxes <= 128 + 1e-3)).all()  # image pixels
    if 'mask_rcnn' in name:
        assert inst.masks.shape == (n, 96, 128)
    if name.endswith('_t'):  # the same numbers as the checkpoint's model computes itself
        ref = direct_prediction(small_config(name), state_dict, image).pred_instances
        # predictions that differ from each other: a model without these weights fails
        assert len(ref) == n and len(inst.labels.unique()) > 1 and inst.scores.std() > 0
        torch.testing.assert_close(inst.scores, ref.scores, atol=1e-6, rtol=0)
        torch.testing.assert_close(inst.bboxes, ref.bboxes, atol=1e-3, rtol=0)
        assert torch.equal(inst.labels, ref.labels)
        if 'mask_rcnn' in name:
            assert torch.equal(inst.masks, ref.masks)


@pytest.mark.parametrize('checkpoint', SEG, indirect=True)
def test_seg_inferencer_on_paper_configs(checkpoint, image, request):
    from mmseg.apis import MMSegInferencer
    from mmseg.structures import SegDataSample
    name = request.node.callspec.params['checkpoint']
    state_dict, meta = saved(checkpoint)
    inferencer = MMSegInferencer(model=small_config(name), weights=checkpoint, device='cpu')
    assert_weights_are(inferencer.model, state_dict)
    assert inferencer.model.dataset_meta['classes'] == meta['classes']
    pred = inferencer(image, return_datasamples=True)
    assert isinstance(pred, SegDataSample)
    label = pred.pred_sem_seg.data[0]
    assert label.shape == (96, 128) and label.max() < 150  # the image's size
    if name.endswith('_t_ade20k'):
        labels = inferencer(image)['predictions']  # the label map as numpy, as it is saved
        assert np.array_equal(labels, label.numpy())
        ref = direct_prediction(small_config(name), state_dict, image).pred_sem_seg.data[0]
        assert len(label.unique()) > 1  # not a constant map: a real check
        assert torch.equal(label, ref)


@pytest.mark.parametrize('checkpoint', ['mask_rcnn_lsnet_t'], indirect=True)
def test_init_detector(checkpoint, image):
    from mmdet.apis import inference_detector, init_detector
    state_dict, meta = saved(checkpoint)
    model = init_detector(config_path('mask_rcnn_lsnet_t'), checkpoint, device='cpu',
                          cfg_options={'test_dataloader.dataset.pipeline.1.scale': SIZE})
    assert_weights_are(model, state_dict)
    assert model.dataset_meta['classes'] == meta['classes']
    inst = inference_detector(model, image).pred_instances
    assert inst.masks.shape[1:] == (96, 128) and len(inst) == len(inst.scores)


@pytest.mark.parametrize('checkpoint', ['fpn_lsnet_t_ade20k'], indirect=True)
def test_init_segmentor(checkpoint, image):
    from mmseg.apis import inference_model, init_model
    state_dict, meta = saved(checkpoint)
    # inference_model reads the config's top-level test_pipeline
    model = init_model(config_path('fpn_lsnet_t_ade20k'), checkpoint, device='cpu',
                       cfg_options={'test_pipeline.1.scale': SIZE})
    assert_weights_are(model, state_dict)
    assert model.dataset_meta['classes'] == meta['classes']
    ref = direct_prediction(small_config('fpn_lsnet_t_ade20k'), state_dict, image)
    assert torch.equal(inference_model(model, image).pred_sem_seg.data, ref.pred_sem_seg.data)
