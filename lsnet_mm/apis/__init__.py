"""User-facing functions: models from configs, deploy mode and ONNX export.

Inference is mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer`` on this
project's configs (``tools/infer.py`` is a thin CLI over them).
"""
from .builder import build_model_from_cfg, drop_pretrained, load_config
from .deploy import switch_model_to_deploy
from .onnx_export import check_onnx, export_backbone, export_network, export_onnx

__all__ = ['build_model_from_cfg', 'check_onnx', 'drop_pretrained', 'export_backbone',
           'export_network', 'export_onnx', 'load_config', 'switch_model_to_deploy']
