"""What tools are made of: models from configs, the checks before a run, tool plumbing.

:func:`build_model_from_cfg` builds a config's model with random weights (benchmarks,
export, tests); :mod:`~lsnet_mm.apis.preflight` holds the checks ``tools/train.py`` and
``tools/test.py`` run before anything long starts; :mod:`~lsnet_mm.apis.launch` the
command-line plumbing they share (config loading, CPU launch, one-line errors).
Inference is mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer`` on this project's
configs; ONNX export is :mod:`lsnet_mm.deploy`.
"""
from .builder import build_model_from_cfg, drop_pretrained, load_config

__all__ = ['build_model_from_cfg', 'drop_pretrained', 'load_config']
