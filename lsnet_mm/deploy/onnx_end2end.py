"""End-to-end export graphs: image in, detections or a label map out.

The modules here wrap a built mmdet detector or mmseg segmentor so that
``torch.onnx.export`` traces the whole inference, as mmdeploy's end-to-end models do:

* input ``input``: float32 (1, 3, H, W), BGR pixel values 0-255 of an image already at
  the network's input size; the data preprocessor's channel order, normalisation and
  padding (detectors: to ``pad_size_divisor``) are in the graph;
* detectors (:class:`End2EndDetector`; single-stage anchor heads such as RetinaNet, and
  RPN + RoI-head two-stage detectors such as Mask R-CNN): ``dets`` (1, N, 5: x1, y1, x2,
  y2, score, in the input's pixels) and ``labels`` (1, N) int64, best score first; Mask
  R-CNN also ``masks`` (1, N, M, M), the mask head's probabilities of each detection's
  class in its box (paste them into the image with :func:`paste_masks`, as mmdeploy's
  models leave that to the caller too);
* segmentors (:class:`End2EndSegmentor`): ``seg`` (1, 1, H, W) int64 class indices.

Box decoding (the heads' own box coders and anchor generators), the score threshold,
``nms_pre``, ``min_bbox_size``, NMS and ``max_per_img`` follow the model's ``test_cfg``
the way mmdet's ``predict_by_feat`` applies them, with ONNX ``NonMaxSuppression`` and
``RoiAlign`` (:mod:`lsnet_mm.deploy.onnx_ops`). The graphs are traced with
data-dependent shapes (the number of boxes) and, with dynamic axes, any input size.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.errors import ExportError
from .onnx_ops import batched_nms, roi_align

DET_OUTPUTS = ('dets', 'labels')
MASK_OUTPUTS = ('dets', 'labels', 'masks')
SEG_OUTPUTS = ('seg',)


def preprocess(data_preprocessor: nn.Module, x: Tensor, pad_divisor: int = 1) -> Tensor:
    """Channel order and normalisation of a data preprocessor, then padding.

    Args:
        data_preprocessor (nn.Module): mmdet's / mmseg's data preprocessor (mmengine's
            ``ImgDataPreprocessor`` attributes: ``mean``, ``std``, channel conversion).
        x (Tensor): (B, 3, H, W) BGR 0-255 images.
        pad_divisor (int): Pad bottom and right with the preprocessor's pad value to a
            multiple of this. Defaults to 1 (no padding).

    Returns:
        Tensor: The network's input.
    """
    p = data_preprocessor
    if getattr(p, '_channel_conversion', getattr(p, 'channel_conversion', False)):
        x = x[:, [2, 1, 0]]
    if getattr(p, '_enable_normalize', False):
        x = (x - p.mean.view(1, -1, 1, 1)) / p.std.view(1, -1, 1, 1)
    if pad_divisor > 1:
        h, w = x.shape[-2:]
        pad = getattr(p, 'pad_value', getattr(p, 'pad_val', 0))
        x = F.pad(x, [0, (-w) % pad_divisor, 0, (-h) % pad_divisor], value=float(pad))
    return x


def _cfg(cfg, key, default=None):
    return cfg.get(key, default) if cfg is not None else default


def _nms_cfg(cfg) -> Tuple[float, bool]:
    """(IoU threshold, class agnostic) of a ``test_cfg``'s ``nms``; plain NMS only."""
    nms = dict(_cfg(cfg, 'nms') or {})
    if nms.get('type', 'nms') != 'nms' or 'iou_threshold' not in nms:
        raise ExportError(f"end-to-end ONNX export supports plain NMS only, but the model's "
                          f'test_cfg has nms={nms}: set nms=dict(type=\'nms\', '
                          f'iou_threshold=...) in model.test_cfg (e.g. with --cfg-options) '
                          f'to export it')
    return float(nms['iou_threshold']), bool(nms.get('class_agnostic', False))


def _clip(boxes: Tensor, h, w) -> Tensor:
    """Clip (N, 4) boxes to [0, w] x [0, h] (``h``/``w``: ints or traced sizes)."""
    size = torch.stack([torch.as_tensor(w), torch.as_tensor(h)]).to(boxes).repeat(2)
    return torch.minimum(boxes.clamp(min=0), size)


def _decode(head: nn.Module, priors: Tensor, deltas: Tensor, h, w) -> Tensor:
    """The head's own box coder (no ``max_shape``: clipped here, traceably)."""
    from mmdet.structures.bbox import get_box_tensor
    boxes = get_box_tensor(head.bbox_coder.decode(priors, deltas)).reshape(-1, 4)
    if getattr(head.bbox_coder, 'clip_border', True):
        boxes = _clip(boxes, h, w)
    return boxes


def _level_scores(head: nn.Module, cls_score: Tensor) -> Tensor:
    """(1, A * C', H, W) logits -> (H * W * A, C) class probabilities."""
    s = cls_score.permute(0, 2, 3, 1).reshape(-1, head.cls_out_channels)
    return s.sigmoid() if head.use_sigmoid_cls else s.softmax(-1)[:, :-1]


def _top(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` best of a 1-D tensor, padded with -1 scores when it is shorter.

    A fixed ``k`` keeps ``TopK`` valid for every input size of a dynamic-shape graph;
    the padding never passes a score threshold >= 0.
    """
    scores = torch.cat([scores, scores.new_full((k,), -1.0)])
    return scores.topk(k)


def _size_filter(boxes: Tensor, min_size) -> Tensor:
    """Indices of the boxes wider and taller than ``min_size`` (mmdet's ``min_bbox_size``)."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return ((wh[:, 0] > min_size) & (wh[:, 1] > min_size)).nonzero().reshape(-1)


def dense_head_candidates(head: nn.Module, cls_scores: Sequence[Tensor],
                          bbox_preds: Sequence[Tensor], h, w
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Scored boxes of an anchor head before NMS, as mmdet's ``_predict_by_feat_single``.

    Per level: the ``nms_pre`` best (anchor, class) scores above ``score_thr``; their
    anchors and deltas decoded by the head's box coder; boxes no larger than
    ``min_bbox_size`` dropped.

    Args:
        head (nn.Module): An mmdet anchor head (``prior_generator``, ``bbox_coder``,
            ``test_cfg``).
        cls_scores (Sequence[Tensor]): Per level (1, A * C, H, W) logits.
        bbox_preds (Sequence[Tensor]): Per level (1, A * 4, H, W) deltas.
        h: Image height (int or traced size).
        w: Image width.

    Returns:
        tuple[Tensor, Tensor, Tensor]: (K, 4) boxes, (K,) scores, (K,) int64 labels.
    """
    cfg = head.test_cfg
    nms_pre = _cfg(cfg, 'nms_pre', -1)
    thr = _cfg(cfg, 'score_thr', 0)
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    sel_priors, sel_deltas, sel_scores, sel_labels = [], [], [], []
    for cls, box, anchors in zip(cls_scores, bbox_preds, priors):
        scores = _level_scores(head, cls)
        num_classes = scores.shape[1]
        deltas = box.permute(0, 2, 3, 1).reshape(-1, head.bbox_coder.encode_size)
        flat = scores.reshape(-1)
        if nms_pre > 0:
            flat, idx = _top(flat, nms_pre)
        else:
            idx = torch.arange(flat.shape[0], device=flat.device)
        keep = (flat > thr).nonzero().reshape(-1)
        flat, idx = flat[keep], idx[keep]
        anchor = torch.div(idx, num_classes, rounding_mode='floor')
        sel_priors.append(anchors[anchor])
        sel_deltas.append(deltas[anchor])
        sel_scores.append(flat)
        sel_labels.append(idx % num_classes)
    boxes = _decode(head, torch.cat(sel_priors), torch.cat(sel_deltas), h, w)
    scores, labels = torch.cat(sel_scores), torch.cat(sel_labels)
    min_size = _cfg(cfg, 'min_bbox_size', -1)
    if min_size >= 0:
        ok = _size_filter(boxes, min_size)
        boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    return boxes, scores, labels


def rpn_proposals(head: nn.Module, cls_scores: Sequence[Tensor],
                  bbox_preds: Sequence[Tensor], h, w) -> Tensor:
    """Region proposals of an mmdet ``RPNHead``, as its ``_predict_by_feat_single``.

    Per level the ``nms_pre`` best anchors, decoded; ``min_bbox_size`` filter; NMS within
    each level; the ``max_per_img`` best.

    Args:
        head (nn.Module): The RPN head.
        cls_scores (Sequence[Tensor]): Per level (1, A, H, W) objectness logits.
        bbox_preds (Sequence[Tensor]): Per level (1, A * 4, H, W) deltas.
        h: Image height (int or traced size).
        w: Image width.

    Returns:
        Tensor: (K, 4) proposals, best first.
    """
    cfg = head.test_cfg
    nms_pre = _cfg(cfg, 'nms_pre', -1)
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    sel = [[], [], [], []]  # priors, deltas, scores, level ids
    for level, (cls, box, anchors) in enumerate(zip(cls_scores, bbox_preds, priors)):
        scores = _level_scores(head, cls).reshape(-1)
        deltas = box.permute(0, 2, 3, 1).reshape(-1, head.bbox_coder.encode_size)
        if nms_pre > 0:
            scores, idx = _top(scores, nms_pre)
            keep = (scores >= 0).nonzero().reshape(-1)  # drop the padding
            scores, idx = scores[keep], idx[keep]
            anchors, deltas = anchors[idx], deltas[idx]
        sel[0].append(anchors)
        sel[1].append(deltas)
        sel[2].append(scores)
        sel[3].append(torch.full_like(scores, level, dtype=torch.long))
    boxes = _decode(head, torch.cat(sel[0]), torch.cat(sel[1]), h, w)
    scores, levels = torch.cat(sel[2]), torch.cat(sel[3])
    min_size = _cfg(cfg, 'min_bbox_size', -1)
    if min_size >= 0:
        ok = _size_filter(boxes, min_size)
        boxes, scores, levels = boxes[ok], scores[ok], levels[ok]
    keep = batched_nms(boxes, scores, levels, _nms_cfg(cfg)[0])
    return boxes[keep][:cfg['max_per_img']]


def extract_roi_feats(extractor: nn.Module, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """Pool RoI features as mmdet's ``SingleRoIExtractor``, with ONNX ``RoiAlign``.

    Each RoI is pooled from the level mmdet's ``map_roi_levels`` picks for its size. The
    graph pools every RoI at every level and keeps the picked one (no data-dependent
    scatter; the same numbers).

    Args:
        extractor (nn.Module): The RoI extractor (``roi_layers``: mmcv ``RoIAlign``).
        feats (Sequence[Tensor]): Feature levels, finest first.
        rois (Tensor): (K, 5) RoIs (batch index, x1, y1, x2, y2).

    Returns:
        Tensor: (K, C, S, S) RoI features.
    """
    layers = extractor.roi_layers
    n = len(layers)
    out = None
    lvls = extractor.map_roi_levels(rois, n) if n > 1 else None
    for i, layer in enumerate(layers):
        if getattr(layer, 'pool_mode', 'avg') != 'avg' or getattr(layer, 'use_torchvision',
                                                                  False):
            raise ExportError("end-to-end ONNX export supports mmcv RoIAlign with "
                              "pool_mode='avg' only: set roi_layer=dict(type='RoIAlign', "
                              "pool_mode='avg', ...) in the RoI extractors of model.roi_head")
        f = roi_align(feats[i], rois, layer.output_size, layer.spatial_scale,
                      layer.sampling_ratio, layer.aligned)
        out = f if out is None else torch.where((lvls == i)[:, None, None, None], f, out)
    return out


def _rois(boxes: Tensor) -> Tensor:
    return torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], 1)


def _detections(boxes: Tensor, scores: Tensor, labels: Tensor, cfg) -> Tuple[Tensor, Tensor]:
    """Class-aware NMS and ``max_per_img`` (mmdet's ``_bbox_post_process``)."""
    iou, class_agnostic = _nms_cfg(cfg)
    keep = batched_nms(boxes, scores, labels, iou, class_agnostic)[:cfg['max_per_img']]
    return torch.cat([boxes[keep], scores[keep, None]], 1), labels[keep]


class End2EndDetector(nn.Module):
    """An mmdet detector from BGR image to ``dets``, ``labels`` (and ``masks``).

    Supported: single-stage detectors whose head is an mmdet anchor head with the stock
    post-processing (RetinaNet and the like), and two-stage detectors with an
    ``RPNHead`` and a ``StandardRoIHead`` (Faster / Mask R-CNN).

    Args:
        model (nn.Module): The detector (eval mode; weights loaded).

    Raises:
        ExportError: The detector's kind is not supported.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.two_stage = hasattr(model, 'rpn_head') and hasattr(model, 'roi_head')
        if self.two_stage:
            self.with_mask = bool(getattr(model.roi_head, 'with_mask', False))
            _check_roi_head(model.roi_head)
        else:
            self.with_mask = False
            _check_dense_head(getattr(model, 'bbox_head', None))

    @property
    def output_names(self) -> Tuple[str, ...]:
        """tuple[str]: ``('dets', 'labels')``, plus ``'masks'`` with a mask head."""
        return MASK_OUTPUTS if self.with_mask else DET_OUTPUTS

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Detect objects in one image.

        Args:
            x (Tensor): (1, 3, H, W) BGR 0-255 image.

        Returns:
            tuple[Tensor]: ``dets`` (1, N, 5), ``labels`` (1, N) and, with a mask head,
            ``masks`` (1, N, M, M).
        """
        h, w = x.shape[2], x.shape[3]
        pre = self.model.data_preprocessor
        feats = self.model.extract_feat(
            preprocess(pre, x, int(getattr(pre, 'pad_size_divisor', 1))))
        if not self.two_stage:
            head = self.model.bbox_head
            outs = head(feats)
            if len(outs) != 2:  # e.g. ATSS's centerness: score factors are not handled
                raise ExportError(f'end-to-end ONNX export supports heads with class and '
                                  f'box outputs only; {type(head).__name__} has {len(outs)} '
                                  f'outputs: export a RetinaNet-like head instead, or the '
                                  f'network alone (tools/deployment/export_onnx.py '
                                  f'--backbone-only)')
            boxes, scores, labels = dense_head_candidates(head, *outs, h, w)
            dets, labels = _detections(boxes, scores, labels, head.test_cfg)
            return dets[None], labels[None]
        rpn_cls, rpn_box = self.model.rpn_head(feats)
        proposals = rpn_proposals(self.model.rpn_head, rpn_cls, rpn_box, h, w)
        dets, labels = self._rcnn(feats, proposals, h, w)
        if not self.with_mask:
            return dets[None], labels[None]
        return dets[None], labels[None], self._masks(feats, dets, labels)[None]

    def _rcnn(self, feats, proposals, h, w):
        roi_head = self.model.roi_head
        bbox_head, cfg = roi_head.bbox_head, roi_head.test_cfg
        rois = _rois(proposals)
        roi_feats = extract_roi_feats(roi_head.bbox_roi_extractor,
                                      feats[:roi_head.bbox_roi_extractor.num_inputs], rois)
        cls_score, bbox_pred = bbox_head(roi_feats)
        scores = F.softmax(cls_score, dim=-1)[:, :-1]
        num_rois, num_classes = scores.shape
        per_class = 1 if bbox_head.reg_class_agnostic else num_classes
        boxes = _decode(bbox_head, proposals.repeat_interleave(per_class, dim=0),
                        bbox_pred.reshape(-1, bbox_head.bbox_coder.encode_size), h, w)
        boxes = boxes.reshape(num_rois, per_class, 4).expand(-1, num_classes, -1)
        labels = torch.arange(num_classes, device=scores.device).expand(num_rois, -1)
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
        keep = (scores > cfg['score_thr']).nonzero().reshape(-1)
        return _detections(boxes[keep], scores[keep], labels[keep], cfg)

    def _masks(self, feats, dets, labels):
        roi_head = self.model.roi_head
        extractor = roi_head.mask_roi_extractor
        mask_feats = extract_roi_feats(extractor, feats[:extractor.num_inputs],
                                       _rois(dets[:, :4]))
        preds = roi_head.mask_head(mask_feats)
        if getattr(roi_head.mask_head, 'class_agnostic', False):
            preds = preds[:, 0]
        else:
            preds = preds[torch.arange(preds.shape[0], device=preds.device), labels]
        return preds.sigmoid()


def _check_dense_head(head):
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    ok = (isinstance(head, AnchorHead) and type(head)._predict_by_feat_single
          is BaseDenseHead._predict_by_feat_single)
    if not ok:
        raise ExportError(
            f'end-to-end ONNX export supports anchor heads with mmdet\'s stock '
            f'post-processing (RetinaNet-like) and RPN + StandardRoIHead detectors, but '
            f'model.bbox_head is {type(head).__name__}: export the backbone alone '
            f'(--backbone-only) or use a supported head')


def _check_roi_head(roi_head):
    from mmdet.models.roi_heads import StandardRoIHead
    if type(roi_head) is not StandardRoIHead:
        raise ExportError(f'end-to-end ONNX export supports StandardRoIHead, but '
                          f'model.roi_head is {type(roi_head).__name__}: export the '
                          f'backbone alone (--backbone-only) or use a StandardRoIHead')


def _upsample(layer: nn.Module, x: Tensor) -> Tensor:
    """Run an mmseg ``Upsample`` by its scale factor, traceable with dynamic shapes.

    ``Upsample.forward`` computes its output size with ``int()``, which a trace records
    as a constant: a dynamic-shape graph would then resize to the traced size. Here
    the scale factor goes to ``F.interpolate`` with ``recompute_scale_factor=True``:
    the same output size (``floor(size * factor)``) and the same sampling (by the size
    ratio), recorded as shape arithmetic. A fixed ``size`` is run as the layer does.
    """
    if layer.size or not layer.scale_factor:
        return layer(x)
    return F.interpolate(x, scale_factor=layer.scale_factor, mode=layer.mode,
                         align_corners=layer.align_corners, recompute_scale_factor=True)


def fpn_head_logits(head: nn.Module, feats: Sequence[Tensor]) -> Tensor:
    """Compute mmseg's ``FPNHead.forward`` from the head's public submodules, traceably.

    Each scale head's layers run in order, its ``Upsample`` layers through
    :func:`_upsample`; the levels are resized to the finest one and summed, then
    ``cls_seg`` gives the logits: the same computation as ``FPNHead.forward``, with
    sizes that follow the input in a trace. Nothing of mmseg is replaced.

    Args:
        head (nn.Module): An mmseg ``FPNHead``.
        feats (Sequence[Tensor]): The neck's outputs (the head picks ``in_index``).

    Returns:
        Tensor: (B, num_classes, H / 4, W / 4) logits (the finest level's size).
    """
    from mmseg.models.utils import Upsample
    index = head.in_index if isinstance(head.in_index, (list, tuple)) else [head.in_index]
    out = None
    for scale_head, x in zip(head.scale_heads, [feats[i] for i in index]):
        for layer in scale_head:
            x = _upsample(layer, x) if isinstance(layer, Upsample) else layer(x)
        out = x if out is None else out + F.interpolate(
            x, size=out.shape[2:], mode='bilinear', align_corners=head.align_corners)
    return head.cls_seg(out)


class End2EndSegmentor(nn.Module):
    """An mmseg ``EncoderDecoder`` from BGR image to a (1, 1, H, W) label map.

    The decode head's logits (an ``FPNHead`` through :func:`fpn_head_logits`, so that a
    dynamic-shape graph follows the input size; other heads as they are) are resized to
    the input size (bilinear, the head's ``align_corners``), then the class with the
    largest logit is taken (for a one-channel head: ``sigmoid > threshold``), as
    mmseg's ``predict`` does in ``'whole'`` mode.

    Args:
        model (nn.Module): The segmentor (eval mode; weights loaded).

    Raises:
        ExportError: Not an ``EncoderDecoder``, or ``test_cfg.mode`` is not
            ``'whole'``.
    """

    output_names = SEG_OUTPUTS

    def __init__(self, model: nn.Module):
        super().__init__()
        from mmseg.models.segmentors import EncoderDecoder
        if type(model) is not EncoderDecoder:
            raise ExportError(f'end-to-end ONNX export supports EncoderDecoder '
                              f'segmentors, but the model is {type(model).__name__}: export '
                              f'the backbone alone (--backbone-only)')
        mode = _cfg(model.test_cfg, 'mode', 'whole')
        if mode != 'whole':
            raise ExportError(f"end-to-end ONNX export supports model.test_cfg.mode="
                              f"'whole', got {mode!r}: export with --cfg-options "
                              f"model.test_cfg.mode=whole")
        from mmseg.models.decode_heads import FPNHead
        self.fpn_head = type(model.decode_head) is FPNHead
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Segment one image.

        Args:
            x (Tensor): (1, 3, H, W) BGR 0-255 image.

        Returns:
            Tensor: (1, 1, H, W) int64 class indices.
        """
        head = self.model.decode_head
        feats = self.model.extract_feat(preprocess(self.model.data_preprocessor, x))
        logits = fpn_head_logits(head, feats) if self.fpn_head else head(feats)
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear',
                               align_corners=head.align_corners)
        if logits.shape[1] == 1:
            return (logits.sigmoid() > head.threshold).long()
        return logits.argmax(1, keepdim=True)


def build_end2end(model: nn.Module) -> nn.Module:
    """The end-to-end export module of a detector or segmentor.

    Args:
        model (nn.Module): An mmdet detector or mmseg segmentor.

    Returns:
        nn.Module: :class:`End2EndDetector` or :class:`End2EndSegmentor`, eval mode; its
        ``output_names`` name the graph's outputs.
    """
    if hasattr(model, 'decode_head'):
        return End2EndSegmentor(model).eval()
    return End2EndDetector(model).eval()


def paste_masks(masks, dets, height: int, width: int, threshold: float = 0.5) -> Tensor:
    """Paste the graph's (N, M, M) box masks into (N, H, W) image masks (mmdet's way).

    Args:
        masks (Tensor | np.ndarray): (N, M, M) probabilities (the ``masks`` output's
            image, i.e. ``masks[0]``).
        dets (Tensor | np.ndarray): (N, 5) detections (``dets[0]``).
        height (int): Image height.
        width (int): Image width.
        threshold (float): Probability threshold (mmdet's ``mask_thr_binary``).
            Defaults to 0.5.

    Returns:
        Tensor: (N, H, W) bool masks.
    """
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    masks, dets = torch.as_tensor(masks), torch.as_tensor(dets)
    if masks.shape[0] == 0:
        return torch.zeros((0, height, width), dtype=torch.bool)
    pasted, _ = _do_paste_mask(masks[:, None].float(), dets[:, :4].float(), height, width,
                               skip_empty=False)
    return pasted >= threshold
