"""Exported end-to-end files run as mmengine models, evaluated with a config's metric.

:class:`LSNetBackendDetector` and :class:`LSNetBackendSegmentor` are mmengine
``BaseModel`` s whose ``test_step`` runs an end-to-end file (float ``.onnx``, INT8 QDQ
``.onnx`` or OpenVINO ``.xml``) in onnxruntime or OpenVINO and returns the data samples
mmdet's and mmseg's models return: ``pred_instances`` (boxes, scores, labels and,
for Mask R-CNN, masks, in the original image's coordinates) / ``pred_sem_seg`` (the
label map at the original image's size). So mmengine's test loop and the config's own
evaluator (``CocoMetric``, ``IoUMetric``) score a deployed file with the same code as a
PyTorch model: :func:`use_backend_model` puts one into a config (``tools/test.py
--backend``), :func:`evaluate_model_file` runs that config's val or test set.

What differs from the PyTorch model's ``predict``: the images go through the graph one
by one; segmentors' label maps are computed at the network's input size and resized to
the original size by nearest neighbour (mmseg resizes the logits bilinearly first, then
takes the arg-max: labels can differ along class borders when the sizes differ).
"""
import abc
import copy
import os.path as osp
import uuid
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from ..registry import MODELS
from ..utils.errors import ConfigError
from .onnx_runtime import OnnxModel, check_model_file

#: this module, imported by a config that names the models (``custom_imports``)
MODULE = __name__


class _BackendModel(BaseModel):
    """An exported file in a runtime, as an inference-only mmengine model.

    Args:
        model_file (str): The end-to-end file (``.onnx`` or OpenVINO ``.xml``).
        backend (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): The runtime's intra-op threads; 0: its default. Defaults to 0.
        data_preprocessor (dict, optional): mmengine's ``BaseDataPreprocessor`` (moves
            data only) by default: the graph does the normalisation.
        init_cfg (dict, optional): Unused (no weights).
    """

    def __init__(self, model_file: str, backend: str = 'onnxruntime', threads: int = 0,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.model_file, self.backend = model_file, backend
        self.session = OnnxModel(model_file, backend, threads)

    def forward(self, inputs: List[torch.Tensor], data_samples: Optional[list] = None,
                mode: str = 'predict') -> list:
        """Predict each image with the exported file (``mode='predict'`` only).

        Args:
            inputs (list[torch.Tensor]): (3, H, W) images as the test pipeline packs
                them (BGR 0-255, at the network's input size).
            data_samples (list): Their data samples (meta information, ground truth).
            mode (str): Must be ``'predict'``.

        Returns:
            list: The data samples with the predictions added.

        Raises:
            ConfigError: Another mode (the file cannot train or give raw tensors).
        """
        if mode != 'predict':
            raise ConfigError(f'{type(self).__name__} runs an exported file for inference '
                              f'only (mode=predict), not mode={mode!r}: train and test '
                              f'tensor outputs with the PyTorch model')
        for image, sample in zip(inputs, data_samples):
            self.predict_one(self.session(image[None].float()), sample)
        return data_samples

    @abc.abstractmethod
    def predict_one(self, outputs: dict, sample) -> None:
        """Add the graph's outputs for one image to its data sample."""


@MODELS.register_module()
class LSNetBackendDetector(_BackendModel):
    """An end-to-end detector file (``dets``, ``labels`` (, ``masks``)) as an mmdet model.

    Boxes are divided by the sample's ``scale_factor`` (the original image's
    coordinates, as mmdet's ``predict(rescale=True)``); Mask R-CNN masks are pasted
    into the original image at ``mask_thr_binary``.

    Args:
        model_file (str): The end-to-end file.
        backend (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): The runtime's intra-op threads; 0: its default. Defaults to 0.
        mask_thr_binary (float): Mask probability threshold (the config's
            ``test_cfg.rcnn.mask_thr_binary``). Defaults to 0.5.
        **kwargs: ``data_preprocessor``, ``init_cfg``.
    """

    def __init__(self, model_file: str, backend: str = 'onnxruntime', threads: int = 0,
                 mask_thr_binary: float = 0.5, **kwargs):
        super().__init__(model_file, backend, threads, **kwargs)
        self.mask_thr_binary = mask_thr_binary

    def predict_one(self, outputs: dict, sample) -> None:
        """Set ``sample.pred_instances`` from the graph's outputs for its image.

        Args:
            outputs (dict[str, np.ndarray]): ``dets``, ``labels`` (, ``masks``).
            sample (DetDataSample): The image's data sample.
        """
        from mmengine.structures import InstanceData

        from .onnx_end2end import paste_masks
        dets = torch.from_numpy(outputs['dets'][0])
        w_scale, h_scale = sample.metainfo.get('scale_factor', (1.0, 1.0))
        bboxes = dets[:, :4] / dets.new_tensor([w_scale, h_scale, w_scale, h_scale])
        pred = InstanceData(bboxes=bboxes, scores=dets[:, 4],
                            labels=torch.from_numpy(outputs['labels'][0]))
        if 'masks' in outputs:
            h, w = sample.metainfo['ori_shape'][:2]
            pred.masks = paste_masks(outputs['masks'][0], bboxes, h, w, self.mask_thr_binary)
        sample.pred_instances = pred


@MODELS.register_module()
class LSNetBackendSegmentor(_BackendModel):
    """An end-to-end segmentor file (``seg``) as an mmseg model.

    The label map is resized to the sample's ``ori_shape`` by nearest neighbour when
    the network's input size differs from it.

    Args:
        model_file (str): The end-to-end file.
        backend (str): ``'onnxruntime'`` or ``'openvino'``. Defaults to 'onnxruntime'.
        threads (int): The runtime's intra-op threads; 0: its default. Defaults to 0.
        **kwargs: ``data_preprocessor``, ``init_cfg``.
    """

    def predict_one(self, outputs: dict, sample) -> None:
        """Set ``sample.pred_sem_seg`` from the graph's ``seg`` output for its image.

        Args:
            outputs (dict[str, np.ndarray]): ``seg`` (1, 1, H, W).
            sample (SegDataSample): The image's data sample.
        """
        from mmengine.structures import PixelData
        seg = torch.from_numpy(outputs['seg'][0])
        size = tuple(sample.metainfo.get('ori_shape', seg.shape[-2:])[:2])
        if tuple(seg.shape[-2:]) != size:
            seg = F.interpolate(seg[None].float(), size=size, mode='nearest')[0].long()
        sample.pred_sem_seg = PixelData(data=seg)


def use_backend_model(cfg, model_file: str, backend: str, threads: int = 0) -> None:
    """Make a config evaluate an exported end-to-end file instead of a PyTorch model.

    ``cfg.model`` becomes an :class:`LSNetBackendDetector` (mmdet configs) or
    :class:`LSNetBackendSegmentor` (configs whose model has a ``decode_head``), with the
    original model's mask threshold; ``load_from`` is cleared (the file holds the
    weights) and this module is added to ``custom_imports`` (so the config the runner
    dumps builds again). The datasets, pipelines and evaluators stay as they are.

    Args:
        cfg (mmengine.Config): The model's config, changed in place.
        model_file (str): The ``.onnx`` / OpenVINO ``.xml`` end-to-end file (export it
            from this config: the graph holds its ``test_cfg``).
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        threads (int): The runtime's intra-op threads; 0: its default. Defaults to 0.

    Raises:
        ConfigError: Unknown or uninstalled runtime, missing file, an ``.xml`` file for
            onnxruntime, or a config without a model.
    """
    check_model_file(model_file, backend)
    model = cfg.get('model')
    if not model:
        raise ConfigError('the config has no model: use the config the file was exported '
                          'from')
    # the graph normalises: mmengine's plain preprocessor (named, so that the Runner does
    # not merge a config's top-level data_preprocessor, e.g. mmseg's, into the model)
    common = dict(model_file=model_file, backend=backend, threads=threads,
                  data_preprocessor=dict(type='BaseDataPreprocessor'))
    if 'decode_head' in model:
        cfg.model = dict(type='LSNetBackendSegmentor', **common)
    else:
        rcnn = (model.get('test_cfg') or {}).get('rcnn') or {}
        cfg.model = dict(type='LSNetBackendDetector', **common,
                         mask_thr_binary=rcnn.get('mask_thr_binary', 0.5))
    cfg.load_from = None
    imports = dict(cfg.get('custom_imports') or dict(imports=[], allow_failed_imports=False))
    names = list(imports.get('imports') or [])
    if MODULE not in names:
        imports['imports'] = names + [MODULE]
    cfg.custom_imports = imports


def evaluate_model_file(cfg, model_file: str, backend: str, work_dir: str,
                        split: str = 'val', threads: int = 0) -> dict:
    """Evaluate an exported file on a config's val (or test) set with its own metric.

    An mmengine ``Runner`` runs the config's dataloader and evaluator of ``split`` with
    the file as the model (:func:`use_backend_model`), as ``tools/test.py --backend``.

    Args:
        cfg (mmengine.Config): The model's config (not changed).
        model_file (str): The end-to-end file.
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        work_dir (str): The runner's work dir (logs).
        split (str): ``'val'`` or ``'test'``. Defaults to 'val'.
        threads (int): The runtime's intra-op threads; 0: its default. Defaults to 0.

    Returns:
        dict: The evaluator's metrics (e.g. ``coco/bbox_mAP``, ``mIoU``).

    Raises:
        ConfigError: As :func:`use_backend_model`, or the config has no such split.
    """
    from mmengine.runner import Runner
    if not cfg.get(f'{split}_dataloader') or not cfg.get(f'{split}_evaluator'):
        raise ConfigError(f'the config has no {split}_dataloader / {split}_evaluator to '
                          f'evaluate {model_file} on')
    cfg = copy.deepcopy(cfg)
    use_backend_model(cfg, model_file, backend, threads)
    cfg.test_dataloader, cfg.test_evaluator = cfg[f'{split}_dataloader'], cfg[f'{split}_evaluator']
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'  # the metrics are returned; no per-run environment dump
    # unique names: mmengine keeps one logger and visualizer per name in a process
    tag = uuid.uuid4().hex[:8]
    cfg.experiment_name = f'{osp.splitext(osp.basename(model_file))[0]}_{tag}'
    if cfg.get('visualizer'):
        cfg.visualizer.name = f'visualizer_{tag}'
    return Runner.from_cfg(cfg).test()
