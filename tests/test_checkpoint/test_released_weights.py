"""The released files load as released, by URL, everywhere a checkpoint goes.

A local server on 127.0.0.1 serves, under the release path
``/jameslahm/lsnet/resolve/main/``, files in the authors' exact layout
(tests/released_checkpoints.py): ``lsnet_t.pth`` (ImageNet), ``lsnet_t_retinanet.pth``
(mmdet 2.28) and ``lsnet_t_semfpn.pth`` (mmseg 0.30); TORCH_HOME is a temporary folder.
Each entry point gets the URL and must give what it gives with the upgraded local file
(tools/model_converters/convert_checkpoint.py's output): mmdet's ``DetInferencer`` and
``init_detector``, mmseg's ``MMSegInferencer`` and ``init_model``, ``tools/infer.py``,
``tools/test.py``, ``load_from`` and the backbone's ``init_cfg`` in ``tools/train.py``;
offline, the error names the URL, the cache file and the fixes.
"""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from checkpoint_server import CheckpointServer, offline_url, use_local_network
from mmengine.config import Config

import lsnet_mm  # noqa: F401
from lsnet_mm.apis import build_model_from_cfg, launch
from lsnet_mm.checkpoint import convert_released_checkpoint, read_backbone_weights
from product_helpers import (
    RETINA,
    ROOT,
    SEG,
    SEG_INFER_OPTS,
    det_opts,
    record_start_weights,
    seg_opts,
    tiny_ade,
    tiny_coco,
    tool,
)
from released_checkpoints import (
    make_mmseg030_checkpoint,
    write_imagenet_checkpoint,
    write_mmdet228_checkpoint,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('one_thread')]
infer_tool, test_tool, train_tool = tool('infer'), tool('test'), tool('train')
PAPER_RETINA = osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py')
PAPER_SEG = osp.join(ROOT, 'configs', 'fpn_lsnet_t_ade20k.py')


def small_config(path, out):
    """A paper config at 128x96 test size, every box kept, dumped to ``out``."""
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    cfg.test_dataloader.dataset.pipeline[1].scale = (128, 96)
    if cfg.default_scope == 'mmdet':
        cfg.model.test_cfg.update(nms_pre=300, score_thr=0.0, max_per_img=20)
    cfg.dump(out)
    return out


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """The server, the released files' URLs, their upgraded local copies and configs."""
    root = tmp_path_factory.mktemp('release')
    served = root / 'served'
    served.mkdir()
    retina, _ = build_model_from_cfg(PAPER_RETINA)
    shapes = {k: tuple(v.shape) for k, v in retina.state_dict().items()}
    files = dict(imagenet='lsnet_t.pth', det='lsnet_t_retinanet.pth', seg='lsnet_t_semfpn.pth')
    write_imagenet_checkpoint(str(served / files['imagenet']), 't')
    write_mmdet228_checkpoint(str(served / files['det']), 'retinanet', 't', shapes)
    make_mmseg030_checkpoint(str(served / files['seg']), 't')
    upgraded = {}
    for kind in ('det', 'seg'):
        upgraded[kind] = str(root / f'upgraded_{kind}.pth')
        torch.save(convert_released_checkpoint(str(served / files[kind])), upgraded[kind])
    img = np.dstack([np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (96, 1))] * 3)
    cv2.circle(img, (40, 40), 22, (20, 200, 60), -1)
    image = str(root / 'shapes.png')
    cv2.imwrite(image, img)
    with pytest.MonkeyPatch.context() as mp, CheckpointServer(served) as server:
        use_local_network(mp, root / 'torch_home')
        yield dict(server=server, url={k: server.url(f) for k, f in files.items()},
                   upgraded=upgraded, served=served, root=root, image=image,
                   det_cfg=small_config(PAPER_RETINA, str(root / 'retina_small.py')),
                   seg_cfg=small_config(PAPER_SEG, str(root / 'fpn_small.py')))


def predictions(result):
    return json.loads(json.dumps(result['predictions'], default=np.ndarray.tolist))


def test_inferencers_and_init_functions(release):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    url, upgraded, img = release['url'], release['upgraded'], release['image']
    det, seg = release['det_cfg'], release['seg_cfg']
    expected = predictions(DetInferencer(det, upgraded['det'], device='cpu')(img))
    assert expected[0]['scores'] and len(set(expected[0]['scores'])) > 1
    assert predictions(DetInferencer(det, url['det'], device='cpu')(img)) == expected
    by_url = inference_detector(init_detector(det, url['det'], device='cpu'), img)
    by_file = inference_detector(init_detector(det, upgraded['det'], device='cpu'), img)
    assert torch.equal(by_url.pred_instances.scores, by_file.pred_instances.scores)
    assert torch.equal(by_url.pred_instances.bboxes, by_file.pred_instances.bboxes)

    expected = MMSegInferencer(seg, upgraded['seg'], device='cpu')(img)['predictions']
    assert len(np.unique(expected)) > 1
    assert np.array_equal(MMSegInferencer(seg, url['seg'], device='cpu')(img)['predictions'],
                          expected)
    by_url = inference_model(init_model(seg, url['seg'], device='cpu'), img)
    by_file = inference_model(init_model(seg, upgraded['seg'], device='cpu'), img)
    assert torch.equal(by_url.seg_logits.data, by_file.seg_logits.data)


def test_infer_tool(release, tmp_path, capsys):
    url, img = release['url'], release['image']
    args = [img, release['det_cfg'], '--out-dir', str(tmp_path), '--no-save-vis']
    _, results = infer_tool.main(args + ['--weights', url['det']])
    with open(tmp_path / 'preds' / 'shapes.json') as f:
        by_url = json.load(f)
    infer_tool.main(args + ['--weights', release['upgraded']['det']])
    with open(tmp_path / 'preds' / 'shapes.json') as f:
        assert json.load(f) == by_url
    assert by_url['scores'] == predictions(results)[0]['scores']
    # offline: one error line naming the URL, the cache file and the fixes
    missing = offline_url('lsnet_t_maskrcnn.pth')
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: infer_tool.main([img, release['det_cfg'], '--weights', missing,
                                                 '--out-dir', str(tmp_path / 'offline')]))
    assert e.value.code == 2
    cache = osp.join(str(release['root']), 'torch_home', 'hub', 'checkpoints',
                     'lsnet_t_maskrcnn.pth')
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f'error: checkpoint {missing!r} could not be downloaded (')
    assert err.endswith(f'and is not in the cache at {cache!r}. Download the file where there '
                        f'is network access and put it at {cache!r} (where the loader looks '
                        f'for it), or give --weights the path of a local copy instead of the '
                        f'URL.')


def test_test_tool(release, tmp_path):
    data = tiny_ade(str(tmp_path / 'ade' / 'ADEChallengeData2016'), num_train=2, num_val=1)
    opts = ['--cfg-options', *SEG_INFER_OPTS]
    for k in ('test_dataloader',):
        opts += [f'{k}.num_workers=0', f'{k}.persistent_workers=False',
                 f'{k}.dataset.data_root={data}']
    by_url = test_tool.main([PAPER_SEG, release['url']['seg'], '--work-dir',
                             str(tmp_path / 'url'), *opts])
    by_file = test_tool.main([PAPER_SEG, release['upgraded']['seg'], '--work-dir',
                              str(tmp_path / 'file'), *opts])
    assert by_url == by_file and set(by_url) >= {'aAcc', 'mIoU', 'mAcc'}


def test_train_tool_load_from_and_imagenet_init_cfg(release, tmp_path, monkeypatch):
    started = record_start_weights(monkeypatch, train_tool)
    coco = tiny_coco(str(tmp_path / 'coco'))
    train_tool.main([RETINA, '--work-dir', str(tmp_path / 'det'), '--cfg-options',
                     *det_opts(coco, batch=4), f'load_from={release["url"]["det"]}'])
    upgraded = torch.load(release['upgraded']['det'])['state_dict']
    (loaded,) = started
    for k, v in loaded.items():
        if k.startswith('backbone.'):
            assert torch.equal(v, upgraded[k]), k  # the neck (64 wide) is not loaded

    # the ImageNet file as the backbone's init_cfg, by URL
    config = tmp_path / 'fpn_imagenet.py'
    config.write_text(f'_base_ = {SEG!r}\nmodel = dict(backbone=dict(init_cfg=dict('
                      f'_delete_=True, type="Pretrained", checkpoint='
                      f'{release["url"]["imagenet"]!r})))\n')
    ade = tiny_ade(str(tmp_path / 'ade' / 'ADEChallengeData2016'))
    train_tool.main([str(config), '--work-dir', str(tmp_path / 'seg'), '--cfg-options',
                     *seg_opts(ade, max_iters=1)])
    expected = read_backbone_weights(str(release['served'] / 'lsnet_t.pth'))
    loaded = started[1]
    for k, v in expected.items():
        assert torch.equal(loaded[f'backbone.{k}'], v), k
