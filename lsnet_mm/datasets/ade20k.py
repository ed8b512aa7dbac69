"""ADE20K with explicit errors for the mistakes that otherwise fail late or silently.

mmseg's ``ADE20KDataset`` lists an empty or missing folder without complaint until
the sampler fails, and a label map holding a value outside the classes either
crashes the loss with "Target N is out of bounds" (CPU) or a device-side assert
(CUDA), or is silently dropped by ``IoUMetric`` (its histogram ignores values past
the last class). ``CheckedADE20KDataset`` takes the same arguments and raises:

* :class:`DatasetError` naming the missing image/annotation folder (or the missing
  annotation files) and how to get ADE20K;
* :class:`SegLabelError` naming the label map file and the offending values as
  stored in the file, the first time that file is loaded (train, val or test);
* :class:`SegLabelError` naming the image and the label map when the label map has
  another size than its image (mmseg trains on misaligned crops, or fails at
  validation with an IndexError that names no file);
* :class:`ImageDecodeError` naming the image or label map that cannot be read,
  whatever transform of the pipeline loads it (mmcv's ``LoadImageFromFile`` and
  mmseg's ``LoadAnnotations`` fail on an empty or non-image file with OpenCV or PIL
  errors that name no file); other errors of the pipeline get a note naming the
  sample's files.

``tools/train.py`` and ``tools/test.py`` check every file before the run starts
(:mod:`lsnet_mm.datasets.verify`, whose file probes and label-value rule this class
shares); these errors cover files that change afterwards and runs started by mmseg's
own tools.
"""
import os
import os.path as osp

from mmseg.datasets import ADE20KDataset

from ..registry import DATASETS
from ..utils.errors import DatasetError, ImageDecodeError, SegLabelError
from .verify import (
    DATA_HELP,
    ImageHeader,
    LabelMap,
    invalid_label_values,
    probe_image,
    probe_label_map,
)


@DATASETS.register_module()
class CheckedADE20KDataset(ADE20KDataset):
    """mmseg's ``ADE20KDataset`` with early errors for a missing data set and bad labels.

    Takes the same arguments and behaves the same on a correct data set; see the module
    docstring for the errors.
    """

    def _where(self):
        root = self.data_root or '.'
        return DATA_HELP['ADE20KDataset'].format(root=root.rstrip('/'))

    def load_data_list(self) -> list:
        """List the samples as mmseg does, after checking that the folders exist.

        Returns:
            list[dict]: The data information of every sample.

        Raises:
            DatasetError: An image or annotation folder is missing, it holds no
                images, or images lack their label maps.
        """
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path', None)
        if not self.ann_file:
            for what, d in (('image folder', img_dir), ('annotation folder', ann_dir)):
                if d is not None and not osp.isdir(d):
                    raise DatasetError(
                        f'ADE20K {what} not found: {d!r} (cwd {os.getcwd()!r}). '
                        + self._where())
        data_list = super().load_data_list()
        if not data_list:
            raise DatasetError(
                f'no {self.img_suffix} images found in {img_dir!r}. ' + self._where())
        if ann_dir is not None:
            missing = [d['seg_map_path'] for d in data_list if not osp.isfile(d['seg_map_path'])]
            if missing:
                raise DatasetError(
                    f'{len(missing)} of {len(data_list)} label maps are missing, e.g. '
                    f'{missing[0]!r} (for {osp.basename(missing[0])[:-4] + self.img_suffix}). '
                    f'Every image in {img_dir!r} needs a {self.seg_map_suffix} label map '
                    f'of the same name in {ann_dir!r}. ' + self._where())
        return data_list

    def prepare_data(self, idx: int):
        """Load and transform a sample, checking its label values.

        Args:
            idx (int): Index of the sample.

        Returns:
            Any: The output of the pipeline, as mmseg's dataset gives it.

        Raises:
            SegLabelError: The label map holds values outside the classes, or has
                another size than its image.
            ImageDecodeError: The image or the label map cannot be read.
        """
        self._check_size(idx)
        try:
            data = super().prepare_data(idx)
        except (SegLabelError, ImageDecodeError):
            raise
        except Exception as e:
            self._name_files(idx, e)
            raise
        samples = data.get('data_samples') if isinstance(data, dict) else None
        gt = getattr(samples, 'gt_sem_seg', None)
        if gt is not None:
            labels = gt.data
            num_classes = len(self.metainfo['classes'])
            bad = (labels >= num_classes) & (labels != self.ignore_index)
            if bool(bad.any()) or bool((labels < 0).any()):
                self._raise_label_error(samples.metainfo.get('seg_map_path'), num_classes)
        return data

    def _name_files(self, idx, error):
        """Name the file of sample ``idx`` that failed to load.

        Raises an ImageDecodeError naming the image or label map that cannot be read;
        when both read, adds a note naming them to ``error`` (the caller re-raises it).
        """
        info = self.get_data_info(idx)
        files = (('image', info.get('img_path'), probe_image),
                 ('label map', info.get('seg_map_path'), probe_label_map))
        for what, path, probe in files:
            why = probe(path) if path else None
            if isinstance(why, str):
                raise ImageDecodeError(
                    f'could not load the {what} {path!r} (sample {idx} of '
                    f'{type(self).__name__}): {why}; the pipeline failed with '
                    f'{type(error).__name__}: {str(error).strip() or "no details"}. Generate or '
                    f'download the file again, or remove the image and its label map.'
                ) from error
        where = ', '.join(f'{what} {path!r}' for what, path, _ in files if path)
        note = f'while loading sample {idx} of {type(self).__name__}: {where}'
        if hasattr(error, 'add_note'):  # Python >= 3.11
            error.add_note(note)
        else:  # pragma: no cover - older Python: the note goes into a new error
            raise RuntimeError(f'{note}: {type(error).__name__}: {error}') from error

    def _check_size(self, idx):
        """Raise SegLabelError if sample ``idx``'s label map is not its image's size.

        The file headers are compared (a small fraction of the time the pipeline takes
        to decode them), once per sample; mmseg's transforms would rescale or crop the
        two to the same shape and train on misaligned labels.
        """
        checked = self.__dict__.setdefault('_sizes_checked', set())
        if idx in checked:
            return
        info = self.get_data_info(idx)
        img, seg = info.get('img_path'), info.get('seg_map_path')
        if seg is None:
            return
        img_header, seg_header = probe_image(img), probe_image(seg)
        if not (isinstance(img_header, ImageHeader) and isinstance(seg_header, ImageHeader)):
            return  # unreadable: the pipeline's loader names the file
        img_size, seg_size = img_header.loaded_size, (seg_header.width, seg_header.height)
        if img_size != seg_size:
            raise SegLabelError(
                f'label map {seg!r} is {seg_size[0]}x{seg_size[1]} but its image {img!r} is '
                f'{img_size[0]}x{img_size[1]} (width x height). Each label map must have '
                f'its image\'s size: regenerate it, or pair it with the right image.')
        checked.add(idx)

    def _raise_label_error(self, path, num_classes):
        """Name the values *as stored in the file* that map outside the classes."""
        label = probe_label_map(path)
        values = list(label.values) if isinstance(label, LabelMap) else []
        bad = invalid_label_values(values, num_classes, self.ignore_index,
                                   self.reduce_zero_label, self.label_map)
        n_ade = len(ADE20KDataset.METAINFO['classes'])
        raise SegLabelError(
            f'label map {path!r} holds value(s) {bad or values} outside the {num_classes} '
            f'classes of this dataset (values in the file: {values}). ADE20K label maps store '
            f'0 for "other" (ignored) and the class ids 1..{n_ade}'
            + (f'; this config keeps {num_classes} of them (metainfo.classes), the others are '
               f'ignored' if self.label_map else '')
            + f', and {self.ignore_index} for ignore. Fix or regenerate this file (a colour '
            f'PNG or a map of another dataset gives such values), or use the dataset type and '
            f'classes that match it.')
