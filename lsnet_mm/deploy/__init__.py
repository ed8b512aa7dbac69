"""Deployment: end-to-end ONNX export of LSNet detectors and segmentors, INT8, evaluation.

mmdeploy (1.3.1) does not run on the torch this project supports, so this package stands
in for it: :func:`export_end2end` writes a graph that takes an image and gives detections
(NMS and RoIAlign as ONNX operators) or a label map, :func:`export_backbone` a backbone
graph; :class:`OnnxModel` runs them in onnxruntime or OpenVINO, and
:func:`check_end2end` compares their predictions with PyTorch's. :func:`quantize_onnx`
makes INT8 models of them (OpenVINO NNCF or onnxruntime QDQ), calibrated on images
read through a config's test pipeline (:func:`calibration_inputs`);
:func:`use_backend_model` / :func:`evaluate_model_file` score any exported file with a
config's own dataloader and metric (``tools/test.py --backend``).
"""
from .backend_model import (
    LSNetBackendDetector,
    LSNetBackendSegmentor,
    evaluate_model_file,
    use_backend_model,
)
from .calibration import calibration_inputs
from .onnx_check import check_end2end, compare_detections_iou
from .onnx_export import (
    check_onnx,
    export_backbone,
    export_end2end,
    export_onnx,
    prepare_for_export,
)
from .onnx_runtime import OnnxModel
from .quantize import float_node_names, quantize_onnx

__all__ = ['LSNetBackendDetector', 'LSNetBackendSegmentor', 'OnnxModel', 'calibration_inputs',
           'check_end2end', 'check_onnx', 'compare_detections_iou', 'evaluate_model_file',
           'export_backbone', 'export_end2end', 'export_onnx', 'float_node_names',
           'prepare_for_export', 'quantize_onnx', 'use_backend_model']
