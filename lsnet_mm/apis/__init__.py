"""User-facing functions: models from configs, deploy mode and ONNX export.

Inference is mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer`` on this
project's configs (``tools/infer.py`` is a thin CLI over them). ONNX: backbones and
end-to-end detectors / segmentors (:func:`export_end2end`), run and checked in
onnxruntime or OpenVINO (:class:`OnnxModel`, :func:`check_end2end`).
"""
from .builder import build_model_from_cfg, drop_pretrained, load_config
from .deploy import switch_model_to_deploy
from .onnx_check import check_end2end
from .onnx_export import check_onnx, export_backbone, export_end2end, export_network, export_onnx
from .onnx_runtime import OnnxModel

__all__ = ['OnnxModel', 'build_model_from_cfg', 'check_end2end', 'check_onnx',
           'drop_pretrained', 'export_backbone', 'export_end2end', 'export_network',
           'export_onnx', 'load_config', 'switch_model_to_deploy']
