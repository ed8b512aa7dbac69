"""Operators that export to standard ONNX ops: ``NonMaxSuppression`` and ``RoiAlign``.

Each is a ``torch.autograd.Function`` whose ``forward`` computes the result with
mmcv's CPU/GPU kernels (so tracing sees real values and data-dependent shapes) and
whose ``symbolic`` writes the ONNX operator, as PyTorch's TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) supports. Outside an export they are plain
functions on tensors.

mmcv's own ``RoIAlign`` symbolic emulates ``aligned=True`` by shifting the boxes,
which is wrong from opset 16 on, where ONNX ``RoiAlign`` already defaults to half-pixel
coordinates; :func:`roi_align` sets ``coordinate_transformation_mode`` explicitly.
"""
import torch
from torch import Tensor

#: the smallest opset with RoiAlign's ``coordinate_transformation_mode``
MIN_ROI_ALIGN_OPSET = 16


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` on one image and one class: (N, 4) boxes -> kept rows."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        from mmcv.ops import nms
        if boxes.shape[0] == 0:
            return boxes.new_zeros((0,), dtype=torch.long)
        _, keep = nms(boxes, scores, float(iou_threshold))
        return keep.long()

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold):
        # NonMaxSuppression wants (batch, N, 4) boxes and (batch, classes, N) scores and
        # returns (K, 3) rows of (batch, class, box index), best score first.
        zero = g.op('Constant', value_t=torch.tensor([0], dtype=torch.long))
        b = g.op('Unsqueeze', boxes, zero)
        s = g.op('Unsqueeze', g.op('Unsqueeze', scores, zero), zero)
        max_out = g.op('Constant', value_t=torch.tensor([2 ** 31 - 1], dtype=torch.long))
        thr = g.op('Constant', value_t=torch.tensor([float(iou_threshold)]))
        sel = g.op('NonMaxSuppression', b, s, max_out, thr)
        col = g.op('Constant', value_t=torch.tensor([2], dtype=torch.long))
        return g.op('Reshape', g.op('Gather', sel, col, axis_i=1),
                    g.op('Constant', value_t=torch.tensor([-1], dtype=torch.long)))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression that exports as ONNX ``NonMaxSuppression``.

    A box is dropped when its IoU with a kept box of higher score is above
    ``iou_threshold`` (mmcv's ``nms`` with ``offset=0``, which mmdet's heads use).

    Args:
        boxes (Tensor): (N, 4) boxes (x1, y1, x2, y2).
        scores (Tensor): (N,) scores.
        iou_threshold (float): The IoU above which a box is suppressed.

    Returns:
        Tensor: (K,) int64 indices of the kept boxes, highest score first.
    """
    return _NonMaxSuppression.apply(boxes, scores, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                class_agnostic: bool = False) -> Tensor:
    """NMS within each group of ``idxs`` (class or level), as mmcv's ``batched_nms``.

    Boxes of different groups are moved apart by ``idx * (max coordinate + 1)`` and one
    NMS runs on all of them: the same trick and numbers as mmcv's ``batched_nms`` below
    its ``split_thr`` (10000 boxes).

    Args:
        boxes (Tensor): (N, 4) boxes.
        scores (Tensor): (N,) scores.
        idxs (Tensor): (N,) group of each box.
        iou_threshold (float): The IoU above which a box is suppressed.
        class_agnostic (bool): Ignore ``idxs``. Defaults to False.

    Returns:
        Tensor: (K,) int64 indices of the kept boxes, highest score first.
    """
    if not class_agnostic:
        # max(0, ...) keeps ReduceMax off an empty tensor; boxes are clipped to >= 0
        max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
        boxes = boxes + (idxs.to(boxes) * (max_coordinate + 1))[:, None]
    return nms(boxes, scores, iou_threshold)


class _RoIAlign(torch.autograd.Function):
    """ONNX ``RoiAlign`` (opset 16+) with mmcv's ``roi_align`` as the computation."""

    @staticmethod
    def forward(ctx, feats, rois, output_size, spatial_scale, sampling_ratio, aligned):
        from mmcv.ops import roi_align as mmcv_roi_align
        return mmcv_roi_align(feats, rois, output_size, spatial_scale, sampling_ratio,
                              'avg', aligned)

    @staticmethod
    def symbolic(g, feats, rois, output_size, spatial_scale, sampling_ratio, aligned):
        long = dict(dtype=torch.long)
        batch = g.op('Gather', rois, g.op('Constant', value_t=torch.tensor(0, **long)),
                     axis_i=1)
        batch = g.op('Cast', batch, to_i=7)  # INT64
        boxes = g.op('Gather', rois, g.op('Constant', value_t=torch.tensor([1, 2, 3, 4],
                                                                           **long)), axis_i=1)
        return g.op('RoiAlign', feats, boxes, batch, output_height_i=output_size[0],
                    output_width_i=output_size[1], spatial_scale_f=spatial_scale,
                    sampling_ratio_i=max(0, sampling_ratio), mode_s='avg',
                    coordinate_transformation_mode_s='half_pixel' if aligned
                    else 'output_half_pixel')


def roi_align(feats: Tensor, rois: Tensor, output_size, spatial_scale: float,
              sampling_ratio: int = 0, aligned: bool = True) -> Tensor:
    """Average RoIAlign (mmcv's) that exports as ONNX ``RoiAlign`` (opset 16 or later).

    Args:
        feats (Tensor): (B, C, H, W) features.
        rois (Tensor): (K, 5) boxes (batch index, x1, y1, x2, y2) in input pixels.
        output_size (tuple[int, int]): Output height and width.
        spatial_scale (float): Feature-map size over input size (1 / stride).
        sampling_ratio (int): Samples per output bin side; 0: adaptive.
            Defaults to 0.
        aligned (bool): Half-pixel aligned coordinates. Defaults to True.

    Returns:
        Tensor: (K, C, output height, output width) features.
    """
    return _RoIAlign.apply(feats, rois, tuple(int(s) for s in output_size),
                           float(spatial_scale), int(sampling_ratio), bool(aligned))
