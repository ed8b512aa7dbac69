"""Inference on image files with an mmdet or mmseg config and a checkpoint
(the library behind ``tools/infer.py``).

* :func:`read_image` - any image OpenCV reads, as 8-bit BGR (the training loader's
  conversion: grayscale -> 3 channels, alpha dropped, 16-bit -> 8-bit), with an
  :class:`~lsnet_mm.detection.ImageDecodeError` naming a missing, empty, truncated
  or undecodable file;
* :func:`init_model` - the model of a config with the weights of a checkpoint, read
  weights-only (:func:`lsnet_mm.checkpoint.load_checkpoint_file`: pickled code in the
  file is never run), checked to fit the model, optionally in deploy mode;
* :func:`build_pipeline` / :func:`predict` - the config's test pipeline on an array;
* :func:`det_to_dict`, :func:`seg_label_map` - predictions as JSON-able data (COCO
  RLE masks) or a label map; :func:`build_visualizer` - mmdet's ``DetLocalVisualizer``
  or mmseg's ``SegLocalVisualizer`` for the model's classes.
"""
import copy
import io
import uuid

import numpy as np
import torch

from .checkpoint import extract_state_dict, load_checkpoint_file
from .detection.transforms import ImageDecodeError

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation'}
# transforms that read files: the images are decoded by read_image, and inference has
# no annotations to load
_LOADERS = ('LoadImageFromFile', 'LoadImageFromNDArray', 'CheckedLoadImageFromFile',
            'LoadMultiChannelImageFromFiles', 'InferencerLoader')
_ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadPanopticAnnotations', 'LoadDepthAnnotation',
                       'LoadProposals', 'LoadSemSegAnnotations')


class InferenceError(RuntimeError):
    """Inference cannot run with these inputs; the message says why and what to do."""


# ----------------------------------------------------------------------------- images

def _png_bit_depth(content):
    # IHDR: 8-byte signature, 4-byte length, b'IHDR', width, height, bit depth, colour type
    if content[:8] == b'\x89PNG\r\n\x1a\n' and content[12:16] == b'IHDR' and len(content) >= 26:
        return content[24], content[25]
    return None, None


def probe_image(content):
    """What the file holds before conversion: {'mode', 'bit_depth'} (Pillow's mode name:
    'L' grayscale, 'RGBA', 'I;16' 16-bit grayscale, ...); {} if Pillow cannot tell."""
    info = {}
    try:
        from PIL import Image
        with Image.open(io.BytesIO(content)) as im:
            info['mode'] = im.mode
            info['format'] = im.format
    except Exception:  # not readable by Pillow: OpenCV may still decode it
        pass
    depth, colour = _png_bit_depth(content)
    if depth is not None:
        info['bit_depth'] = int(depth)
        info['mode'] = {0: 'L', 2: 'RGB', 3: 'P', 4: 'LA', 6: 'RGBA'}.get(colour, info.get('mode'))
    elif 'mode' in info:
        info['bit_depth'] = 16 if 'I;16' in info['mode'] else (
            32 if info['mode'] in ('I', 'F') else 8)
    return info


def read_image(path):
    """Read an image file as an 8-bit, 3-channel BGR array; returns (array, info).

    The conversion is the one of the training pipelines (mmcv's ``LoadImageFromFile``
    with its defaults ``color_type='color'``, OpenCV backend): grayscale becomes three
    equal channels, an alpha channel is dropped, 16 bits per channel become 8 (the
    high byte, i.e. full-range scaling), EXIF orientation is applied. ``info`` tells
    what the file held (:func:`probe_image`). 32-bit and floating-point images are
    refused (OpenCV would clip them to 0/255 without a word).
    """
    import mmcv
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f'image not found: {path!r}') from e
    except IsADirectoryError as e:
        raise ImageDecodeError(f'{path!r} is a folder, not an image file') from e
    if not content:
        raise ImageDecodeError(f'image file {path!r} is empty (0 bytes): it was not fully '
                               f'written or copied; re-copy or regenerate it.')
    info = probe_image(content)
    if info.get('bit_depth', 8) > 16 or info.get('mode') in ('I', 'F'):
        raise ImageDecodeError(
            f'image {path!r} has {info.get("bit_depth")}-bit {info.get("mode")} pixels, which '
            f'have no standard mapping to 8 bits (the network takes 8-bit images): convert it '
            f'to an 8- or 16-bit PNG first, scaling its value range as it should be seen.')
    try:
        img = mmcv.imfrombytes(content, flag='color', backend='cv2')
    except Exception as e:  # cv2.error and friends
        raise ImageDecodeError(f'could not decode image {path!r}: {type(e).__name__}: '
                               f'{str(e).strip()}') from e
    if img is None:
        raise ImageDecodeError(
            f'could not decode image {path!r} ({len(content)} bytes): the file is truncated, '
            f'corrupted or not in an image format OpenCV reads (JPEG, PNG, BMP, TIFF, WebP, '
            f'...); re-download, re-copy or convert it.')
    return img, info


# ----------------------------------------------------------------------------- model

def detect_task(cfg):
    """'mmdet' or 'mmseg': the config's default_scope, else the library that registers
    the model type."""
    scope = cfg.get('default_scope')
    if scope in TASKS:
        return scope
    typ = cfg.get('model', {}).get('type', '')
    if isinstance(typ, str) and typ.split('.')[0] in TASKS:
        return typ.split('.')[0]
    import mmdet.models  # noqa: F401 (registers)
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    if typ in SEG.module_dict:
        return 'mmseg'
    if typ in DET.module_dict:
        return 'mmdet'
    raise InferenceError(
        f'cannot tell whether config {cfg.filename!r} is a detector or a segmentor: '
        f'default_scope is {scope!r} and model type {typ!r} is registered by neither mmdet '
        f'nor mmseg. Set default_scope = "mmdet" or "mmseg" in the config.')


def _drop_pretrained(node):
    """The checkpoint provides all weights: no init_cfg/pretrained file is read."""
    if isinstance(node, dict):
        if 'pretrained' in node:
            node['pretrained'] = None
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for v in node.values():
            _drop_pretrained(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _drop_pretrained(v)


def _default_dataset_meta(cfg, scope):
    """classes/palette of the config's test dataset: metainfo, else the dataset type's."""
    from mmengine.registry import DATASETS
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    ds = loader.get('dataset', {})
    while isinstance(ds, dict) and 'dataset' in ds and 'type' in ds and 'metainfo' not in ds:
        ds = ds['dataset']
    meta = dict(ds.get('metainfo') or {}) if isinstance(ds, dict) else {}
    typ = ds.get('type') if isinstance(ds, dict) else None
    cls = None
    try:
        cls = DATASETS.get(typ) if isinstance(typ, str) else typ
    except Exception:  # pragma: no cover - unknown type
        pass
    base = dict(getattr(cls, 'METAINFO', {}) or {})
    if meta.get('classes') and base.get('palette') and 'palette' not in meta:
        # a subset of the dataset's classes keeps their colours
        names = list(base.get('classes', ()))
        if all(c in names for c in meta['classes']):
            meta['palette'] = [base['palette'][names.index(c)] for c in meta['classes']]
    for k in ('classes', 'palette'):
        if k not in meta and k in base:
            meta[k] = base[k]
    return meta


def _num_classes(model):
    for name in ('bbox_head', 'roi_head', 'decode_head'):
        head = getattr(model, name, None)
        if name == 'roi_head' and head is not None:
            head = getattr(head, 'bbox_head', None)
        n = getattr(head, 'num_classes', None)
        if isinstance(n, int):
            return n
    return None


def complete_dataset_meta(meta, num_classes):
    """classes and a palette for every class the model predicts."""
    meta = dict(meta or {})
    classes = list(meta.get('classes') or [])
    if num_classes is not None and len(classes) != num_classes:
        classes = classes[:num_classes] + [f'class_{i}' for i in range(len(classes), num_classes)]
    meta['classes'] = tuple(classes)
    palette = [tuple(int(v) for v in c) for c in (meta.get('palette') or [])]
    if len(palette) < len(classes):
        rng = np.random.RandomState(42)
        extra = rng.randint(0, 256, size=(len(classes) - len(palette), 3))
        palette += [tuple(int(v) for v in c) for c in extra]
    meta['palette'] = palette[:len(classes)]
    return meta


def build_model_from_cfg(cfg):
    """The config's model, built in its library's registry (mmdet or mmseg, from the
    config) without reading the pretrained backbone file. Returns ``(model, scope)``."""
    from mmengine.registry import init_default_scope
    scope = detect_task(cfg)
    init_default_scope(scope)
    if scope == 'mmdet':
        import mmdet.models  # noqa: F401
        from mmdet.registry import MODELS
    else:
        import mmseg.models  # noqa: F401
        from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    _drop_pretrained(model_cfg)
    if scope == 'mmseg' and cfg.get('data_preprocessor') and 'data_preprocessor' not in model_cfg:
        model_cfg['data_preprocessor'] = cfg.data_preprocessor
    return MODELS.build(model_cfg), scope


def init_model(config, checkpoint, device='cpu', deploy=False, cfg_options=None):
    """Build the model of ``config`` (path or Config) and load ``checkpoint`` into it.

    The checkpoint is read weights-only and must fit the model (a
    :class:`~lsnet_mm.preflight.PreflightError` names the mismatch). Returns
    ``(model, cfg, scope)`` with ``model.dataset_meta`` holding classes and palette
    (from the checkpoint's meta, else the config's dataset) and ``model.cfg``.
    """
    from mmengine.config import Config
    from .preflight import check_checkpoint_fits

    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    cfg = copy.deepcopy(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # the file first: a damaged or unsafe checkpoint fails before the model is built
    ckpt = load_checkpoint_file(checkpoint, what='checkpoint')
    sd = extract_state_dict(ckpt, checkpoint)
    model, scope = build_model_from_cfg(cfg)
    check_checkpoint_fits(model, checkpoint, cfg)
    model.load_state_dict(sd, strict=False)  # fit checked; index buffers are rebuilt

    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    dataset_meta = dict(meta.get('dataset_meta') or {})
    if not dataset_meta.get('classes') and meta.get('CLASSES'):  # mmdet 2.x checkpoints
        dataset_meta = dict(classes=tuple(meta['CLASSES']))
    default = _default_dataset_meta(cfg, scope)
    if not dataset_meta.get('classes'):
        dataset_meta = default
    elif not dataset_meta.get('palette') and default.get('palette') and \
            tuple(default.get('classes', ())) == tuple(dataset_meta['classes']):
        dataset_meta['palette'] = default['palette']
    model.dataset_meta = complete_dataset_meta(dataset_meta, _num_classes(model))
    model.cfg = cfg
    if torch.device(device).type == 'cpu':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    model.to(device)
    model.eval()
    if deploy:
        from .deploy import switch_model_to_deploy
        switch_model_to_deploy(model, strict=True)
    return model, cfg, scope


# ----------------------------------------------------------------------------- pipeline

def _type_name(t):
    t = t if isinstance(t, str) else getattr(t, '__name__', str(t))
    return t.split('.')[-1]


def test_pipeline_cfg(cfg):
    """The test pipeline of ``cfg`` (test_dataloader's dataset, else test_pipeline)."""
    loader = cfg.get('test_dataloader') or {}
    ds = loader.get('dataset') or {}
    while isinstance(ds, dict) and 'pipeline' not in ds:
        if isinstance(ds.get('dataset'), dict):
            ds = ds['dataset']
        elif isinstance(ds.get('datasets'), (list, tuple)) and ds['datasets']:
            ds = ds['datasets'][0]
        else:
            break
    pipeline = ds.get('pipeline') if isinstance(ds, dict) else None
    pipeline = pipeline or cfg.get('test_pipeline')
    if not pipeline:
        raise InferenceError(f'config {cfg.filename!r} has no test pipeline '
                             f'(test_dataloader.dataset.pipeline or test_pipeline)')
    return copy.deepcopy(list(pipeline))


def build_pipeline(cfg):
    """The test pipeline without its file and annotation loaders (images come decoded
    from :func:`read_image`)."""
    from mmengine.dataset import Compose
    steps = []
    for t in test_pipeline_cfg(cfg):
        name = _type_name(t.get('type'))
        if name in ('TestTimeAug', 'MultiScaleFlipAug'):
            raise InferenceError(
                f'the test pipeline of {cfg.filename!r} uses {name} (test-time augmentation), '
                f'which tools/infer.py does not merge; use a config with a single-scale test '
                f'pipeline (or tools/test.py for TTA evaluation).')
        if name in _LOADERS or name in _ANNOTATION_LOADERS:
            continue
        steps.append(t)
    return Compose(steps)


def predict(model, pipeline, img, path=None, img_id=0):
    """Run the model on one BGR uint8 image; returns the library's data sample with
    predictions in the image's own coordinates / size."""
    results = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                   img_path=path, img_id=img_id)
    data = pipeline(results)
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad():
        return model.test_step(batch)[0]


# ----------------------------------------------------------------------------- outputs

def filter_instances(sample, score_thr):
    """A copy of a DetDataSample keeping the predictions with score >= score_thr."""
    out = sample.clone()
    inst = sample.pred_instances
    out.pred_instances = inst[inst.scores >= score_thr]
    return out


def masks_to_rle(masks):
    """(N, H, W) bool masks -> COCO RLE dicts with ``counts`` as str."""
    import pycocotools.mask as mask_util
    masks = np.asarray(masks, dtype=np.uint8)
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    return [dict(size=[int(s) for s in r['size']], counts=r['counts'].decode('ascii'))
            for r in rles]


def det_to_dict(sample, classes):
    """Predictions of a (filtered) DetDataSample as plain JSON data: xyxy boxes in
    pixels of the input image, scores, labels, class names and COCO RLE masks."""
    inst = sample.pred_instances.cpu()
    labels = [int(v) for v in inst.labels]
    out = dict(
        bbox_format='xyxy',
        bboxes=[[round(float(v), 2) for v in b] for b in inst.bboxes],
        scores=[round(float(s), 5) for s in inst.scores],
        labels=labels,
        class_names=[classes[i] if 0 <= i < len(classes) else f'class_{i}' for i in labels])
    if 'masks' in inst:
        m = inst.masks
        m = m.numpy() if isinstance(m, torch.Tensor) else getattr(m, 'masks', np.asarray(m))
        out['masks'] = masks_to_rle(m)
    return out


def seg_label_map(sample):
    """The predicted class index per pixel as uint8 (uint16 past 256 classes), (H, W)."""
    seg = sample.pred_sem_seg.data.squeeze(0).cpu().numpy()
    dtype = np.uint8 if seg.max(initial=0) < 256 else np.uint16
    return seg.astype(dtype)


def build_visualizer(scope, dataset_meta, alpha=0.6):
    """mmdet's DetLocalVisualizer or mmseg's SegLocalVisualizer for these classes."""
    name = f'lsnet_infer_{uuid.uuid4().hex[:8]}'
    if scope == 'mmdet':
        from mmdet.visualization import DetLocalVisualizer
        vis = DetLocalVisualizer(name=name, alpha=alpha)
        vis.dataset_meta = dict(classes=dataset_meta['classes'], palette=dataset_meta['palette'])
    else:
        from mmseg.visualization import SegLocalVisualizer
        vis = SegLocalVisualizer(name=name, alpha=alpha)
        vis.set_dataset_meta(classes=list(dataset_meta['classes']),
                             palette=[list(c) for c in dataset_meta['palette']])
    return vis


def draw(vis, scope, img_bgr, sample, out_file):
    """Draw the predictions over the image (RGB for the visualizer) and save the PNG."""
    rgb = np.ascontiguousarray(img_bgr[..., ::-1])
    kwargs = dict(pred_score_thr=-1.0) if scope == 'mmdet' else dict(with_labels=True)
    vis.add_datasample('image', rgb, data_sample=sample, draw_gt=False, draw_pred=True,
                       show=False, out_file=out_file, **kwargs)

