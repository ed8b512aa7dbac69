"""ONNX export of LSNet backbones, of tensor-mode networks and of end-to-end models.

The export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): the LS aggregation then traces to a pad, nine slices and
multiply-adds (:func:`lsnet_mm.ops.ska.ska_forward_export`), and NMS / RoIAlign to the
standard ``NonMaxSuppression`` / ``RoiAlign`` operators, so the files need no custom
operator. Shapes are fixed at export time unless ``dynamic=True`` (input height and
width free; the attention bias resize of LSNet's last stage is then part of the graph).

* :func:`export_backbone`: a backbone, outputs ``stage0``, ``stage1``, ...;
* :func:`export_end2end`: image in, detections / label map out
  (:mod:`lsnet_mm.deploy.onnx_end2end`), checked with :mod:`lsnet_mm.deploy.onnx_check`.
"""
import os
import os.path as osp
import warnings
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.errors import ExportError

DEFAULT_OPSET = 17


class TensorModeWrapper(nn.Module):
    """A mmdet/mmseg model's ``_forward`` (tensor mode) with its outputs flattened.

    Args:
        model (nn.Module): A detector or segmentor (mmengine ``BaseModel``).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the wrapped model in tensor mode.

        Args:
            x (torch.Tensor): (B, 3, H, W) preprocessed images.

        Returns:
            tuple[torch.Tensor]: The raw outputs, flattened in order (dict outputs by
            sorted key).
        """
        return tuple(_flatten(self.model._forward(x)))


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flatten(out[k])]
    raise ExportError(f'cannot export a model output of type {type(out).__name__}: the '
                      f'exported module must return tensors (or lists, tuples or dicts of '
                      f'them)')


def prepare_for_export(model: nn.Module, checkpoint: Optional[str] = None,
                       deploy: bool = False) -> nn.Module:
    """Load a checkpoint into a built model and optionally switch LSNet to deploy mode.

    Args:
        model (nn.Module): A detector, segmentor or backbone (e.g. from
            :func:`lsnet_mm.apis.build_model_from_cfg`).
        checkpoint (str, optional): Weights, read weights-only; they must fit the model
            exactly (attention index buffers may be absent). None: keep the weights.
        deploy (bool): Fold BN and branches (:func:`lsnet_mm.models.switch_model_to_deploy`).
            Defaults to False.

    Returns:
        nn.Module: ``model``, in eval mode.

    Raises:
        CheckpointError: The file cannot be read or does not fit the model.
    """
    from ..checkpoint import load_state_dict
    from ..models import switch_model_to_deploy
    from ..models.utils.checkpoint_fit import check_state_dict_fits
    if checkpoint:
        state_dict = load_state_dict(checkpoint)
        check_state_dict_fits(model, state_dict, checkpoint)
        model.load_state_dict(state_dict, strict=False)  # fit checked
    if deploy:
        switch_model_to_deploy(model)
    return model.eval()


def export_onnx(module: nn.Module, inputs: torch.Tensor, path: str,
                opset: int = DEFAULT_OPSET, output_prefix: str = 'out',
                output_names: Optional[Sequence[str]] = None, dynamic: bool = False) -> list:
    """Export ``module(inputs)`` in eval mode to an ONNX file.

    Args:
        module (nn.Module): The module (put in eval mode).
        inputs (torch.Tensor): The example input, named ``input`` in the graph.
        path (str): The .onnx file to write (its folder is created).
        opset (int): ONNX opset version. Defaults to 17.
        output_prefix (str): Without ``output_names``, outputs are named ``<prefix>0``,
            ``<prefix>1``, ... Defaults to 'out'.
        output_names (Sequence[str], optional): The outputs' names.
        dynamic (bool): Leave the input's height and width (dims 2 and 3) free, and
            every output dim but the first. Defaults to False (the example's shape).

    Returns:
        list[str]: The names of the graph's outputs.
    """
    module = module.eval()
    with torch.no_grad():
        outs = _flatten(module(inputs))
    names = list(output_names) if output_names else [
        f'{output_prefix}{i}' for i in range(len(outs))]
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
    kwargs = dict(input_names=['input'], output_names=names, opset_version=opset,
                  do_constant_folding=True)
    if dynamic:
        axes = {'input': {2: 'height', 3: 'width'}}
        for n, o in zip(names, outs):
            axes[n] = {i: f'{n}_dim{i}' for i in range(1, o.dim())}
        kwargs['dynamic_axes'] = axes
    with warnings.catch_warnings():
        # size arithmetic traced on purpose (dynamic shapes): not worth a warning each
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*dynamo.*', category=DeprecationWarning)
        warnings.filterwarnings('ignore', message='Constant folding - Only steps=1')
        torch.onnx.export(module, (inputs,), path, dynamo=False, **kwargs)
    return names


def export_backbone(backbone: nn.Module, path: str, shape: Sequence[int] = (1, 3, 224, 224),
                    opset: int = DEFAULT_OPSET, dynamic: bool = False) -> list:
    """Export an LSNet (or any) backbone.

    Args:
        backbone (nn.Module): The backbone.
        path (str): The .onnx file to write.
        shape (Sequence[int]): The example input shape (B, 3, H, W). Defaults to
            (1, 3, 224, 224).
        opset (int): ONNX opset version. Defaults to 17.
        dynamic (bool): Free input height and width. Defaults to False.

    Returns:
        list[str]: The output names, ``stage0``, ``stage1``, ...
    """
    return export_onnx(backbone, torch.randn(*shape), path, opset, output_prefix='stage',
                       dynamic=dynamic)


def export_end2end(model: nn.Module, path: str, image: torch.Tensor,
                   opset: int = DEFAULT_OPSET, dynamic: bool = False) -> list:
    """Export a detector or segmentor from BGR image to results (see ``onnx_end2end``).

    Args:
        model (nn.Module): An mmdet detector or mmseg segmentor, weights loaded.
        path (str): The .onnx file to write.
        image (torch.Tensor): (1, 3, H, W) float BGR 0-255 example image. Tracing follows
            its data (the number of boxes), so an image with detections is best.
        opset (int): ONNX opset version (16 or later: ``RoiAlign``'s half-pixel mode).
            Defaults to 17.
        dynamic (bool): Free input height and width. Defaults to False.

    Returns:
        list[str]: The output names: ``dets``, ``labels`` (, ``masks``) or ``seg``.

    Raises:
        ExportError: The model's kind or a setting of it is not supported, or ``opset``
            is below 16.
    """
    from .onnx_end2end import build_end2end
    from .onnx_ops import MIN_ROI_ALIGN_OPSET
    if opset < MIN_ROI_ALIGN_OPSET:
        raise ExportError(f'end-to-end export needs ONNX opset >= {MIN_ROI_ALIGN_OPSET} '
                          f'(RoiAlign\'s coordinate_transformation_mode), got --opset {opset}: '
                          f'export with --opset {MIN_ROI_ALIGN_OPSET} or later (default 17)')
    module = build_end2end(model)
    return export_onnx(module, image.float(), path, opset, output_names=module.output_names,
                       dynamic=dynamic)


def check_onnx(module: nn.Module, path: str, inputs: torch.Tensor, tensor_mode: bool = False,
               runtime: str = 'onnxruntime'):
    """Compare an ONNX file's outputs (onnxruntime or OpenVINO) with PyTorch's.

    Args:
        module (nn.Module): The module that was exported (put in eval mode).
        path (str): The .onnx file.
        inputs (torch.Tensor): The input to compare on.
        tensor_mode (bool): ``module`` is a detector/segmentor to run through
            :class:`TensorModeWrapper`. Defaults to False.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.

    Returns:
        list[tuple[float, float]]: For each output, the largest absolute difference and
        that difference relative to the output's largest magnitude.

    Raises:
        AssertionError: The number or the shapes of the outputs differ.
    """
    m = TensorModeWrapper(module) if tensor_mode else module
    with torch.no_grad():
        ref = _flatten(m.eval()(inputs))
    from .onnx_runtime import run_onnx
    got = run_onnx(path, inputs, runtime)
    if len(got) != len(ref):
        raise AssertionError(f'{path}: {len(got)} outputs, torch gives {len(ref)}')
    diffs = []
    for r, g in zip(ref, got):
        if tuple(r.shape) != tuple(g.shape):
            raise AssertionError(f'{path}: output shape {tuple(g.shape)} vs torch '
                                 f'{tuple(r.shape)}')
        d = float((r - g).abs().max()) if r.numel() else 0.0
        scale = float(r.abs().max()) if r.numel() else 0.0
        diffs.append((d, d / max(scale, 1e-12)))
    return diffs
