"""ONNX export of LSNet backbones and of whole networks, checked with onnxruntime.

The export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): the LS aggregation then traces to plain pad/slice/multiply-add
ops, so the ONNX file needs no custom operator. Shapes are fixed at export time
(the attention bias is resized for the exported feature-map size, and reshapes
are traced with concrete sizes): export once per input size.

Whole detectors are exported in mmengine's ``tensor`` mode, i.e. backbone, neck and
head up to the raw per-level classification and box-regression maps. Box decoding
and NMS are not part of the graph: mmdet 3 has no ONNX export of its own (that
moved to mmdeploy, which rewrites those functions for export and is not part of
this project's pinned stack); run them on the outputs with mmdet's
``bbox_head.predict_by_feat``.
"""
import os
import os.path as osp
from typing import Sequence, Tuple

import torch
from torch import nn

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
    raise TypeError(f'cannot export an output of type {type(out).__name__}')


def export_onnx(module: nn.Module, inputs: torch.Tensor, path: str,
                opset: int = DEFAULT_OPSET, output_prefix: str = 'out') -> list:
    """Export ``module(inputs)`` in eval mode to an ONNX file.

    Args:
        module (nn.Module): The module (put in eval mode).
        inputs (torch.Tensor): The example input; its shape is fixed in the graph.
        path (str): The .onnx file to write (its folder is created).
        opset (int): ONNX opset version. Defaults to 17.
        output_prefix (str): Outputs are named ``<prefix>0``, ``<prefix>1``, ...
            Defaults to 'out'.

    Returns:
        list[str]: The names of the graph's outputs.
    """
    module = module.eval()
    with torch.no_grad():
        outs = _flatten(module(inputs))
    names = [f'{output_prefix}{i}' for i in range(len(outs))]
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
    kwargs = dict(input_names=['input'], output_names=names, opset_version=opset,
                  do_constant_folding=True)
    try:
        torch.onnx.export(module, (inputs,), path, dynamo=False, **kwargs)
    except TypeError:  # a PyTorch without the dynamo switch: TorchScript is its exporter
        torch.onnx.export(module, (inputs,), path, **kwargs)
    return names


def export_backbone(backbone: nn.Module, path: str, shape: Sequence[int] = (1, 3, 224, 224),
                    opset: int = DEFAULT_OPSET) -> list:
    """Export an LSNet (or any) backbone for a fixed input shape.

    Args:
        backbone (nn.Module): The backbone.
        path (str): The .onnx file to write.
        shape (Sequence[int]): The input shape (B, 3, H, W). Defaults to (1, 3, 224, 224).
        opset (int): ONNX opset version. Defaults to 17.

    Returns:
        list[str]: The output names, ``stage0``, ``stage1``, ...
    """
    return export_onnx(backbone, torch.randn(*shape), path, opset, output_prefix='stage')


def export_network(model: nn.Module, path: str, shape: Sequence[int] = (1, 3, 800, 1344),
                   opset: int = DEFAULT_OPSET) -> list:
    """Export a detector/segmentor's tensor-mode forward (no box decoding / NMS).

    Args:
        model (nn.Module): The detector or segmentor.
        path (str): The .onnx file to write.
        shape (Sequence[int]): The input shape (B, 3, H, W). Defaults to
            (1, 3, 800, 1344).
        opset (int): ONNX opset version. Defaults to 17.

    Returns:
        list[str]: The output names, ``out0``, ``out1``, ...
    """
    return export_onnx(TensorModeWrapper(model), torch.randn(*shape), path, opset)


def run_onnxruntime(path: str, inputs: torch.Tensor, threads: int = 0) -> list:
    """Run an ONNX file with onnxruntime's CPU provider.

    Args:
        path (str): The .onnx file.
        inputs (torch.Tensor): The input (its shape must be the exported one).
        threads (int): Intra-op threads; 0 leaves onnxruntime's default. Defaults to 0.

    Returns:
        list[torch.Tensor]: The outputs, in the graph's order.
    """
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    name = sess.get_inputs()[0].name
    return [torch.from_numpy(o) for o in sess.run(None, {name: inputs.cpu().numpy()})]


def check_onnx(module: nn.Module, path: str, inputs: torch.Tensor, tensor_mode: bool = False):
    """Compare an ONNX file's outputs (onnxruntime) with PyTorch's on the same input.

    Args:
        module (nn.Module): The module that was exported (put in eval mode).
        path (str): The .onnx file.
        inputs (torch.Tensor): The input to compare on.
        tensor_mode (bool): ``module`` is a detector/segmentor to run through
            :class:`TensorModeWrapper`. Defaults to False.

    Returns:
        list[tuple[float, float]]: For each output, the largest absolute difference and
        that difference relative to the output's largest magnitude.

    Raises:
        AssertionError: The number or the shapes of the outputs differ.
    """
    m = TensorModeWrapper(module) if tensor_mode else module
    with torch.no_grad():
        ref = _flatten(m.eval()(inputs))
    got = run_onnxruntime(path, inputs)
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
