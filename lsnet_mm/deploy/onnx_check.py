"""Parity of an end-to-end ONNX file with the PyTorch model's own predictions.

The reference is the model's ``test_step`` (data preprocessor, ``predict`` with the
config's ``test_cfg``) on the same image given at the network's input size (scale
factor 1), i.e. what ``tools/test.py`` and the inferencers compute. The ONNX file runs
in onnxruntime or OpenVINO (:class:`lsnet_mm.deploy.onnx_runtime.OnnxModel`).

Detections are matched greedily (same label, best box first); a detection may go
unmatched only when its score is at the selection boundary (within ``score_atol`` of
``score_thr`` or of the other side's last kept score when that side holds
``max_per_img``): there ties and last-digit differences decide what is kept.
"""
from typing import Dict, Optional, Union

import numpy as np
import torch
from torch import nn

from .onnx_runtime import OnnxModel


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """A (H, W, 3) uint8 BGR image as the graphs' (1, 3, H, W) float32 input.

    Args:
        image (np.ndarray): The image (as ``mmcv.imread`` returns it).

    Returns:
        torch.Tensor: The graph input.
    """
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def torch_predictions(model: nn.Module, image: np.ndarray) -> Dict[str, np.ndarray]:
    """The PyTorch model's predictions on one image at the network's input size.

    Args:
        model (nn.Module): An mmdet detector or mmseg segmentor (eval mode).
        image (np.ndarray): (H, W, 3) uint8 BGR image.

    Returns:
        dict[str, np.ndarray]: Detectors: ``bboxes`` (N, 4), ``scores`` (N,), ``labels``
        (N,) and with masks ``masks`` (N, H, W) bool; segmentors: ``seg`` (H, W).
    """
    h, w = image.shape[:2]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
    inputs = [torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)]
    if hasattr(model, 'decode_head'):
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
    else:
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=meta)
    with torch.no_grad():
        out = model.eval().test_step(dict(inputs=inputs, data_samples=[sample]))[0]
    if hasattr(model, 'decode_head'):
        return dict(seg=out.pred_sem_seg.data[0].cpu().numpy())
    inst = out.pred_instances
    res = dict(bboxes=inst.bboxes.cpu().numpy(), scores=inst.scores.cpu().numpy(),
               labels=inst.labels.cpu().numpy())
    if 'masks' in inst:
        res['masks'] = inst.masks.cpu().numpy().astype(bool)
    return res


def onnx_predictions(onnx_model: OnnxModel, image: np.ndarray) -> Dict[str, np.ndarray]:
    """An end-to-end ONNX file's predictions, in :func:`torch_predictions`' format.

    Args:
        onnx_model (OnnxModel): The loaded file.
        image (np.ndarray): (H, W, 3) uint8 BGR image.

    Returns:
        dict[str, np.ndarray]: As :func:`torch_predictions` (masks pasted with
        :func:`lsnet_mm.deploy.onnx_end2end.paste_masks` at threshold 0.5).
    """
    out = onnx_model(image_tensor(image).numpy())
    if 'seg' in out:
        return dict(seg=out['seg'][0, 0])
    dets = out['dets'][0]
    res = dict(bboxes=dets[:, :4], scores=dets[:, 4], labels=out['labels'][0])
    if 'masks' in out:
        from .onnx_end2end import paste_masks
        res['masks'] = paste_masks(out['masks'][0], dets, *image.shape[:2]).numpy()
    return res


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_detections(ref: dict, got: dict, score_thr: float = 0.0,
                       max_per_img: Optional[int] = None, box_atol: float = 0.05,
                       score_atol: float = 1e-3) -> dict:
    """Match two sets of detections and measure their differences.

    Args:
        ref (dict): Reference ``bboxes``, ``scores``, ``labels`` (, ``masks``).
        got (dict): The detections to check, same keys.
        score_thr (float): The score threshold both applied. Defaults to 0.
        max_per_img (int, optional): The cap both applied.
        box_atol (float): Largest coordinate difference (pixels) of a match.
            Defaults to 0.05.
        score_atol (float): Largest score difference of a match, and the width of the
            selection boundary. Defaults to 1e-3.

    Returns:
        dict: ``num_torch``, ``num_onnx``, ``matched``, ``max_box_diff``,
        ``max_score_diff``, ``labels_equal`` (every match has the same label: always
        True, matching requires it), ``min_mask_iou`` (with masks; else None),
        ``unmatched_scores`` (torch side and onnx side) and ``ok``.
    """
    n_ref, n_got = len(ref['scores']), len(got['scores'])
    used = np.zeros(n_got, bool)
    box_diffs, score_diffs, ious = [], [], []
    unmatched_ref = []
    for i in range(n_ref):
        cand = np.flatnonzero(~used & (got['labels'] == ref['labels'][i]))
        if len(cand):
            d = np.abs(got['bboxes'][cand] - ref['bboxes'][i]).max(1)
            j = cand[int(d.argmin())]
            ds = abs(float(got['scores'][j]) - float(ref['scores'][i]))
            if d.min() <= box_atol and ds <= score_atol:
                used[j] = True
                box_diffs.append(float(d.min()))
                score_diffs.append(ds)
                if 'masks' in ref and 'masks' in got:
                    ious.append(_iou(ref['masks'][i], got['masks'][j]))
                continue
        unmatched_ref.append(float(ref['scores'][i]))
    unmatched_got = [float(s) for s in got['scores'][~used]]

    def boundary(other):
        low = score_thr
        if max_per_img and len(other) >= max_per_img:
            low = max(low, float(np.min(other)))
        return low + score_atol
    ok = (all(s <= boundary(got['scores']) for s in unmatched_ref)
          and all(s <= boundary(ref['scores']) for s in unmatched_got)
          and (not ious or min(ious) >= 0.9))
    return dict(num_torch=n_ref, num_onnx=n_got, matched=len(box_diffs),
                max_box_diff=max(box_diffs, default=0.0),
                max_score_diff=max(score_diffs, default=0.0), labels_equal=True,
                min_mask_iou=min(ious) if ious else None,
                unmatched_scores=[unmatched_ref, unmatched_got], ok=bool(ok))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def compare_detections_iou(ref: dict, got: dict, min_score: float = 0.3,
                           iou_thr: float = 0.5) -> dict:
    """Agreement of approximate detections (e.g. an INT8 model's) with reference ones.

    Each reference detection scoring at least ``min_score`` is paired with the
    detection of ``got`` (any score) that overlaps it most.

    Args:
        ref (dict): Reference ``bboxes`` (N, 4), ``scores``, ``labels``.
        got (dict): The detections to check, same keys.
        min_score (float): The reference detections compared. Defaults to 0.3.
        iou_thr (float): The IoU at which a pair counts as found. Defaults to 0.5.

    Returns:
        dict: ``num_ref`` (reference detections compared), ``found`` (fraction with a
        same-label detection at IoU >= ``iou_thr``), ``label_agreement`` (of those with
        any detection at IoU >= ``iou_thr``, the fraction with one of the same label),
        ``mean_iou`` (best same-label IoU, averaged; 0 for none) and ``max_score_diff``
        (of the found pairs, each with its best same-label match).
    """
    keep = ref['scores'] >= min_score
    boxes, labels, scores = ref['bboxes'][keep], ref['labels'][keep], ref['scores'][keep]
    n = int(keep.sum())
    if n == 0:
        return dict(num_ref=0, found=1.0, label_agreement=1.0, mean_iou=1.0,
                    max_score_diff=0.0)
    iou = box_iou(boxes, got['bboxes']) if len(got['scores']) else np.zeros((n, 0))
    same = labels[:, None] == got['labels'][None]
    best_same = np.where(same, iou, 0).max(1) if iou.shape[1] else np.zeros(n)
    overlapping = iou.max(1) >= iou_thr if iou.shape[1] else np.zeros(n, bool)
    found = best_same >= iou_thr
    score_diffs = [abs(float(scores[i]) - float(got['scores'][np.where(same[i], iou[i], -1)
                                                              .argmax()]))
                   for i in np.flatnonzero(found)]
    return dict(num_ref=n, found=float(found.mean()),
                label_agreement=float(found.sum() / overlapping.sum()) if overlapping.any()
                else 1.0,
                mean_iou=float(best_same.mean()), max_score_diff=max(score_diffs, default=0.0))


def compare_label_maps(ref: np.ndarray, got: np.ndarray, min_agreement: float = 0.999
                       ) -> dict:
    """Compare two label maps pixel by pixel.

    Args:
        ref (np.ndarray): (H, W) reference classes.
        got (np.ndarray): (H, W) classes to check.
        min_agreement (float): Fraction of equal pixels needed for ``ok`` (argmax ties
            may flip a few pixels). Defaults to 0.999.

    Returns:
        dict: ``shape_equal``, ``agreement`` (fraction of equal pixels) and ``ok``.
    """
    if ref.shape != got.shape:
        return dict(shape_equal=False, agreement=0.0, ok=False)
    agreement = float((ref == got).mean())
    return dict(shape_equal=True, agreement=agreement, ok=agreement >= min_agreement)


def check_end2end(model: nn.Module, path: Union[str, OnnxModel], image: np.ndarray,
                  runtime: str = 'onnxruntime', reference: Optional[dict] = None,
                  **tolerances) -> dict:
    """Run an end-to-end file and the PyTorch model on one image and compare.

    Args:
        model (nn.Module): The exported detector or segmentor.
        path (str | OnnxModel): The .onnx file, or the file already loaded (then
            ``runtime`` is the loaded one's).
        image (np.ndarray): (H, W, 3) uint8 BGR image at the graph's input size (any
            size for a dynamic-shape file).
        runtime (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        reference (dict, optional): :func:`torch_predictions` of this model and image,
            when already computed (e.g. for another runtime).
        **tolerances: Passed to :func:`compare_detections`.

    Returns:
        dict: The comparison (see :func:`compare_detections` /
        :func:`compare_label_maps`) with ``runtime`` and ``version`` added.
    """
    onnx_model = path if isinstance(path, OnnxModel) else OnnxModel(path, runtime)
    ref = torch_predictions(model, image) if reference is None else reference
    got = onnx_predictions(onnx_model, image)
    if 'seg' in ref:
        res = compare_label_maps(ref['seg'], got['seg'])
    else:
        cfg = _final_test_cfg(model)
        res = compare_detections(ref, got, cfg.get('score_thr', 0.0),
                                 cfg.get('max_per_img'), **tolerances)
    return dict(res, runtime=onnx_model.runtime, version=onnx_model.version)


def _final_test_cfg(model):
    cfg = model.roi_head.test_cfg if hasattr(model, 'roi_head') else model.bbox_head.test_cfg
    return cfg or {}
