"""The test-time resize of the LSNet paper's ADE20K experiment.

The image is rescaled keeping its aspect ratio to fit ``scale`` (2048x512: long side
at most 2048, short side at most 512, as mmseg's ``Resize(keep_ratio=True)``), then
each side is rounded *up* to a multiple of ``size_divisor`` (32) by a second resize
(not padding), like the ``AlignResize`` of the authors' mmseg 0.30 code base. The
network's strides then divide the input exactly up to stride 32.
"""
import math
from typing import Sequence, Tuple

import mmcv
from mmcv.transforms import Resize

from ...registry import TRANSFORMS


def align_resize_shape(shape: Sequence[int], scale: Sequence[int] = (2048, 512),
                       size_divisor: int = 32) -> Tuple[int, int]:
    """Compute the size :class:`AlignResize` gives an image.

    Args:
        shape (Sequence[int]): (height, width, ...) of the image.
        scale (Sequence[int]): (long, short) edge bounds, as mmseg gives them. Defaults to
            (2048, 512).
        size_divisor (int): Both output sides are multiples of it. Defaults to 32.

    Returns:
        tuple[int, int]: The output (height, width).
    """
    h, w = shape[:2]
    new_w, new_h = mmcv.rescale_size((w, h), tuple(scale))
    return (int(math.ceil(new_h / size_divisor)) * size_divisor,
            int(math.ceil(new_w / size_divisor)) * size_divisor)


@TRANSFORMS.register_module()
class AlignResize(Resize):
    """Keep-ratio resize to ``scale``, then both sides rounded up to a multiple of a divisor.

    Args:
        scale (int | tuple[int, int]): The (long, short) edge bounds of the keep-ratio
            resize, e.g. (2048, 512).
        size_divisor (int): Both output sides are multiples of it. Defaults to 32.
        interpolation (str): Image interpolation (label maps use nearest). Defaults to
            'bilinear'.
        backend (str): 'cv2' or 'pillow'. Defaults to 'cv2'.

    Modified keys: img, gt_seg_map (if present), img_shape.
    Added keys: scale, scale_factor (w, h of the final size over the input size),
    keep_ratio.
    """

    def __init__(self, scale, size_divisor=32, interpolation='bilinear', backend='cv2'):
        if scale is None:
            raise ValueError('AlignResize needs scale, e.g. (2048, 512)')
        if not isinstance(size_divisor, int) or size_divisor < 1:
            raise ValueError(f'size_divisor must be a positive int, got {size_divisor!r}')
        super().__init__(scale=scale, keep_ratio=True, backend=backend,
                         interpolation=interpolation)
        self.size_divisor = size_divisor

    def _aligned(self, img, interpolation):
        h, w = img.shape[:2]
        d = self.size_divisor
        size = (int(math.ceil(w / d)) * d, int(math.ceil(h / d)) * d)
        if size == (w, h):
            return img
        return mmcv.imresize(img, size, interpolation=interpolation, backend=self.backend)

    def _resize_img(self, results):
        if results.get('img', None) is None:
            return
        h, w = results['img'].shape[:2]
        img = mmcv.imrescale(results['img'], results['scale'], interpolation=self.interpolation,
                             backend=self.backend)
        img = self._aligned(img, self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (img.shape[1] / w, img.shape[0] / h)
        results['keep_ratio'] = True

    def _resize_seg(self, results):
        if results.get('gt_seg_map', None) is None:
            return
        seg = mmcv.imrescale(results['gt_seg_map'], results['scale'], interpolation='nearest',
                             backend=self.backend)
        seg = self._aligned(seg, 'nearest')
        if results.get('img_shape') is not None and seg.shape[:2] != tuple(results['img_shape']):
            seg = mmcv.imresize(seg, tuple(results['img_shape'])[::-1], interpolation='nearest',
                                backend=self.backend)
        results['gt_seg_map'] = seg

    def __repr__(self):
        return (f'{self.__class__.__name__}(scale={self.scale}, size_divisor={self.size_divisor}, '
                f'interpolation={self.interpolation}, backend={self.backend})')
