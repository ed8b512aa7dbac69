"""A fast check of a config's datasets before training or testing starts.

``tools/train.py`` runs :func:`check_datasets` on the train and val datasets before
the Runner is built, ``tools/test.py`` on the test dataset. It is driven by the
config's dataloaders (dataset wrappers are looked through) and works for mmdet and
mmseg configs alike:

* COCO-format datasets (mmdet's ``CocoDataset`` and its subclasses): the annotation
  file parses (else an error naming the file and the line, column and character of
  the JSON error) and has the fields mmdet reads; every listed image exists and its
  header decodes; each name in ``metainfo.classes`` is a category of the file (else
  an error listing both, with close matches). Boxes that mmdet's ``CocoDataset``
  leaves out (width or height < 1 px, area <= 0, or entirely outside the image) and
  boxes that extend past their image are counted and reported with the first few
  annotation ids and image files; they are not fatal (real COCO 2017 has a few).
  mmdet keeps partly-outside boxes in the dataset and its ``Resize`` clips them to
  the image (``clip_object_border=True``, the default, in the configs' pipelines);
  the report says whether the pipeline does.
* Segmentation datasets (mmseg's ``BaseSegDataset`` and its subclasses, e.g.
  ADE20K): every image has its label map, both headers decode, and the label map has
  the size of its image (as mmcv loads it: JPEG EXIF orientation applied to the
  image, not to the label map).

Sizes come from the file headers only (PNG and JPEG are parsed here, other formats
by PIL without decoding the pixels); sets of :data:`POOL_MIN_IMAGES` images or more
are read by a process pool. A clean result is cached in ``.dataset_check/`` beside
the work dir, keyed by the annotation file (path, size, mtime) and the image folder
(path, mtime, number of entries) for COCO, by the image and label map folders (and
the split file, if any) for segmentation, so a second run is nearly instant. A file
rewritten in place is not seen until the annotation file or a folder changes
(``CheckedADE20KDataset`` still checks each label map's size when it loads it).
A clean dataset prints one line (counts and time); problems that would fail the run
raise :class:`PreflightError` naming the files and the fix.

The config may turn the check off (``dataset_check = False``) or set its options:
``dataset_check = dict(workers=4, cache_dir='PATH')`` (``cache_dir=None`` caches
nothing).
"""
import copy
import difflib
import hashlib
import json
import math
import multiprocessing
import os
import os.path as osp
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from ..utils.preflight import PreflightError, is_remote, leaf_datasets, phase_dataloaders

CACHE_VERSION = 1
POOL_MIN_IMAGES = 2000  # smaller sets are read in this process
MAX_WORKERS = 8
EXAMPLES = 3  # files / annotation ids named per kind of problem
BORDER_TOLERANCE = 1.0  # pixels a box may extend past its image without a report

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageHeaderError(ValueError):
    """A file whose image header cannot be read (empty, truncated or not an image)."""


def read_image_header(path):
    """Read an image's size from its header, without decoding the pixels.

    PNG and JPEG headers are parsed here (for JPEG also the EXIF orientation); other
    formats are opened with PIL, which reads the header only.

    Args:
        path (str): The image file.

    Returns:
        tuple[int, int, int]: Width and height as stored, and the EXIF orientation
        (1-8; 1 when there is none).

    Raises:
        FileNotFoundError: The file does not exist.
        ImageHeaderError: The file is empty, truncated or not an image.
    """
    with open(path, 'rb') as f:
        head = f.read(24)
        if not head:
            raise ImageHeaderError('empty file (0 bytes)')
        if head.startswith(_PNG_SIGNATURE):
            if len(head) < 24 or head[12:16] != b'IHDR':
                raise ImageHeaderError('truncated or corrupt PNG header')
            width, height = struct.unpack('>II', head[16:24])
            orientation = 1
        elif head.startswith(b'\xff\xd8'):
            f.seek(2)
            width, height, orientation = _jpeg_header(f)
        else:
            width, height, orientation = _pil_header(path)
    if width <= 0 or height <= 0:
        raise ImageHeaderError(f'the header gives a size of {width}x{height}')
    return width, height, orientation


def _pil_header(path):
    from PIL import Image
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as e:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        raise ImageHeaderError(f'not an image that PIL can identify ({type(e).__name__})') from e
    return width, height, 1


def _jpeg_header(f):
    """(width, height, orientation) from the JPEG segments before the frame header."""
    orientation = 1
    while True:
        marker = f.read(2)
        if len(marker) < 2:
            raise ImageHeaderError('truncated JPEG: the file ends before its frame header')
        if marker[0] != 0xFF:
            raise ImageHeaderError(f'corrupt JPEG: no segment marker at byte {f.tell() - 2}')
        kind = marker[1]
        while kind == 0xFF:  # fill bytes
            byte = f.read(1)
            if not byte:
                raise ImageHeaderError('truncated JPEG: the file ends before its frame header')
            kind = byte[0]
        if kind in (0x01, 0xD8) or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        if kind in (0xD9, 0xDA):
            raise ImageHeaderError('corrupt JPEG: image data before the frame header')
        raw = f.read(2)
        if len(raw) < 2:
            raise ImageHeaderError('truncated JPEG header')
        length = struct.unpack('>H', raw)[0]
        if length < 2:
            raise ImageHeaderError('corrupt JPEG: a segment of negative length')
        if kind in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                raise ImageHeaderError('truncated JPEG frame header')
            height, width = struct.unpack('>HH', frame[1:5])
            return width, height, orientation
        if kind == 0xE1 and orientation == 1:
            segment = f.read(length - 2)
            if segment.startswith(b'Exif\x00\x00'):
                orientation = _exif_orientation(segment[6:])
        else:
            f.seek(length - 2, os.SEEK_CUR)


def _exif_orientation(tiff):
    """The orientation tag (0x0112) of IFD0 of an EXIF (TIFF) block; 1 if absent."""
    try:
        order = {b'II': '<', b'MM': '>'}[tiff[:2]]
        offset = struct.unpack(order + 'I', tiff[4:8])[0]
        count = struct.unpack(order + 'H', tiff[offset:offset + 2])[0]
        for i in range(count):
            entry = offset + 2 + 12 * i
            if struct.unpack(order + 'H', tiff[entry:entry + 2])[0] == 0x0112:
                value = struct.unpack(order + 'H', tiff[entry + 8:entry + 10])[0]
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


def loaded_size(header):
    """The (width, height) of an image as mmcv loads it in colour (EXIF orientation applied).

    Args:
        header (tuple): :func:`read_image_header`'s result.

    Returns:
        tuple[int, int]: Width and height, swapped for EXIF orientations 5-8.
    """
    width, height, orientation = header
    return (height, width) if orientation >= 5 else (width, height)


def _probe(path):
    """Header of one file, or why it cannot be read (a string)."""
    try:
        return read_image_header(path)
    except FileNotFoundError:
        return 'file not found'
    except (ImageHeaderError, OSError) as e:
        return str(e) or type(e).__name__


def unreadable(path):
    """Why an image file cannot be read, judged by its header.

    Args:
        path (str): The image file.

    Returns:
        str | None: The reason (``'file not found'``, ``'empty file (0 bytes)'``, ...),
        or None when the header reads.
    """
    result = _probe(path)
    return result if isinstance(result, str) else None


def _probe_chunk(paths):
    return [_probe(p) for p in paths]


def _executor(workers):
    if 'fork' in multiprocessing.get_all_start_methods():
        import PIL.Image  # noqa: F401 (imported once here, not in every worker)
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('fork'))
    # spawned workers would import the whole package: threads read headers well enough
    return ThreadPoolExecutor(workers)


def probe_images(paths, workers=None):
    """Read the headers of many files, with a process pool for large sets.

    Args:
        paths (Sequence[str]): The files.
        workers (int, optional): Most processes to use; default: the CPU count, at most
            :data:`MAX_WORKERS`. Sets smaller than :data:`POOL_MIN_IMAGES` are read in
            this process.

    Returns:
        list: Per file, :func:`read_image_header`'s tuple, or a string saying why the
        header cannot be read (``'file not found'``, ``'empty file (0 bytes)'``, ...).
    """
    paths = list(paths)
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if len(paths) < POOL_MIN_IMAGES or workers <= 1:
        return _probe_chunk(paths)
    size = max(64, math.ceil(len(paths) / (4 * workers)))
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    with _executor(min(workers, len(chunks))) as pool:
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


# ------------------------------------------------------------------------- messages

def _size(wh):
    return f'{wh[0]}x{wh[1]}'


def _names(items, limit=100):
    items = [str(i) for i in items]
    shown = ', '.join(repr(i) for i in items[:limit])
    return f'[{shown}{", ..." if len(items) > limit else ""}]' + (
        f' ({len(items)} in all)' if len(items) > limit else '')


def _failed_files(bad, what, total):
    """'N of M WHAT cannot be read: 'path' (reason), ...'."""
    shown = ', '.join(f'{p!r} ({why})' for p, why in bad[:EXAMPLES])
    more = f' and {len(bad) - EXAMPLES} more' if len(bad) > EXAMPLES else ''
    return f'{len(bad)} of {total} {what} cannot be read: {shown}{more}'


class _Problems(Exception):
    """Problems of one dataset that stop the run (messages)."""


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
        raise _Problems([
            f'annotation file {ann_file!r} is not valid JSON: {e.msg} at line {e.lineno}, '
            f'column {e.colno} (character {e.pos} of {len(e.doc)})'
            + ('; the file ends there, so it is truncated' if ends else '')
            + '. Download or generate it again (or restore it from a copy).']) from None
    except UnicodeDecodeError as e:
        raise _Problems([f'annotation file {ann_file!r} is not UTF-8 text ({e}); it is not a '
                         f'COCO JSON file. Check ann_file in the config.']) from None


def _malformed(entries, keys, what):
    """Indices and missing keys of entries that lack a field mmdet reads."""
    bad = []
    for i, entry in enumerate(entries):
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            bad.append(f'{what}[{i}] lacks {", ".join(missing)}')
    return bad


def _bbox(ann):
    bbox = ann['bbox']
    if (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)):
        return [float(v) for v in bbox]
    return None


def _box_kind(bbox, area, width, height):
    """'size' or 'outside' (why mmdet leaves the box out), 'partial' or None."""
    x, y, w, h = bbox
    if w < 1 or h < 1 or not isinstance(area, (int, float)) or area <= 0:
        return 'size'
    inter_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inter_h = max(0.0, min(y + h, height) - max(y, 0.0))
    if inter_w * inter_h == 0:
        return 'outside'
    tol = BORDER_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return 'partial'
    return None


def _coco_summary(ann_file, img_prefix, workers):
    """Check a COCO annotation file and its images; the summary is cacheable."""
    data = _load_json(ann_file)
    if (not isinstance(data, dict) or not isinstance(data.get('images'), list)
            or not isinstance(data.get('categories'), list)
            or not isinstance(data.get('annotations', []), list)):
        raise _Problems([
            f'{ann_file!r} is not a COCO annotation file: it needs the lists "images", '
            f'"annotations" and "categories" (mmdet\'s CocoDataset reads that format). '
            f'Check ann_file in the config.'])
    images, anns = data['images'], data.get('annotations', [])
    bad = (_malformed(images, _IMAGE_KEYS, 'images')
           + _malformed(data['categories'], ('id', 'name'), 'categories')
           + _malformed(anns, _ANN_KEYS, 'annotations'))
    bad += [f'annotation id {a["id"]} has bbox {a["bbox"]!r} (needs [x, y, width, height])'
            for a in anns if isinstance(a, dict) and 'bbox' in a and 'id' in a
            and _bbox(a) is None][:EXAMPLES]
    if bad:
        raise _Problems([f'{ann_file!r} lacks fields that mmdet reads: {"; ".join(bad[:5])}'
                         + (f' ({len(bad)} in all)' if len(bad) > 5 else '')
                         + '. Fix the file (COCO format: cocodataset.org/#format-data).'])

    paths = [osp.join(img_prefix, im['file_name']) for im in images]
    headers = probe_images(paths, workers)
    missing = [p for p, h in zip(paths, headers) if h == 'file not found']
    broken = [(p, h) for p, h in zip(paths, headers)
              if isinstance(h, str) and h != 'file not found']
    problems = []
    if missing:
        shown = ', '.join(repr(p) for p in missing[:EXAMPLES])
        problems.append(
            f'{len(missing)} of the {len(paths)} images listed in {ann_file!r} are missing: '
            f'{shown}{" ..." if len(missing) > EXAMPLES else ""}. Check data_root and '
            f'data_prefix.img ({img_prefix!r}) in the config, and that the download or '
            f'copy of the images is complete.')
    if broken:
        problems.append(_failed_files(broken, 'images', len(paths))
                        + f'. Download or generate them again, or remove them from '
                          f'{ann_file!r}.')
    if problems:
        raise _Problems(problems)

    by_id = {im['id']: im for im in images}
    mismatch = [0, []]
    for im, path, header in zip(images, paths, headers):
        real = loaded_size(header)
        if tuple(real) != (im['width'], im['height']):
            mismatch[0] += 1
            if len(mismatch[1]) < EXAMPLES:
                mismatch[1].append([path, list(real), [im['width'], im['height']],
                                    header[2] >= 5])
    boxes = {'size': [0, []], 'outside': [0, []], 'partial': [0, []]}
    orphans = 0
    for ann in anns:
        im = by_id.get(ann['image_id'])
        if im is None:
            orphans += 1
            continue
        if ann.get('ignore', False):
            continue
        kind = _box_kind(_bbox(ann), ann['area'], im['width'], im['height'])
        if kind:
            boxes[kind][0] += 1
            if len(boxes[kind][1]) < EXAMPLES:
                boxes[kind][1].append([ann['id'], im['file_name'], ann['bbox']])
    return dict(images=len(images), annotations=len(anns),
                categories=[c['name'] for c in data['categories']], boxes=boxes,
                size_mismatch=mismatch, orphans=orphans)


def _class_problem(classes, categories, ann_file):
    known = set(categories)
    missing = [c for c in classes if c not in known]
    if not missing:
        return None
    hints = []
    for name in missing:
        close = difflib.get_close_matches(str(name), categories, n=3, cutoff=0.6)
        if close:
            hints.append(f'{name!r}: {" or ".join(repr(c) for c in close)}')
    return (f'{len(missing)} of the {len(classes)} names in metainfo.classes match no '
            f'category of {ann_file!r}: {_names(missing)}'
            + (f' (close matches: {"; ".join(hints)})' if hints else '')
            + f'. metainfo.classes: {_names(classes)}; the categories of the file: '
            f'{_names(categories)}. mmdet would give those classes no object (and CocoMetric '
            f'fails at the first evaluation). Spell metainfo.classes as the file\'s '
            f'categories (a config without metainfo.classes gets the 80 COCO classes).')


def _clipping_resize(pipeline):
    """The type of the first resize of a pipeline that clips boxes to the image."""
    for step in pipeline or []:
        typ = step.get('type') if isinstance(step, dict) else None
        name = typ if isinstance(typ, str) else getattr(typ, '__name__', '')
        if name.endswith('Resize'):
            return name if step.get('clip_object_border', True) else None
    return None


def _examples(items):
    return 'e.g. ' + ', '.join(f'annotation id {a} in {f!r} bbox {b}' for a, f, b in items)


def _count(n, what, plural=None):
    return f'{n} {what}' if n == 1 else f'{n} {plural or what + "s"}'


def _coco_report(summary, ds_cfg, test_mode):
    """One line about boxes mmdet leaves out or clips, and image size mismatches."""
    parts = []
    boxes = summary['boxes']
    dropped = boxes['size'][0] + boxes['outside'][0]
    if dropped:
        kinds = [f'{count} with width or height < 1 px or area <= 0 ({_examples(ex)})'
                 if kind == 'size' else f'{count} entirely outside the image ({_examples(ex)})'
                 for kind, (count, ex) in boxes.items() if count and kind != 'partial']
        parts.append(f'{dropped} of the {_count(summary["annotations"], "box", "boxes")} '
                     f'{"is" if dropped == 1 else "are"} invalid and left out by mmdet\'s '
                     f'CocoDataset' + ('' if test_mode else ' (the objects train as background)')
                     + ': ' + '; '.join(kinds))
    count, ex = boxes['partial']
    if count and not test_mode:
        clipper = _clipping_resize(ds_cfg.get('pipeline'))
        parts.append(f'{_count(count, "box", "boxes")} extend{"s" if count == 1 else ""} more than '
                     f'{BORDER_TOLERANCE:g} px past the image ({_examples(ex)}): '
                     + (f'the pipeline\'s {clipper} clips them to the image '
                        f'(clip_object_border=True)' if clipper else
                        'kept unclipped: no Resize of the pipeline clips them '
                        '(clip_object_border=True)'))
    count, ex = summary['size_mismatch']
    if count:
        shown = ', '.join(f'{p!r} is {_size(real)}'
                          + (' after its EXIF orientation' if rotated else '')
                          + f', listed as {_size(listed)}' for p, real, listed, rotated in ex)
        parts.append(f'{_count(count, "image")} differ{"s" if count == 1 else ""} in size from '
                     f'the width x height the annotation file lists ({shown}): the boxes may not '
                     f'fit the loaded image')
    if summary['orphans']:
        parts.append(f'{_count(summary["orphans"], "annotation")} refer to image ids the file '
                     f'does not list (ignored)')
    return '; '.join(parts)


def _check_coco(ds, ds_cfg, cache, workers):
    ann_file = ds.ann_file
    if not ann_file or not osp.isfile(ann_file):  # preflight.check_data names it
        return None
    img_prefix = ds.data_prefix.get('img', ds.data_prefix.get('img_path', '')) or ''
    stamp = _stamp(ann_file)
    key = ['coco', CACHE_VERSION, stamp, _folder_stamp(img_prefix or '.')] if stamp else None
    summary = cache.get(key)
    cached = summary is not None
    if summary is None:
        summary = _coco_summary(ann_file, img_prefix, workers)
        cache.put(key, summary)
    problem = _class_problem(list(ds.metainfo.get('classes', ())), summary['categories'],
                             ann_file)
    if problem:
        raise _Problems([problem])
    report = _coco_report(summary, ds_cfg, ds.test_mode)
    if report:
        report = f'{ann_file!r}: {report}.'
    return summary['images'], cached, report


# ------------------------------------------------------------------------- segmentation

def _seg_summary(pairs, workers, img_dir, seg_dir):
    paths = list(dict.fromkeys(p for pair in pairs for p in pair if p))
    headers = dict(zip(paths, probe_images(paths, workers)))
    problems = []
    for idx, what, where in ((0, 'images', img_dir), (1, 'label maps', seg_dir)):
        files = list(dict.fromkeys(pair[idx] for pair in pairs if pair[idx]))
        missing = [p for p in files if headers[p] == 'file not found']
        broken = [(p, headers[p]) for p in files
                  if isinstance(headers[p], str) and headers[p] != 'file not found']
        if missing:
            shown = ', '.join(repr(p) for p in missing[:EXAMPLES])
            problems.append(f'{len(missing)} of the {len(files)} {what} are missing: {shown}'
                            f'{" ..." if len(missing) > EXAMPLES else ""}. Every image needs '
                            f'its label map of the same name in {seg_dir!r}.')
        if broken:
            problems.append(_failed_files(broken, what, len(files))
                            + f' (in {where!r}). Generate or download them again, or remove '
                              f'them with their image or label map.')
    if problems:
        raise _Problems(problems)
    wrong = []
    for img, seg in pairs:
        if seg and loaded_size(headers[img]) != tuple(headers[seg][:2]):
            wrong.append((img, seg))
    if wrong:
        shown = '; '.join(
            f'label map {seg!r} is {_size(headers[seg])} but its image {img!r} is '
            f'{_size(loaded_size(headers[img]))}'
            + (' (after its EXIF orientation, as mmcv loads it)' if headers[img][2] >= 5
               else '') for img, seg in wrong[:EXAMPLES])
        raise _Problems([
            f'{len(wrong)} of the {len(pairs)} label maps do not have the size of their image '
            f'(width x height): {shown}{" ..." if len(wrong) > EXAMPLES else ""}. mmseg would '
            f'train on misaligned crops and fail at validation. Each label map must be its '
            f'image\'s size: regenerate it, or pair it with the right image.'])
    return dict(images=len(pairs))


def _check_seg(ds, cache, workers):
    img_dir = ds.data_prefix.get('img_path', '') or ''
    seg_dir = ds.data_prefix.get('seg_map_path', None)
    folders = [_folder_stamp(d) for d in (img_dir or '.', seg_dir) if d is not None]
    key = ['seg', CACHE_VERSION, type(ds).__name__, getattr(ds, 'img_suffix', None),
           getattr(ds, 'seg_map_suffix', None), _stamp(ds.ann_file) if ds.ann_file else None,
           folders]
    summary = cache.get(key if all(folders) else None)
    if summary is not None:
        return summary['images'], True, ''
    try:
        data_list = ds.load_data_list()
    except (FileNotFoundError, ValueError) as e:
        raise _Problems([str(e)]) from None
    pairs = [(d['img_path'], d.get('seg_map_path')) for d in data_list]
    summary = _seg_summary(pairs, workers, img_dir, seg_dir)
    cache.put(key if all(folders) else None, summary)
    return summary['images'], False, ''


# ------------------------------------------------------------------------- the check

def _kind(ds):
    """'coco' or 'seg' by the dataset's class hierarchy (no library imported)."""
    for cls in type(ds).__mro__:
        module = cls.__module__ or ''
        if cls.__name__ == 'CocoDataset' and module.startswith('mmdet.'):
            return 'coco'
        if cls.__name__ == 'BaseSegDataset' and module.startswith('mmseg.'):
            return 'seg'
    return None


def _build_lazy(ds_cfg, scope):
    """The dataset object without its data list (``lazy_init``) and without a pipeline."""
    from mmengine.registry import DATASETS, init_default_scope
    cfg = copy.deepcopy(ds_cfg)
    cfg['pipeline'] = []
    cfg['lazy_init'] = True
    if scope:
        init_default_scope(scope)
    return DATASETS.build(cfg)


def _is_local(ds_cfg):
    backend = (ds_cfg.get('backend_args') or {}).get('backend', 'local')
    return backend == 'local' and not is_remote(ds_cfg.get('data_root') or '')


def _options(cfg, cache_dir, workers):
    opts = cfg.get('dataset_check', True)
    if opts is False or (isinstance(opts, dict) and not opts.get('enable', True)):
        return None
    opts = dict(opts) if isinstance(opts, dict) else {}
    if cache_dir is None:
        cache_dir = opts['cache_dir'] if 'cache_dir' in opts else default_cache_dir(cfg)
    return dict(cache=_Cache(cache_dir),
                workers=workers if workers is not None else opts.get('workers'))


def check_datasets(cfg, phase='train', cache_dir=None, workers=None, quiet=False):
    """Check the datasets a run of ``phase`` reads, before it starts.

    Args:
        cfg (mmengine.Config): The config (with ``work_dir`` set, for the cache).
        phase (str): ``'train'`` (the train dataset, and the val dataset when a val loop
            is configured) or ``'test'`` (the test dataset).
        cache_dir (str, optional): Where clean results are cached; default: the config's
            ``dataset_check.cache_dir``, else :func:`default_cache_dir`.
        workers (int, optional): Most processes reading image headers; default: the
            config's ``dataset_check.workers``, else the CPU count (at most 8).
        quiet (bool): Print nothing. Defaults to False: one line with counts and time
            on stdout, and a ``warning:`` line on stderr per dataset with boxes that
            mmdet leaves out or clips, or images of another size than listed.

    Returns:
        dict: Per dataloader (``'train_dataloader'``, ...; ``'... dataset N'`` for the
        N-th dataset of a wrapper): ``images`` (count), ``cached`` (whether the result
        came from the cache) and ``report`` (the warning text, '' when clean). Empty
        when the config turns the check off (``dataset_check = False``).

    Raises:
        PreflightError: An annotation file does not parse or lacks fields, an image or
            label map is missing or does not decode, a label map is not its image's
            size, or a class name is not a category of the annotation file; the message
            names the files and the fix.
    """
    opts = _options(cfg, cache_dir, workers)
    if opts is None:
        return {}
    start = time.perf_counter()
    results, problems = {}, []
    for key, loader in phase_dataloaders(cfg, phase):
        leaves = leaf_datasets(loader.get('dataset'))
        for i, ds_cfg in enumerate(leaves):
            label = key if len(leaves) == 1 else f'{key} dataset {i + 1}'
            if not _is_local(ds_cfg):
                continue
            try:
                ds = _build_lazy(ds_cfg, cfg.get('default_scope'))
            except Exception:  # a config error: the Runner reports it when it builds it
                continue
            kind = _kind(ds)
            try:
                if kind == 'coco':
                    outcome = _check_coco(ds, ds_cfg, opts['cache'], opts['workers'])
                elif kind == 'seg':
                    outcome = _check_seg(ds, opts['cache'], opts['workers'])
                else:
                    continue
            except _Problems as e:
                problems += [f'{label}: {msg}' for msg in e.args[0]]
                continue
            if outcome is None:
                continue
            images, cached, report = outcome
            results[label] = dict(images=images, cached=cached, report=report)
            if report and not quiet and _is_rank_zero():
                print(f'warning: dataset check: {label}: {report}', file=sys.stderr,
                      flush=True)
    if problems:
        raise PreflightError('dataset check failed:\n' + '\n'.join(problems))
    if results and not quiet and _is_rank_zero():
        counts = ', '.join(f'{label} {r["images"]} images' for label, r in results.items())
        cached = ' (cached)' if all(r['cached'] for r in results.values()) else ''
        print(f'dataset check: {counts}: ok in {time.perf_counter() - start:.2f} s{cached}',
              flush=True)
    return results


def _is_rank_zero():
    return os.environ.get('RANK', '0') == '0'
