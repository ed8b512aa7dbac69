"""Calibration images for INT8 quantization, read through a config's test pipeline.

The end-to-end graphs take an image at the network's input size
(:mod:`lsnet_mm.deploy.onnx_end2end`), which is what a config's test pipeline makes of
an image file (loading, resize, packing): :func:`calibration_inputs` runs that pipeline,
without its annotation loading, on the images of

* a folder (every image file in it and its subfolders, in sorted order), or
* a dataset of a loaded config (the model's own config, or a data config such as
  ``mmdet::_base_/datasets/coco_detection.py``): its ``val`` / ``train`` / ``test``
  dataloader's dataset (``split``), with the model config's test pipeline,

and returns each image as the graphs' (1, 3, H, W) float32 BGR 0-255 input.
"""
import copy
import os.path as osp
from typing import List

import numpy as np

from ..utils.errors import ConfigError, DatasetError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def test_pipeline(cfg) -> list:
    """A config's test pipeline without its annotation loading (calibration needs images).

    Args:
        cfg (mmengine.Config): The model's config (``test_dataloader.dataset.pipeline``).

    Returns:
        list[dict]: The transform configs.
    """
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.get('pipeline'))
    if not pipeline:
        raise ConfigError('the config has no test_dataloader.dataset.pipeline: calibration '
                          'images are read through the test pipeline')
    return [t for t in pipeline if not str(t.get('type', '')).endswith('LoadAnnotations')]


def _spread(count: int, num: int) -> List[int]:
    """``num`` indices spread evenly over ``range(count)`` (all of them if fewer)."""
    if num >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, num)})


def _folder_images(folder: str) -> List[str]:
    from mmengine.utils import scandir
    return sorted(osp.join(folder, f) for f in scandir(folder, IMAGE_SUFFIXES, recursive=True,
                                                       case_sensitive=False))


def _dataset_image_paths(data_cfg, split: str) -> List[str]:
    from mmengine.registry import DATASETS
    loader = data_cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise ConfigError(f'the calibration config has no {split}_dataloader.dataset: pick '
                          f'another split (--calib-split) or a folder of images (--calib DIR)')
    dataset_cfg = copy.deepcopy(loader['dataset'])
    dataset_cfg['pipeline'] = []
    dataset = DATASETS.build(dataset_cfg)
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def calibration_inputs(cfg, source=None, split: str = 'val',
                       num: int = 300) -> List[np.ndarray]:
    """Read calibration images through the model config's test pipeline.

    Args:
        cfg (mmengine.Config): The model's config; its ``default_scope`` must be the
            default registry scope (as :func:`lsnet_mm.apis.build_model_from_cfg`
            leaves it).
        source (str | mmengine.Config, optional): A folder of images, or a config whose
            ``{split}_dataloader`` dataset is read. Defaults to ``cfg`` itself.
        split (str): The dataloader of a config source: ``'val'``, ``'train'`` or
            ``'test'``. Defaults to 'val'.
        num (int): At most this many images, spread evenly over the source. Defaults
            to 300.

    Returns:
        list[np.ndarray]: (1, 3, H, W) float32 BGR 0-255 graph inputs.

    Raises:
        ConfigError: The folder does not exist, the folder or dataset holds no images,
            or ``num`` < 1.
        DatasetError: An image cannot be read.
    """
    from mmengine.dataset import Compose
    if num < 1:
        raise ConfigError(f'--num must be at least 1, got {num}')
    if isinstance(source, str):
        if not osp.isdir(source):
            raise ConfigError(f'calibration folder {source} not found: give a folder of '
                              f'images or a config (--calib)')
        paths, what = _folder_images(source), f'folder {source}'
    else:
        data_cfg = cfg if source is None else source
        paths = _dataset_image_paths(data_cfg, split)
        what = f'the {split} split of {data_cfg.filename or "the config"}'
    pipeline = Compose(test_pipeline(cfg))
    inputs = []
    for i in _spread(len(paths), num):
        try:
            packed = pipeline(dict(img_path=paths[i]))
        except (OSError, ValueError, TypeError, AssertionError) as e:  # mmcv's loading
            raise DatasetError(f'calibration image {paths[i]} cannot be read ({e}): remove '
                               f'it from {what} or replace it') from e
        inputs.append(packed['inputs'][None].float().numpy())
    return inputs
