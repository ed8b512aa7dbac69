"""INT8 post-training quantization of exported graphs for CPU runtimes.

:func:`quantize_onnx` turns a float ONNX file (an end-to-end graph of
:func:`~lsnet_mm.deploy.onnx_export.export_end2end`, or a backbone or tensor-mode
network) into an INT8 model, calibrated on example inputs:

* ``.xml`` output (the main path): OpenVINO's NNCF post-training quantization of the
  graph read into OpenVINO (``pip install nncf``); the file is OpenVINO IR (``.xml`` and
  ``.bin``), run by OpenVINO;
* ``.onnx`` output: onnxruntime's static quantization in QDQ format (per-channel
  symmetric INT8 weights, asymmetric UINT8 activations, min-max calibration); the file
  runs in onnxruntime and in OpenVINO.

Both quantize the convolutions and matrix products of the backbone, neck and heads
and keep in float (:func:`float_node_names`):

* the pre- and post-processing: every operation outside the exported module's
  submodules (normalisation, anchor decoding, score thresholds, NMS, RoIAlign
  coordinates, softmax / sigmoid scores, mask probabilities, the logits' resize and
  arg-max): box coordinates and scores in 8 bits would move boxes by pixels and
  reorder detections;
* the small-kernel aggregation of every LS convolution: its nine per-pixel products
  of features and predicted kernels and their sum (an 8-bit product of two quantized
  activations loses most of the kernel's precision, and the op has no weights to
  gain from);
* operations on constants only (the gather of LSNet's attention bias tables);
* softmax (attention) and every other operation without weights, as each runtime
  decides (NNCF quantizes the inputs of weighted operations, onnxruntime their inputs
  and outputs);
* onnxruntime only: the layers whose results the post-processing reads (the heads'
  last convolutions and fully connected layers, the feature maps RoIAlign samples),
  whose 8-bit outputs cost Mask R-CNN 4.8 box AP points on the demo set (kept in
  float: +0.1); NNCF leaves outputs in float anyway.

docs/deployment.md has the measured accuracy and speed.
"""
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..utils.errors import ConfigError, ExportError
from ..utils.optional import is_installed

#: output file extension -> quantization path (and the runtime that runs its file)
QUANT_FORMATS = {'.xml': 'openvino', '.onnx': 'onnxruntime'}
#: operations whose inputs onnxruntime quantizes (with their outputs, QDQ format)
ORT_QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')
#: the groups of :func:`float_node_names` kept in float by each path: onnxruntime also
#: quantizes the outputs of what it quantizes (QDQ), so the layers the post-processing
#: reads stay float there; NNCF quantizes inputs only, their outputs are float already
FLOAT_GROUPS = dict(
    openvino=('pre- and post-processing', 'small-kernel aggregation', 'softmax',
              'constant expressions'),
    onnxruntime=('pre- and post-processing', 'small-kernel aggregation', 'softmax',
                 'constant expressions', 'network outputs'))


def quantization_backend(out_path: str) -> str:
    """The quantization path an output file's extension selects.

    Args:
        out_path (str): ``*.xml`` (OpenVINO NNCF) or ``*.onnx`` (onnxruntime QDQ).

    Returns:
        str: ``'openvino'`` or ``'onnxruntime'``, also the runtime that runs the file.

    Raises:
        ConfigError: Another extension, or the path's package is not installed.
    """
    backend = QUANT_FORMATS.get(osp.splitext(out_path)[1].lower())
    if backend is None:
        raise ConfigError(f'--out {out_path}: name an OpenVINO .xml file (NNCF quantization, '
                          f'the main path) or a .onnx file (onnxruntime QDQ quantization)')
    needed = ['nncf', 'openvino'] if backend == 'openvino' else ['onnxruntime']
    missing = [p for p in needed if not is_installed(p)]
    if missing:
        raise ConfigError(f'INT8 quantization to {out_path} needs {", ".join(missing)}: pip '
                          f'install {" ".join(missing)} (tested versions: requirements.txt)')
    return backend


def _ska_nodes(nodes, producer) -> List[str]:
    """The per-pixel products and sums of the small-kernel aggregation (export form).

    :func:`lsnet_mm.ops.ska.ska_forward_export` pads the features once and multiplies
    nine slices of them with the kernels: a product is a ``Mul`` fed by a ``Slice``
    whose chain of ``Slice`` / ``Reshape`` producers reaches a ``Pad``; the sum is the
    chain of ``Add`` nodes over those products.
    """
    def from_padded_slices(name):
        node = producer.get(name)
        if node is None or node.op_type != 'Slice':
            return False
        while node is not None and node.op_type in ('Slice', 'Reshape'):
            node = producer.get(node.input[0])
        return node is not None and node.op_type == 'Pad'

    kept = set()
    for n in nodes:
        if n.op_type == 'Mul' and any(from_padded_slices(i) for i in n.input):
            kept.add(n.name)
        elif n.op_type == 'Add' and all(
                producer.get(i) is not None and producer[i].name in kept for i in n.input):
            kept.add(n.name)  # nodes are topologically sorted: the inputs come first
    return [n.name for n in nodes if n.name in kept]


def float_node_names(model) -> Dict[str, List[str]]:
    """The nodes of an exported graph that quantization keeps in float, by reason.

    Args:
        model (onnx.ModelProto | str): The float ONNX graph (TorchScript exporter: node
            names carry the module scope, ``/backbone/.../Conv``).

    Returns:
        dict[str, list[str]]: ``'pre- and post-processing'`` (nodes outside every
        submodule of the exported module), ``'small-kernel aggregation'``,
        ``'softmax'`` and ``'constant expressions'`` (operations on constants only, e.g.
        the gather of LSNet's attention bias tables) and ``'network outputs'`` (the
        convolutions and matrix products whose results the post-processing reads: box
        deltas, class logits, mask logits, RoIAlign's feature maps): node names, in
        graph order.
    """
    import onnx
    if isinstance(model, str):
        model = onnx.load(model, load_external_data=False)
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    top_level = [n.name for n in nodes
                 if n.name.count('/') <= 1 and n.op_type not in ('Constant', 'Identity')]
    constant = {i.name for i in model.graph.initializer}
    for n in nodes:
        if n.op_type == 'Constant' or all(i in constant for i in n.input if i):
            constant.update(n.output)
    top = set(top_level)
    consumed_by_top = {i for n in nodes if n.name in top for i in n.input}
    head_outputs = [n.name for n in nodes if n.op_type in ORT_QUANTIZED_OPS
                    and n.name not in top and consumed_by_top.intersection(n.output)]
    return {'pre- and post-processing': top_level,
            'small-kernel aggregation': _ska_nodes(nodes, producer),
            'softmax': [n.name for n in nodes if n.op_type == 'Softmax'],
            'constant expressions': [n.name for n in nodes if n.op_type != 'Constant' and n.input
                                     and all(i in constant for i in n.input if i)],
            'network outputs': head_outputs}


def _quantize_openvino(onnx_path, out_path, inputs, ignored, preset):
    import nncf
    import openvino as ov
    model = ov.Core().read_model(onnx_path)
    quantized = nncf.quantize(
        model, nncf.Dataset(inputs), subset_size=len(inputs),
        preset=nncf.QuantizationPreset(preset),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    ov.save_model(quantized, out_path, compress_to_fp16=False)
    return len(inputs)


class _CalibrationReader:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of inputs."""

    def __init__(self, name, inputs):
        self._items = iter([{name: x} for x in inputs])

    def get_next(self):
        return next(self._items, None)


def _with_detections(onnx_path, inputs):
    """The inputs on which a two-stage graph's outputs are all non-empty.

    onnxruntime's calibrator reduces every calibrated tensor with ``ReduceMax``, which
    fails on an empty one: the RoI features of a graph with ``RoiAlign`` (Mask R-CNN)
    when nothing is detected. Graphs without RoiAlign calibrate on every input.
    """
    import onnx

    from .onnx_runtime import OnnxModel
    graph = onnx.load(onnx_path, load_external_data=False).graph
    if not any(n.op_type == 'RoiAlign' for n in graph.node):
        return inputs
    model = OnnxModel(onnx_path, 'onnxruntime')
    kept = [x for x in inputs if all(v.size for v in model(x).values())]
    if not kept:
        raise ExportError(f'onnxruntime quantization of {onnx_path}: the float model '
                          f'detects nothing in any of the {len(inputs)} calibration images, '
                          f'and onnxruntime cannot calibrate on empty results: give images '
                          f'with objects (--calib), or quantize for OpenVINO (--out *.xml)')
    return kept


def _quantize_onnxruntime(onnx_path, out_path, inputs, ignored, preset):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    name = onnx.load(onnx_path, load_external_data=False).graph.input[0].name
    inputs = _with_detections(onnx_path, inputs)
    quantize_static(
        onnx_path, out_path, _CalibrationReader(name, inputs), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(ORT_QUANTIZED_OPS), per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=ignored,
        extra_options=dict(ActivationSymmetric=preset == 'performance', WeightSymmetric=True))
    return len(inputs)


def quantize_onnx(onnx_path: str, out_path: str, inputs: Iterable[np.ndarray],
                  keep_float: Optional[Sequence[str]] = None,
                  preset: str = 'mixed') -> dict:
    """Quantize a float ONNX graph to INT8, calibrated on example inputs.

    Args:
        onnx_path (str): The float ONNX file (one input).
        out_path (str): The INT8 model to write: ``.xml`` (OpenVINO NNCF; ``.bin``
            beside it) or ``.onnx`` (onnxruntime QDQ). Its folder is created.
        inputs (Iterable[np.ndarray]): Calibration inputs of the graph, e.g. (1, 3, H, W)
            float32 BGR images at the network's input size; each is run once.
        keep_float (Sequence[str], optional): The groups of :func:`float_node_names`
            kept in float. Defaults to the path's :data:`FLOAT_GROUPS`.
        preset (str): ``'mixed'`` (asymmetric activations, symmetric weights) or
            ``'performance'`` (both symmetric). Defaults to 'mixed'.

    Returns:
        dict: ``backend``, ``path``, ``num_calibration`` (the inputs used: onnxruntime
        skips those on which a two-stage graph detects nothing) and ``kept_float``
        (group -> number of nodes kept in float).

    Raises:
        ConfigError: Bad output extension or preset, or a missing package.
        ExportError: No calibration input (onnxruntime: none with a detection).
    """
    backend = quantization_backend(out_path)
    if preset not in ('mixed', 'performance'):
        raise ConfigError(f"quantization preset must be 'mixed' or 'performance', got "
                          f'{preset!r}')
    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
    if not inputs:
        raise ExportError('INT8 quantization needs at least one calibration input: check '
                          'the calibration images (--calib, --num)')
    groups = float_node_names(onnx_path)
    keep_float = FLOAT_GROUPS[backend] if keep_float is None else keep_float
    ignored = [n for g in keep_float for n in groups[g]]
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    quantize = _quantize_openvino if backend == 'openvino' else _quantize_onnxruntime
    used = quantize(onnx_path, out_path, inputs, ignored, preset)
    return dict(backend=backend, path=out_path, num_calibration=used,
                kept_float={g: len(groups[g]) for g in keep_float})
