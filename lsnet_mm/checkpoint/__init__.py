"""Reading and converting checkpoints: weights-only, downloads complete or not at all.

* :mod:`~lsnet_mm.checkpoint.allow_list`: the classes mmengine checkpoints hold,
  allow-listed for torch's weights-only unpickler (``import lsnet_mm`` does this);
* :mod:`~lsnet_mm.checkpoint.reader`: :func:`load_checkpoint` and
  :func:`load_state_dict`, the project's explicit weights-only reader of local files,
  URLs and mmengine's other prefixes, with errors naming the file and the fix;
* :mod:`~lsnet_mm.checkpoint.file_inspection`: a damaged file told from one holding
  pickled code, by reading it statically;
* :mod:`~lsnet_mm.checkpoint.download`: :func:`fetch_checkpoint`, URLs into the torch hub
  cache (where mmengine's loader looks) only when complete;
* :mod:`~lsnet_mm.checkpoint.convert`: the authors' ImageNet, mmdet 2.28 and mmseg 0.30
  files for these models;
* :mod:`~lsnet_mm.checkpoint.finite`: NaN / inf in weights.

How a state dict fits a model is model knowledge: :mod:`lsnet_mm.models.utils.checkpoint_fit`.
"""
from ..utils.errors import CheckpointError
from .allow_list import allow_checkpoint_globals
from .convert import (
    BIAS_RESOLUTION,
    convert_released_checkpoint,
    imagenet_to_backbone,
    read_backbone_weights,
    resize_attention_biases,
    upgrade_state_dict,
)
from .download import cached_checkpoint_path, download_checkpoint, fetch_checkpoint
from .finite import check_state_dict_finite, describe_non_finite, non_finite_tensors
from .reader import extract_state_dict, is_local_path, is_url, load_checkpoint, load_state_dict

__all__ = ['BIAS_RESOLUTION', 'CheckpointError', 'allow_checkpoint_globals',
           'cached_checkpoint_path', 'check_state_dict_finite', 'convert_released_checkpoint',
           'describe_non_finite', 'download_checkpoint', 'extract_state_dict',
           'fetch_checkpoint', 'imagenet_to_backbone',
           'is_local_path', 'is_url', 'load_checkpoint', 'load_state_dict',
           'non_finite_tensors', 'read_backbone_weights', 'resize_attention_biases',
           'upgrade_state_dict']
