"""The dataset check: what each dataset of a config loads, checked before a run starts.

:func:`verify_datasets` builds every dataset a phase reads (``'train'``: the train
dataset and, when a val loop is configured, the val dataset; ``'test'``: the test
dataset; dataset wrappers are looked through) through the registries of the config's
default scope, as the Runner will, with an empty pipeline, and lets it load its data
list itself (``full_init``). It then checks what the dataset will use, whatever its
type, judged by the content of its samples (no type names matched):

* every sample's image exists, is not empty and has a header PIL can read;
* samples with a ``seg_map_path``: the label map exists, decodes, has its image's size
  as mmcv loads the image (JPEG / PNG EXIF orientation applied to the image, never to
  the label map) and, for semantic segmentation samples (no ``instances``), holds one
  channel of values that are classes or the ignore index once mapped as mmseg's
  ``LoadAnnotations`` maps them (``reduce_zero_label``, then ``label_map``);
* samples with ``instances``: every ``bbox`` is four finite numbers and every
  ``bbox_label`` one of the classes; no image id or image file is two samples;
* the dataset holds samples after its own filtering (``filter_cfg``), in every split;
* the dataset's own loading succeeds (a failure is reported naming the files).

A COCO-format annotation file (a JSON object with ``images``, ``annotations`` and
``categories``, whatever the dataset type) is also read raw, before the dataset is
built, since the COCO API hides some defects: invalid JSON (named by line and
column), missing fields, image ids listed twice, a file listed under two ids,
annotation ids used twice (pycocotools keeps one of each), box or area values that
are not finite numbers, and ``metainfo.classes`` that name no category of the file,
or name them in another order (mmdet numbers the labels in the file's order and
names them in the config's: the check stops with both orders and the fix rather than
map the labels by name). Boxes that mmdet leaves out or clips, images of another
size than the file lists and annotations of unlisted images are reported as
warnings.

Image sizes come from the file headers (PIL reads no pixels); label maps are decoded
for their values (about 20 header reads' worth each). Sets worth
:data:`POOL_MIN_FILES` header reads or more are read by a pool of forked processes
(``workers``). The whole check runs on the main process of a distributed run, which
hands its verdict to the others. A clean result is cached in ``.dataset_check/``
beside the work dir, keyed by the dataset class, its config (pipeline aside), its resolved metainfo,
the annotation file (path, size, mtime) and the data folders (path, mtime, number of
entries): a second run builds no dataset and reads no file. A file rewritten in place
is not seen until a folder or the annotation file changes; ``CheckedADE20KDataset``
and ``CheckedLoadImageFromFile`` still name a file that fails when it is loaded.

The config may turn the content check off (``dataset_check = False``) or set its
options (``dataset_check = dict(workers=4, cache_dir='PATH')``, ``cache_dir=None``
caches nothing); that the dataset files exist is checked in any case.
:func:`check_num_classes` (the heads' ``num_classes`` against the classes of the built
datasets) is a call of its own, whatever that setting.
"""
import contextlib
import copy
import difflib
import hashlib
import io
import json
import math
import multiprocessing
import os
import os.path as osp
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..utils.config_walk import type_name, walk_config
from ..utils.errors import ConfigError, DatasetError, ImageDecodeError, SegLabelError

CACHE_VERSION = 2
POOL_MIN_FILES = 2000  # header reads below this are done in this process
LABEL_MAP_COST = 20  # a label map decode costs about as much as this many header reads
MAX_WORKERS = 8
EXAMPLES = 3  # files / ids named per kind of problem
BORDER_TOLERANCE = 1.0  # pixels a box may extend past its image without a report

# How to get a dataset, by dataset class (or a base class of it); a config may
# override it with a top-level string ``data_help``.
DATA_HELP = {
    'CocoDataset': (
        'COCO 2017 is expected in mmdet\'s standard layout: {root}/annotations/'
        'instances_train2017.json, instances_val2017.json, {root}/train2017/, {root}/val2017/. '
        'Download the 2017 train/val images and annotations from https://cocodataset.org/#download '
        'and unpack them there (or symlink: ln -s /path/to/coco {root}), or point the config '
        'elsewhere with --cfg-options train_dataloader.dataset.data_root=... '
        '(see docs/detection.md).'),
    'ADE20KDataset': (
        'ADE20K (SceneParsing, ADEChallengeData2016) is expected in mmseg\'s layout: '
        '{root}/images/training/*.jpg, {root}/images/validation/*.jpg and the label maps '
        '{root}/annotations/{{training,validation}}/*.png. Download '
        'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unzip it '
        'into data/ade/ (or symlink it there), or set data_root, e.g. --cfg-options '
        'train_dataloader.dataset.data_root=PATH. For the generated demo data run '
        '".venv/bin/python -m lsnet_mm.datasets.demo.ade_scenes" (see docs/segmentation.md).'),
}

# OpenCV (mmcv's default decoder) applies the EXIF orientation of these formats when
# it loads an image in colour (checked with OpenCV 4.11; it ignores WebP's)
_EXIF_FORMATS = ('JPEG', 'MPO', 'PNG')
_ORIENTATION_TAG = 0x0112
_SIGNATURES = ((b'\xff\xd8', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'))
_NOT_FOUND = 'file not found'


# ------------------------------------------------------------------------- the config

def is_remote(path) -> bool:
    """Whether mmengine's file backends read ``path`` other than as a local file.

    Args:
        path (str): A path from the config.

    Returns:
        bool: True for a URI whose scheme mmengine maps to a remote backend
        (``s3://``, ``http://``, ...) or to none.
    """
    from mmengine.fileio.backends import LocalBackend, prefix_to_backends
    if not isinstance(path, str) or '://' not in path:
        return False
    scheme = path.split('://', 1)[0].rsplit(':', 1)[-1]  # 'cluster:s3' -> 's3'
    return prefix_to_backends.get(scheme) is not LocalBackend


def leaf_datasets(ds, path='dataset'):
    """The dataset configs inside dataset wrappers, in order, with their config paths.

    Args:
        ds (dict | None): A dataloader's ``dataset`` config: a dataset, or a wrapper
            (``RepeatDataset``, ``ClassBalancedDataset``, ``MultiImageMixDataset``: key
            ``dataset``; ``ConcatDataset``: key ``datasets``), possibly nested.
        path (str): The config path of ``ds``, e.g. ``'train_dataloader.dataset'``.

    Returns:
        list[tuple[str, dict]]: (config path, config) of the datasets themselves.
    """
    if not isinstance(ds, dict):
        return []
    if isinstance(ds.get('datasets'), (list, tuple)):
        return [leaf for i, d in enumerate(ds['datasets'])
                for leaf in leaf_datasets(d, f'{path}.datasets[{i}]')]
    if isinstance(ds.get('dataset'), dict):
        return leaf_datasets(ds['dataset'], f'{path}.dataset')
    return [(path, ds)]


def phase_dataloaders(cfg, phase):
    """The dataloaders a phase uses, as (config key, dataloader config) pairs.

    Args:
        cfg (mmengine.Config): The config.
        phase (str): ``'train'``: the train dataloader and the val dataloader (the
            latter only when a val loop is configured, ``val_cfg``); ``'test'``: the
            test dataloader.

    Returns:
        list[tuple[str, dict]]: The configured dataloaders (missing ones left out).
    """
    keys = {'train': ['train_dataloader', 'val_dataloader'],
            'test': ['test_dataloader']}[phase]
    return [(key, cfg.get(key)) for key in keys
            if cfg.get(key) and (key != 'val_dataloader' or cfg.get('val_cfg'))]


def _phase_leaves(cfg, phase):
    """(label, config path, dataset config) of every local dataset a phase reads."""
    out = []
    for key, loader in phase_dataloaders(cfg, phase):
        leaves = leaf_datasets(loader.get('dataset'), f'{key}.dataset')
        for path, ds_cfg in leaves:
            backend = (ds_cfg.get('backend_args') or {}).get('backend', 'local')
            if backend == 'local' and not is_remote(ds_cfg.get('data_root') or ''):
                out.append((key if len(leaves) == 1 else path, path, ds_cfg))
    return out


def _build_lazy(ds_cfg):
    """The dataset, without its data list (``lazy_init``), pipeline and serialization.

    Returns None for a type that is no mmengine ``BaseDataset`` (nothing to check).
    Call it under the config's default scope.
    """
    from mmengine.dataset import BaseDataset
    from mmengine.registry import DATASETS
    typ = ds_cfg.get('type')
    with DATASETS.switch_scope_and_registry(None) as registry:  # the default scope's
        cls = registry.get(typ) if isinstance(typ, str) else typ
    if cls is None:
        raise _Problems([(f'dataset type {typ!r} is not registered in the default scope\'s '
                          f'registry: check the type name (and custom_imports) in the '
                          f'config.', DatasetError)])
    if not (isinstance(cls, type) and issubclass(cls, BaseDataset)):
        return None
    cfg = copy.deepcopy(ds_cfg)
    cfg.update(pipeline=[], lazy_init=True, serialize_data=False)
    try:
        return registry.build(cfg)
    except Exception as e:  # the dataset's own check of its arguments
        raise _Problems([(f'{type_name(typ)} cannot be built from its config: '
                          f'{type(e).__name__}: {e}. Fix the dataset settings in the '
                          f'config.', DatasetError)]) from None


def find_num_classes(model_cfg, path='model'):
    """{config path: num_classes} in a model config, RPN heads excluded (class-agnostic).

    Args:
        model_cfg (dict): The ``model`` config.
        path (str): Its config path. Defaults to 'model'.

    Returns:
        dict[str, int]: e.g. ``{'model.bbox_head.num_classes': 80}``.
    """
    skip = ('rpn_head', 'train_cfg', 'test_cfg')
    return {where: value
            for where, key, value, _ in walk_config(model_cfg, path, lambda k, v: k in skip)
            if key == 'num_classes' and isinstance(value, int) and not isinstance(value, bool)}


def check_num_classes(cfg, phase):
    """Raise :class:`ConfigError` if the heads' num_classes differ from the dataset's classes.

    The classes are those each dataset of the phase holds once built (``metainfo``
    merged into the dataset type's ``METAINFO``); no data file is read.

    Args:
        cfg (mmengine.Config): The config.
        phase (str): ``'train'`` (train and val datasets) or ``'test'``.
    """
    from mmengine.registry import DefaultScope
    heads = find_num_classes(cfg.get('model') or {})
    if not heads:
        return
    problems = []
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for label, _, ds_cfg in _phase_leaves(cfg, phase):
            try:
                ds = _build_lazy(ds_cfg)
            except _Problems:  # verify_datasets reports it
                continue
            classes = tuple((ds.metainfo.get('classes') or ()) if ds is not None else ())
            wrong = {k: v for k, v in heads.items() if v != len(classes)}
            if classes and wrong:
                problems.append(
                    f'{label} has {len(classes)} classes ({", ".join(map(str, classes[:6]))}'
                    f'{", ..." if len(classes) > 6 else ""}) but the model has '
                    + ', '.join(f'{k}={v}' for k, v in wrong.items())
                    + f'. Set num_classes={len(classes)} in the config (e.g. --cfg-options '
                    + ' '.join(f'{k}={len(classes)}' for k in wrong)
                    + ') or fix metainfo.classes.')
    if problems:
        raise ConfigError('\n'.join(dict.fromkeys(problems)))


# ------------------------------------------------------------------------- file probes

class ImageHeader(NamedTuple):
    """An image's size as its header stores it, and its EXIF orientation (1-8)."""

    width: int
    height: int
    orientation: int = 1

    @property
    def loaded_size(self):
        """tuple[int, int]: (width, height) as mmcv loads the image in colour."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


class LabelMap(NamedTuple):
    """A decoded label map: its size, channels and the values it stores (sorted)."""

    width: int
    height: int
    channels: int
    values: tuple


def _reason(path, error):
    """Why a file cannot be read, in a few words."""
    if isinstance(error, FileNotFoundError):
        return _NOT_FOUND
    if isinstance(error, IsADirectoryError):
        return 'a folder, not a file'
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError:  # e.g. no permission
        head = b''
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if isinstance(error, UnidentifiedImageError):
        detail = 'PIL cannot read its header'
        if kind is None:
            return 'not an image that PIL can identify'
    else:
        detail = f'{type(error).__name__}: {str(error).strip() or "no details"}'
    return f'truncated or corrupt {kind} ({detail})' if kind else f'cannot be decoded ({detail})'


def probe_image(path) -> Union[ImageHeader, str]:
    """Read an image's header (PIL reads no pixels).

    Args:
        path (str): The image file.

    Returns:
        ImageHeader | str: The size and EXIF orientation, or why the header cannot be
        read (``'file not found'``, ``'empty file (0 bytes)'``, ...).
    """
    try:
        if osp.getsize(path) == 0:
            return 'empty file (0 bytes)'
        with Image.open(path) as img:
            width, height = img.size
            orientation = (img.getexif().get(_ORIENTATION_TAG, 1)
                           if img.format in _EXIF_FORMATS and 'exif' in img.info else 1)
    except Exception as e:  # OSError, SyntaxError, ValueError, ... from the decoders
        return _reason(path, e)
    if width <= 0 or height <= 0:
        return f'the header gives a size of {width}x{height}'
    valid = isinstance(orientation, int) and 1 <= orientation <= 8
    return ImageHeader(width, height, orientation if valid else 1)


def probe_label_map(path) -> Union[LabelMap, str]:
    """Decode a label map as mmseg's ``LoadAnnotations`` does (PIL, unchanged).

    Args:
        path (str): The label map file.

    Returns:
        LabelMap | str: Its size, channels and stored values, or why it cannot be read.
    """
    try:
        if osp.getsize(path) == 0:
            return 'empty file (0 bytes)'
        with Image.open(path) as img:
            width, height = img.size
            if img.mode in ('L', 'P'):  # 8-bit indices: PIL counts them (the common case)
                img.load()
                counts = img.histogram()
                return LabelMap(width, height, 1, tuple(v for v, n in enumerate(counts) if n))
            pixels = np.asarray(img)
    except Exception as e:  # OSError ('image file is truncated'), ...
        return _reason(path, e)
    pixels = pixels.squeeze()
    if pixels.ndim > 2:
        return LabelMap(width, height, pixels.shape[-1], ())
    if pixels.dtype == np.bool_:
        pixels = pixels.view(np.uint8)
    values = np.unique(pixels)
    return LabelMap(width, height, 1, tuple(int(v) for v in values))


def _mapped_label(value, reduce_zero_label, label_map):
    if not 0 <= value <= 255:  # mmseg reads label maps as uint8: such a value wraps around
        return None
    if reduce_zero_label:  # 0 ('other') -> 255, v -> v - 1, 255 stays the ignore value
        value = 255 if value in (0, 255) else value - 1
    return label_map.get(value, value) if label_map else value


def invalid_label_values(values: Sequence[int], num_classes: int, ignore_index: int = 255,
                         reduce_zero_label: bool = False,
                         label_map: Optional[dict] = None) -> list:
    """The values, as stored in a label map, that mmseg maps to no class.

    Args:
        values (Sequence[int]): Values stored in the file.
        num_classes (int): The dataset's number of classes.
        ignore_index (int): The dataset's ignore index. Defaults to 255.
        reduce_zero_label (bool): The dataset's setting. Defaults to False.
        label_map (dict, optional): The dataset's ``label_map`` (old id -> new id).

    Returns:
        list[int]: The values that are neither a class (0..num_classes-1) nor the
        ignore index once mmseg's ``LoadAnnotations`` has mapped them.
    """
    bad = []
    for v in values:
        mapped = _mapped_label(v, reduce_zero_label, label_map)
        if mapped is None or not (0 <= mapped < num_classes or mapped == ignore_index):
            bad.append(v)
    return bad


def _probe(task):
    kind, path = task
    return probe_label_map(path) if kind == 'label map' else probe_image(path)


def _probe_chunk(tasks):
    return [_probe(t) for t in tasks]


def probe_files(tasks, workers=None):
    """Probe many files, with a pool of processes for large sets.

    mmengine's ``track_parallel_progress`` would do, but it draws a progress bar on
    stdout and uses the default start method; this pool forks (the workers need no
    import) and prints nothing.

    Args:
        tasks (Sequence[tuple[str, str]]): ``('image', path)`` (header) or
            ``('label map', path)`` (decoded) per file.
        workers (int, optional): Most processes; default: the CPU count, at most
            :data:`MAX_WORKERS`. Sets cheaper than :data:`POOL_MIN_FILES` header reads
            are probed in this process.

    Returns:
        list: Per task, :func:`probe_image`'s or :func:`probe_label_map`'s result.
    """
    tasks = list(tasks)
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    cost = sum(LABEL_MAP_COST if kind == 'label map' else 1 for kind, _ in tasks)
    if cost < POOL_MIN_FILES or workers <= 1:
        return _probe_chunk(tasks)
    size = max(16, math.ceil(len(tasks) / (8 * workers)))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    if 'fork' in multiprocessing.get_all_start_methods():
        pool = ProcessPoolExecutor(min(workers, len(chunks)),
                                   mp_context=multiprocessing.get_context('fork'))
    else:  # spawned workers would import the whole package: threads read well enough
        pool = ThreadPoolExecutor(min(workers, len(chunks)))
    with pool:
        return [r for part in pool.map(_probe_chunk, chunks) for r in part]


# ------------------------------------------------------------------------- the cache

def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [osp.abspath(path), st.st_size, st.st_mtime_ns]


def _folder_stamp(path):
    """A folder's path, mtime and number of entries (a file added or removed changes it)."""
    stamp = _stamp(path)
    if stamp is None:
        return None
    with os.scandir(path) as entries:
        stamp[1] = sum(1 for _ in entries)
    return stamp


class _Cache:
    """Clean check results, one JSON file per key, in ``folder`` (None: no cache)."""

    def __init__(self, folder):
        self.folder = folder

    def _file(self, key):
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return osp.join(self.folder, f'{digest}.json')

    def get(self, key):
        if not self.folder or key is None:
            return None
        try:
            with open(self._file(key)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        return entry.get('summary') if entry.get('key') == key else None

    def put(self, key, summary):
        if not self.folder or key is None:
            return
        path = self._file(key)
        tmp = f'{path}.{os.getpid()}.tmp'
        try:
            os.makedirs(self.folder, exist_ok=True)
            with open(tmp, 'w') as f:
                json.dump(dict(key=key, summary=summary), f)
            os.replace(tmp, path)
        except OSError:  # a read-only place: no cache, no failure
            if osp.exists(tmp):
                os.remove(tmp)


def default_cache_dir(cfg):
    """Where the results are cached: ``.dataset_check/`` beside the config's work dir.

    Args:
        cfg (mmengine.Config): The config (``work_dir`` set, as the tools set it).

    Returns:
        str | None: The folder; None without a work dir.
    """
    work_dir = cfg.get('work_dir')
    if not work_dir:
        return None
    return osp.join(osp.dirname(osp.abspath(work_dir)), '.dataset_check')


def _cache_key(ds, ds_cfg):
    """What a clean result depends on (JSON data), or None when it cannot be told."""
    ann = ds.ann_file or ''
    stamps = [_folder_stamp(ann) if osp.isdir(ann) else _stamp(ann)] if ann else []
    folders = sorted({p for p in (ds.data_prefix or {}).values() if isinstance(p, str)})
    stamps += [_folder_stamp(p or ds.data_root or '.') for p in folders or ['']]
    if None in stamps:
        return None
    cls = type(ds)
    settings = {k: v for k, v in ds_cfg.items() if k != 'pipeline'}
    try:
        described = [json.dumps(part, sort_keys=True, default=repr)
                     for part in (settings, ds.metainfo)]
    except (TypeError, ValueError):  # keys that do not sort
        return None
    return [CACHE_VERSION, f'{cls.__module__}.{cls.__qualname__}', stamps, described]


# ------------------------------------------------------------------------- messages

class _Problems(Exception):
    """Problems of one dataset that stop the run: [(message, error class)]."""


def _size(wh):
    return f'{wh[0]}x{wh[1]}'


def _count(n, what, plural=None):
    return f'{n} {what}' if n == 1 else f'{n} {plural or what + "s"}'


def _names(items, limit=100):
    items = [str(i) for i in items]
    shown = ', '.join(repr(i) for i in items[:limit])
    return f'[{shown}{", ..." if len(items) > limit else ""}]' + (
        f' ({len(items)} in all)' if len(items) > limit else '')


def _more(items):
    return f' and {len(items) - EXAMPLES} more' if len(items) > EXAMPLES else ''


def _failed_files(bad, what, total):
    """'N of M WHAT cannot be read: 'path' (reason), ...'."""
    shown = ', '.join(f'{p!r} ({why})' for p, why in bad[:EXAMPLES])
    return f'{len(bad)} of {total} {what} cannot be read: {shown}{_more(bad)}'


def _help(ds, cfg):
    for cls in type(ds).__mro__:
        if cls.__name__ in DATA_HELP:
            return cfg.get('data_help') or DATA_HELP[cls.__name__]
    return cfg.get('data_help') or ''


def _missing_paths(ds, cfg):
    """The 'files not found' problem of a dataset whose folders or files do not exist."""
    root = ds.data_root or ''
    if root and not osp.isdir(root):
        missing = [('data_root', root)]
    else:
        missing = [('ann_file', ds.ann_file)] if ds.ann_file and not osp.exists(ds.ann_file) \
            else []
        missing += [(f'data_prefix.{name}', sub) for name, sub in (ds.data_prefix or {}).items()
                    if isinstance(sub, str) and sub and not osp.isdir(sub)]
    if not missing:
        return None
    what = '; '.join(f'{n} {p!r}' for n, p in missing)
    return (f'{type(ds).__name__} files not found: {what} (cwd {os.getcwd()!r}). '
            + _help(ds, cfg).format(root=root.rstrip('/') or '.'))


def _empty_message(ds, path):
    where = ' '.join(f'{k}={v!r}' for k, v in (('data_root', ds.data_root),
                                                ('ann_file', ds.ann_file)) if v)
    msg = f'the dataset ({where or "see the config"}) holds no sample'
    filt = ds.filter_cfg or {}
    if not ds.test_mode and (filt.get('filter_empty_gt') or filt.get('min_size')):
        return msg + (
            f' after its filter_cfg={dict(filt)}: images without annotated objects '
            f'(filter_empty_gt=True) and images smaller than min_size pixels are left out. '
            f'Check that the annotation file lists objects for its images (category ids that '
            f'match metainfo.classes), or keep the images without objects with --cfg-options '
            f'{path}.filter_cfg.filter_empty_gt=False (they then train the background only), '
            f'or lower {path}.filter_cfg.min_size.')
    suffix = getattr(ds, 'img_suffix', None)
    folder = (ds.data_prefix or {}).get('img_path', (ds.data_prefix or {}).get('img'))
    found = (f' or no {suffix} file is in {folder!r}' if suffix and folder is not None else
             ', or none matched the image folder')
    return msg + (f': the annotation file lists no images{found}. mmengine would fail on it '
                  f'("need at least one array to concatenate") or run no iteration. Check '
                  f'{path}.ann_file and {path}.data_prefix.')


# ------------------------------------------------------------------------- COCO format

_IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
_ANN_KEYS = ('id', 'image_id', 'bbox', 'area', 'category_id')


def _load_json(ann_file):
    with open(ann_file, 'rb') as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        ends = e.pos >= len(e.doc.rstrip())
        raise _Problems([(
            f'annotation file {ann_file!r} is not valid JSON: {e.msg} at line {e.lineno}, '
            f'column {e.colno} (character {e.pos} of {len(e.doc)})'
            + ('; the file ends there, so it is truncated' if ends else '')
            + '. Download or generate it again (or restore it from a copy).',
            DatasetError)]) from None
    except UnicodeDecodeError as e:
        raise _Problems([(f'annotation file {ann_file!r} is not UTF-8 text ({e}); it is not a '
                          f'JSON file. Check ann_file in the config.', DatasetError)]) from None


def _malformed(entries, keys, what):
    """Indices and missing keys of entries that lack a field mmdet reads."""
    bad = []
    for i, entry in enumerate(entries):
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            bad.append(f'{what}[{i}] lacks {", ".join(missing)}')
    return bad


def _number_flaw(value):
    """Why a JSON value is no finite number ('NaN', 'infinite', 'a string'), or None."""
    if type(value) is int:
        return None
    if type(value) is float:
        return None if math.isfinite(value) else 'NaN' if value != value else 'infinite'
    return 'null' if value is None else f'a {type(value).__name__}'


def _box_value_problem(anns, files, ann_file):
    flawed = []
    for ann in anns:
        bbox = ann['bbox']
        if not isinstance(bbox, list) or len(bbox) != 4:
            flawed.append(f'annotation id {ann["id"]} has bbox {bbox!r} (needs [x, y, width, '
                          f'height])')
            continue
        flaws = [(name, _number_flaw(v)) for name, v in zip(('x', 'y', 'width', 'height'), bbox)]
        flaws.append(('area', _number_flaw(ann['area'])))
        flaws = [f'{name} is {f}' for name, f in flaws if f]
        if flaws:
            flawed.append(f'annotation id {ann["id"]} (image {files.get(ann["image_id"])!r}) '
                          f'bbox {bbox!r} area {ann["area"]!r}: {", ".join(flaws)}')
    if not flawed:
        return None
    return (f'{ann_file!r} has {_count(len(flawed), "annotation")} whose box values are not '
            f'finite numbers: {"; ".join(flawed[:EXAMPLES])}{_more(flawed)}. mmdet would drop '
            f'a NaN box as "outside the image", train on an infinite one (a non-finite loss) '
            f'and fail on a string or null with a TypeError. Fix or remove these annotations '
            f'in the file.')


def _repeated(pairs):
    """[(key, [values])] of the keys that come with more than one value, in order."""
    groups = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(value)
    return [(key, values) for key, values in groups.items() if len(values) > 1]


def _duplicate_problems(images, anns, ann_file):
    """Image ids listed twice, files under two ids, annotation ids used twice."""
    checks = (
        (_repeated((im['id'], im['file_name']) for im in images), 'image id', 'more than once',
         lambda i, files: f'id {i} for {" and ".join(map(repr, files))}',
         'pycocotools keeps one image per id and gives it the annotations of all of them, so '
         'boxes would train on the wrong image. Give every image its own id (and its '
         'annotations the matching image_id).'),
        (_repeated((im['file_name'], im['id']) for im in images), 'file',
         'under more than one image id', lambda name, ids: f'{name!r} as ids '
                                         f'{", ".join(map(str, ids))}',
         'mmdet would load such an image once per id, each time with the boxes of that id only '
         '(the other objects train as background). List each image once, with all its '
         'annotations under its id.'),
        (_repeated((a['id'], a['image_id']) for a in anns), 'annotation id', 'more than once',
         lambda i, uses: f'{i} ({len(uses)} times)',
         'pycocotools keeps one annotation per id (mmdet stops with "Annotation ids ... are not '
         'unique", CocoMetric mixes them up). Give every annotation its own id.'))
    return [f'{ann_file!r} {"uses" if noun == "annotation id" else "lists"} '
            f'{_count(len(found), noun)} {how}: '
            f'{"; ".join(example(*item) for item in found[:EXAMPLES])}{_more(found)}. {why}'
            for found, noun, how, example, why in checks if found]


def _class_problems(classes, categories, ann_file):
    """metainfo.classes against the file's categories: names, duplicates, order."""
    names = [c['name'] for c in categories]
    twice = [n for n, k in Counter(names).items() if k > 1]
    if twice:
        return [f'{ann_file!r} has {_count(len(twice), "category name")} used by more than one '
                f'category: {_names(twice)}. mmdet would give one class the ids of several '
                f'categories and shift the labels of the others. Give each category its own '
                f'name (or merge them).']
    known = set(names)
    missing = [c for c in classes if c not in known]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
            if close:
                hints.append(f'{name!r}: {" or ".join(repr(c) for c in close)}')
        return [f'{len(missing)} of the {len(classes)} names in metainfo.classes match no '
                f'category of {ann_file!r}: {_names(missing)}'
                + (f' (close matches: {"; ".join(hints)})' if hints else '')
                + f'. metainfo.classes: {_names(classes)}; the categories of the file: '
                f'{_names(names)}. mmdet would give those classes no object (and CocoMetric '
                f'fails at the first evaluation). Spell metainfo.classes as the file\'s '
                f'categories (a config without metainfo.classes gets the 80 COCO classes).']
    wanted = set(classes)
    file_order = [n for n in names if n in wanted]
    if file_order == list(classes):
        return []
    wrong = [(i, f, c) for i, (f, c) in enumerate(zip(file_order, classes)) if f != c]
    i, f, c = wrong[0]
    return [f'metainfo.classes lists the classes in another order than the categories of '
            f'{ann_file!r}: metainfo.classes: {_names(classes)}; the file\'s order: '
            f'{_names(file_order)}. mmdet\'s CocoDataset numbers the labels in the file\'s '
            f'order but names them in metainfo.classes\' order, so {len(wrong)} of the '
            f'{len(classes)} classes would be trained, saved in the checkpoint and predicted '
            f'under the wrong name (label {i}, the file\'s {f!r}, would be called {c!r}). The '
            f'check stops rather than map the labels by name, which would change what the '
            f'labels of earlier checkpoints mean. Fix: write metainfo.classes in the file\'s '
            f'order, classes={tuple(file_order)!r} (and the palette in the same order).']


def _box_kind(bbox, area, width, height):
    """'size' or 'outside' (why mmdet leaves the box out), 'partial' or None."""
    x, y, w, h = bbox
    if w < 1 or h < 1 or area <= 0:
        return 'size'
    inter_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inter_h = max(0.0, min(y + h, height) - max(y, 0.0))
    if inter_w * inter_h == 0:
        return 'outside'
    tol = BORDER_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return 'partial'
    return None


def _coco_file_summary(ann_file, classes):
    """Check a COCO-format annotation file; None when the file is JSON of another format.

    Returns the counts of boxes mmdet leaves out or clips and of orphan annotations
    (JSON data, cached); raises _Problems for what stops the run.
    """
    data = _load_json(ann_file)
    if not isinstance(data, dict) or not {'images', 'categories'} <= set(data):
        return None
    if (not isinstance(data.get('images'), list) or not isinstance(data.get('categories'), list)
            or not isinstance(data.get('annotations', []), list)):
        raise _Problems([(f'{ann_file!r} is not a COCO annotation file: it needs the lists '
                          f'"images", "annotations" and "categories". Check ann_file in the '
                          f'config.', DatasetError)])
    images, anns = data['images'], data.get('annotations', [])
    bad = (_malformed(images, _IMAGE_KEYS, 'images')
           + _malformed(data['categories'], ('id', 'name'), 'categories')
           + _malformed(anns, _ANN_KEYS, 'annotations'))
    if bad:
        raise _Problems([(f'{ann_file!r} lacks fields that mmdet reads: {"; ".join(bad[:5])}'
                          + (f' ({len(bad)} in all)' if len(bad) > 5 else '')
                          + '. Fix the file (COCO format: cocodataset.org/#format-data).',
                          DatasetError)])
    files = {im['id']: im['file_name'] for im in images}
    problems = _duplicate_problems(images, anns, ann_file)
    problems.append(_box_value_problem(anns, files, ann_file))
    problems += _class_problems(list(classes or ()), data['categories'], ann_file)
    problems = [(p, DatasetError) for p in problems if p]
    if problems:
        raise _Problems(problems)
    by_id = {im['id']: im for im in images}
    boxes = {'size': [0, []], 'outside': [0, []], 'partial': [0, []]}
    orphans = 0
    for ann in anns:
        im = by_id.get(ann['image_id'])
        if im is None:
            orphans += 1
            continue
        if ann.get('ignore', False):
            continue
        kind = _box_kind(ann['bbox'], ann['area'], im['width'], im['height'])
        if kind:
            boxes[kind][0] += 1
            if len(boxes[kind][1]) < EXAMPLES:
                boxes[kind][1].append([ann['id'], im['file_name'], ann['bbox']])
    return dict(ann_file=ann_file, annotations=len(anns), boxes=boxes, orphans=orphans)


def _clipping_resize(pipeline):
    """The type of the first resize of a pipeline that clips boxes to the image."""
    for step in pipeline or []:
        name = type_name(step.get('type')) if isinstance(step, dict) else ''
        if name.endswith('Resize'):
            return name if step.get('clip_object_border', True) else None
    return None


def _box_examples(items):
    return 'e.g. ' + ', '.join(f'annotation id {a} in {f!r} bbox {b}' for a, f, b in items)


def _coco_report(summary, pipeline, test_mode):
    """One warning about boxes mmdet leaves out or clips, and orphan annotations ('' if none)."""
    parts = []
    boxes = summary['boxes']
    dropped = boxes['size'][0] + boxes['outside'][0]
    if dropped:
        kinds = [f'{count} with width or height < 1 px or area <= 0 ({_box_examples(ex)})'
                 if kind == 'size' else
                 f'{count} entirely outside the image ({_box_examples(ex)})'
                 for kind, (count, ex) in boxes.items() if count and kind != 'partial']
        parts.append(f'{dropped} of the {_count(summary["annotations"], "box", "boxes")} '
                     f'{"is" if dropped == 1 else "are"} invalid and left out by mmdet\'s '
                     f'CocoDataset' + ('' if test_mode else ' (the objects train as background)')
                     + ': ' + '; '.join(kinds))
    count, ex = boxes['partial']
    if count and not test_mode:
        clipper = _clipping_resize(pipeline)
        parts.append(f'{_count(count, "box", "boxes")} extend{"s" if count == 1 else ""} more '
                     f'than {BORDER_TOLERANCE:g} px past the image ({_box_examples(ex)}): '
                     + (f'the pipeline\'s {clipper} clips them to the image '
                        f'(clip_object_border=True)' if clipper else
                        'kept unclipped: no Resize of the pipeline clips them '
                        '(clip_object_border=True)'))
    if summary['orphans']:
        parts.append(f'{_count(summary["orphans"], "annotation")} refer to image ids the file '
                     f'does not list (ignored)')
    return f'{summary["ann_file"]!r}: {"; ".join(parts)}.' if parts else ''


# ------------------------------------------------------------------------- the samples

def _entries(ds):
    """The dataset's samples as it will use them (``data_list``, else get_data_info)."""
    n = len(ds)
    data_list = ds.data_list
    return data_list if len(data_list) == n else [ds.get_data_info(i) for i in range(n)]


def _file_problems(ds, paths, found, what, missing_fix, broken_fix):
    missing = [p for p in paths if found[p] == _NOT_FOUND]
    broken = [(p, found[p]) for p in paths if isinstance(found[p], str) and found[p] != _NOT_FOUND]
    problems = []
    if missing:
        shown = ', '.join(repr(p) for p in missing[:EXAMPLES])
        listed = f' listed in {ds.ann_file!r}' if ds.ann_file and osp.isfile(ds.ann_file) else ''
        problems.append((f'{len(missing)} of the {len(paths)} {what}{listed} are missing: '
                         f'{shown}{_more(missing)}. {missing_fix}', ImageDecodeError))
    if broken:
        problems.append((_failed_files(broken, what, len(paths)) + f'. {broken_fix}',
                         ImageDecodeError))
    return problems


def _image_problems(ds, entries, found):
    paths = list(dict.fromkeys(e['img_path'] for e in entries if isinstance(e.get('img_path'),
                                                                            str)))
    prefix = {k: v for k, v in (ds.data_prefix or {}).items() if isinstance(v, str)}
    source = f'them from {ds.ann_file!r}' if ds.ann_file else 'them from the dataset'
    return _file_problems(
        ds, paths, found, 'images',
        f'Check data_root and data_prefix ({prefix}) in the config, and that the download or '
        f'copy of the images is complete.',
        f'Download or generate them again, or remove {source}.')


def _size_note(entries, found):
    """The warning about images of another size than the annotations list ('' if none)."""
    wrong = []
    for e in entries:
        header = found.get(e.get('img_path'))
        listed = (e.get('width'), e.get('height'))
        if isinstance(header, ImageHeader) and all(isinstance(v, int) for v in listed) \
                and header.loaded_size != listed:
            wrong.append((e['img_path'], header, listed))
    if not wrong:
        return ''
    shown = ', '.join(f'{p!r} is {_size(h.loaded_size)}'
                      + (' after its EXIF orientation' if h.orientation >= 5 else '')
                      + f', listed as {_size(listed)}' for p, h, listed in wrong[:EXAMPLES])
    return (f'{_count(len(wrong), "image")} differ{"s" if len(wrong) == 1 else ""} in size from '
            f'the width x height the annotations list ({shown}{_more(wrong)}): the boxes may '
            f'not fit the loaded image.')


def _value_ranges(valid):
    """'0-5, 255' for [0, 1, 2, 3, 4, 5, 255]."""
    runs, start = [], None
    for v, nxt in zip(valid, valid[1:] + [None]):
        start = v if start is None else start
        if nxt != v + 1:
            runs.append(f'{start}-{v}' if v > start else str(v))
            start = None
    return ', '.join(runs) or 'none'


def _label_problems(ds, pairs, found, num_classes):
    """Size, channels and values of semantic label maps: SegLabelError problems."""
    ignore = getattr(ds, 'ignore_index', 255)
    sizes, colour, values = [], [], []
    settings = None
    for e, img, seg in pairs:
        label, header = found[seg], found.get(img)
        if not isinstance(label, (LabelMap, ImageHeader)):
            continue
        if isinstance(header, ImageHeader) and header.loaded_size != (label.width, label.height):
            sizes.append((seg, label, img, header))
        if isinstance(label, ImageHeader):  # a detection sample's map: size only
            continue
        if label.channels > 1:
            colour.append((seg, label.channels))
            continue
        settings = (bool(e.get('reduce_zero_label', getattr(ds, 'reduce_zero_label', False))),
                    e.get('label_map', getattr(ds, 'label_map', None)))
        bad = invalid_label_values(label.values, num_classes, ignore, *settings)
        if bad:
            values.append((seg, bad, label.values))
    problems = []
    if sizes:
        shown = '; '.join(
            f'label map {seg!r} is {_size((lab.width, lab.height))} but its image {img!r} is '
            f'{_size(h.loaded_size)}'
            + (' (after its EXIF orientation, as mmcv loads it)' if h.orientation >= 5 else '')
            for seg, lab, img, h in sizes[:EXAMPLES])
        problems.append(
            f'{len(sizes)} of the {len(pairs)} label maps do not have the size of their image '
            f'(width x height): {shown}{_more(sizes)}. mmseg would train on misaligned crops and '
            f'fail at validation. Each label map must be its image\'s size: regenerate it, or '
            f'pair it with the right image.')
    if colour:
        shown = ', '.join(f'{seg!r} has {c} channels' for seg, c in colour[:EXAMPLES])
        problems.append(
            f'{len(colour)} of the {len(pairs)} label maps are colour (multi-channel) images, '
            f'not maps of class indices: {shown}{_more(colour)}. mmseg reads a label map as one '
            f'channel holding a class index per pixel: convert them (each colour to its class '
            f'index), or point data_prefix.seg_map_path at the index maps.')
    if values:
        rz, label_map = settings
        valid = [v for v in range(256) if not invalid_label_values([v], num_classes, ignore,
                                                                   rz, label_map)]
        shown = '; '.join(f'{seg!r} holds value(s) {bad} (values in the file: {list(vals)})'
                          for seg, bad, vals in values[:EXAMPLES])
        wide = any(v > 255 or v < 0 for _, bad, _ in values for v in bad)
        problems.append(
            f'{len(values)} of the {len(pairs)} label maps hold values outside the '
            f'{num_classes} classes of this dataset: {shown}{_more(values)}. With '
            f'{num_classes} classes, ignore index {ignore}, reduce_zero_label={rz}'
            + (' and the label_map of metainfo.classes' if label_map else '')
            + f', the valid values as stored are {_value_ranges(valid)}'
            + ('; mmseg reads label maps as 8-bit, so values above 255 wrap around' if wide
               else '')
            + '. mmseg would stop training with "Target N is out of bounds" (a device-side '
            'assert on CUDA) and silently drop those pixels when evaluating (a wrong mIoU). Fix '
            'or regenerate these label maps (a colour PNG or a map of another dataset gives such '
            'values), or use the dataset type, metainfo.classes and reduce_zero_label that '
            'match them.')
    return [(p, SegLabelError) for p in problems]


def _box_flaw(bbox):
    try:
        values = np.asarray(bbox, dtype=np.float64)
    except (TypeError, ValueError):
        return 'not numbers'
    if values.shape != (4,):
        return f'{values.size} values, not 4'
    if np.isnan(values).any():
        return 'NaN'
    return None if np.isfinite(values).all() else 'infinite'


def _instance_problems(ds, entries, num_classes):
    """Boxes that are not 4 finite numbers, labels outside the classes."""
    items = [(e, j, inst) for e in entries for j, inst in enumerate(e.get('instances') or ())
             if isinstance(inst, dict) and 'bbox' in inst]
    if not items:
        return []
    try:  # the common case at once; box by box only when the boxes do not stack
        boxes = np.asarray([inst['bbox'] for _, _, inst in items], dtype=np.float64)
        flawed = (list(np.flatnonzero(~np.isfinite(boxes).all(axis=1)))
                  if boxes.ndim == 2 and boxes.shape[1] == 4 else None)
    except (TypeError, ValueError):
        flawed = None
    if flawed is None:
        flawed = [i for i, (_, _, inst) in enumerate(items) if _box_flaw(inst['bbox'])]
    source = ds.ann_file or f'{type(ds).__name__}.load_data_list'
    problems = []
    if flawed:
        shown = '; '.join(f'{items[i][0].get("img_path")!r} instance {items[i][1]} bbox '
                          f'{list(items[i][2]["bbox"])} ({_box_flaw(items[i][2]["bbox"])})'
                          for i in flawed[:EXAMPLES])
        problems.append(
            f'{_count(len(flawed), "box", "boxes")} of the samples '
            f'{"is" if len(flawed) == 1 else "are"} not 4 finite numbers: {shown}'
            f'{_more(flawed)}. mmdet would train on them (a non-finite loss) or fail inside '
            f'a transform. Fix or remove them in {source!r}.')
    labels = [(e, j, inst['bbox_label']) for e, j, inst in items if 'bbox_label' in inst]
    wrong = [(e, j, lab) for e, j, lab in labels
             if not (isinstance(lab, (int, np.integer)) and 0 <= lab < num_classes)]
    if wrong and num_classes:
        shown = '; '.join(f'{e.get("img_path")!r} instance {j} bbox_label {lab!r}'
                          for e, j, lab in wrong[:EXAMPLES])
        problems.append(
            f'{_count(len(wrong), "box", "boxes")} {"has" if len(wrong) == 1 else "have"} a '
            f'bbox_label outside the {num_classes} classes (0-{num_classes - 1}): {shown}'
            f'{_more(wrong)}. The loss would fail ("Target N is out of bounds") or train a '
            f'class that does not exist. Fix the labels in {source!r}, or metainfo.classes.')
    return problems


def _duplicate_samples(ds, entries):
    """Image ids or image files that are two samples: (problems, notes)."""
    problems, notes = [], []
    twice = _repeated((e['img_id'], e.get('img_path')) for e in entries
                      if e.get('img_id') is not None)
    if twice:
        shown = '; '.join(f'id {i!r} for {" and ".join(map(repr, p))}' for i, p in twice[:EXAMPLES])
        problems.append((f'{_count(len(twice), "image id")} {"is" if len(twice) == 1 else "are"} '
                         f'more than one sample: {shown}{_more(twice)}. Give every image its '
                         f'own id in {ds.ann_file or "the annotations"!r}.', DatasetError))
    paths = Counter(e['img_path'] for e in entries if isinstance(e.get('img_path'), str))
    listed = [(p, n) for p, n in paths.items() if n > 1]
    if not listed or twice:
        return problems, notes
    shown = ', '.join(f'{p!r} ({n} times)' for p, n in listed[:EXAMPLES])
    if any('instances' in e for e in entries):
        problems.append((f'{_count(len(listed), "image")} {"is" if len(listed) == 1 else "are"} '
                         f'listed as more than one sample: {shown}{_more(listed)}; each sample '
                         f'trains with its own objects only (the others as background). List '
                         f'each image once, with all its objects.', DatasetError))
    else:
        notes.append(f'{_count(len(listed), "image")} {"is" if len(listed) == 1 else "are"} '
                     f'listed more than once ({shown}{_more(listed)}): sampled that many times '
                     f'as often.')
    return problems, notes


def _check_samples(ds, entries, workers):
    """Check the samples a dataset loads: (problems, warnings)."""
    num_classes = len(ds.metainfo.get('classes') or ())
    pairs = [(e, e.get('img_path'), e['seg_map_path']) for e in entries
             if isinstance(e.get('seg_map_path'), str)]
    tasks = {('image', e['img_path']): None for e in entries if isinstance(e.get('img_path'), str)}
    for e, _, seg in pairs:
        tasks[('image' if 'instances' in e else 'label map', seg)] = None
    results = probe_files(list(tasks), workers)
    found = {path: result for (_, path), result in zip(tasks, results)}
    problems = _image_problems(ds, entries, found)
    if pairs:
        seg_dir = (ds.data_prefix or {}).get('seg_map_path', (ds.data_prefix or {}).get('seg'))
        suffix = getattr(ds, 'seg_map_suffix', None)
        segs = list(dict.fromkeys(seg for _, _, seg in pairs))
        problems += _file_problems(
            ds, segs, found, 'label maps',
            f'Every image needs its label map{f" ({suffix})" if suffix else ""} of the same name '
            f'in {seg_dir!r}.',
            f'(in {seg_dir!r}) Generate or download them again, or remove them with their '
            f'images.')
        problems += _label_problems(ds, pairs, found, num_classes)
    problems += [(p, DatasetError) for p in _instance_problems(ds, entries, num_classes)]
    duplicates, notes = _duplicate_samples(ds, entries)
    problems += duplicates
    notes.append(_size_note(entries, found))
    return problems, [n for n in notes if n]


# ------------------------------------------------------------------------- the check

def _summarize(ds, path, workers):
    """Check a lazily built dataset's files and samples; the summary is cacheable."""
    coco = None
    if isinstance(ds.ann_file, str) and ds.ann_file.endswith('.json') and osp.isfile(ds.ann_file):
        coco = _coco_file_summary(ds.ann_file, ds.metainfo.get('classes'))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
            ds.full_init()
    except Exception as e:  # the dataset's own loading (pycocotools, a missing folder, ...)
        if isinstance(e, DatasetError):
            raise _Problems([(str(e), type(e))]) from None
        raise _Problems([(
            f'{type(ds).__name__} failed to load its samples (ann_file {ds.ann_file!r}, '
            f'data_prefix {dict(ds.data_prefix or {})}): {type(e).__name__}: '
            f'{str(e).strip() or "no details"}. Fix the file or the paths the config gives.',
            DatasetError)]) from None
    if len(ds) == 0:
        raise _Problems([(_empty_message(ds, path), DatasetError)])
    entries = _entries(ds)
    problems, notes = _check_samples(ds, entries, workers)
    if problems:
        raise _Problems(problems)
    return dict(images=len(entries), coco=coco, notes=notes)


def _check_dataset(ds_cfg, path, cfg, opts):
    """Check one dataset: its summary dict, or None when not checked."""
    ds = _build_lazy(ds_cfg)
    if ds is None:
        return None
    missing = _missing_paths(ds, cfg)
    if missing:
        raise _Problems([(missing, DatasetError)])
    if opts is None:
        return None
    key = _cache_key(ds, ds_cfg)
    summary = opts['cache'].get(key)
    cached = summary is not None
    if not cached:
        summary = _summarize(ds, path, opts['workers'])
        opts['cache'].put(key, summary)
    warnings = list(summary['notes'])
    if summary['coco']:
        warnings.insert(0, _coco_report(summary['coco'], ds_cfg.get('pipeline'), ds.test_mode))
    return dict(images=summary['images'], cached=cached, warnings=[w for w in warnings if w])


def _options(cfg, cache_dir, workers):
    """The content check's options (cache, workers), or None when the config turns it off."""
    opts = cfg.get('dataset_check', True)
    if opts is False or (isinstance(opts, dict) and not opts.get('enable', True)):
        return None
    opts = dict(opts) if isinstance(opts, dict) else {}
    if cache_dir is None:
        cache_dir = opts['cache_dir'] if 'cache_dir' in opts else default_cache_dir(cfg)
    return dict(cache=_Cache(cache_dir),
                workers=workers if workers is not None else opts.get('workers'))


def _raise(problems):
    """One error listing every problem, a line each (tools join the lines with '; ')."""
    grouped = {}
    for label, text, cls in problems:
        grouped.setdefault((text, cls), []).append(label)
    classes = {cls for _, _, cls in problems}
    cls = classes.pop() if len(classes) == 1 else DatasetError
    raise cls(f'dataset check failed with {_count(len(grouped), "problem")}\n' + '\n'.join(
        f'{", ".join(labels)}: {text}' for (text, _), labels in grouped.items()))


def _run_check(cfg, phase, opts):
    """('ok', (results, seconds)) or ('raise', error): what every rank acts on."""
    from mmengine.registry import DefaultScope
    start = time.perf_counter()
    results, problems = {}, []
    try:
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            for label, path, ds_cfg in _phase_leaves(cfg, phase):
                try:
                    outcome = _check_dataset(ds_cfg, path, cfg, opts)
                except _Problems as e:
                    problems += [(label, text, cls) for text, cls in e.args[0]]
                    continue
                if outcome is not None:
                    results[label] = outcome
        if problems:
            _raise(problems)
    except Exception as e:  # every rank raises it (see verify_datasets)
        return 'raise', e
    return 'ok', (results, time.perf_counter() - start)


def verify_datasets(cfg, phase, cache_dir=None, workers=None, quiet=False) -> dict:
    """Check the datasets a run of ``phase`` loads, before it starts.

    In a distributed run (mmengine.dist initialised) the main process checks and every
    process gets its verdict; otherwise each process checks (cached after the first).

    Args:
        cfg (mmengine.Config): The config (``work_dir`` set, for the cache;
            ``default_scope`` 'mmdet' or 'mmseg').
        phase (str): ``'train'`` (the train dataset, and the val dataset when a val loop
            is configured) or ``'test'`` (the test dataset).
        cache_dir (str, optional): Where clean results are cached; default: the config's
            ``dataset_check.cache_dir``, else :func:`default_cache_dir`.
        workers (int, optional): Most processes reading files; default: the config's
            ``dataset_check.workers``, else the CPU count (at most 8).
        quiet (bool): Print nothing. Defaults to False: on the main process, one line
            ``dataset check: ...: ok in X s`` on stdout and a ``warning:`` line on stderr
            per non-fatal finding (boxes mmdet leaves out or clips, images of another
            size than listed, images listed twice in a segmentation split).

    Returns:
        dict: Per dataloader (``'train_dataloader'``, ...; the dataset's config path,
        e.g. ``'train_dataloader.dataset.datasets[1]'``, inside a wrapper of several):
        ``images`` (samples checked), ``cached`` (whether the result came from the cache)
        and ``warnings`` (list of str). Empty when the config turns the content check off
        (``dataset_check = False``).

    Raises:
        DatasetError: One message listing every problem found, each naming its
            dataloader, the files and the fix: missing files, unreadable images or label
            maps, label maps of another size or with values outside the classes, invalid
            annotation files, duplicate ids, box values that are not finite numbers,
            classes that are not the file's categories in the file's order, empty
            datasets. :class:`ImageDecodeError` or :class:`SegLabelError` (subclasses)
            when every problem is of that kind.
    """
    from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
    opts = _options(cfg, cache_dir, workers)
    if is_distributed():
        verdict = [_run_check(cfg, phase, opts) if is_main_process() else None]
        broadcast_object_list(verdict)
        kind, value = verdict[0]
    else:
        kind, value = _run_check(cfg, phase, opts)
    if kind == 'raise':
        raise value
    results, seconds = value
    if not quiet and is_main_process():
        for label, result in results.items():
            for warning in result['warnings']:
                print(f'warning: dataset check: {label}: {warning}', file=sys.stderr, flush=True)
        if results:
            counts = ', '.join(f'{label} {r["images"]} images' for label, r in results.items())
            cached = ' (cached)' if all(r['cached'] for r in results.values()) else ''
            print(f'dataset check: {counts}: ok in {seconds:.2f} s{cached}', flush=True)
    return results
