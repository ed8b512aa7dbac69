"""An image loader whose errors name the file that failed and what to do about it."""
from typing import Optional

from mmcv.transforms import LoadImageFromFile

from ...registry import TRANSFORMS
from ...utils.errors import ImageDecodeError
from ..verify import probe_image


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` whose errors name the file that failed.

    Takes the same arguments; a missing, empty, truncated or non-image file raises an
    :class:`ImageDecodeError` naming the file. mmcv's own loader fails with an opaque
    OpenCV assertion on an empty file and with a bare ``assert`` (skipped under
    ``python -O``) on undecodable bytes.
    """

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image of ``results['img_path']`` as mmcv's loader does.

        Args:
            results (dict): The sample's results dict, with ``img_path``.

        Returns:
            dict | None: ``results`` with ``img``, ``img_shape`` and ``ori_shape``, or None
            where mmcv's loader returns None (``ignore_empty``).

        Raises:
            ImageDecodeError: The file is missing or cannot be decoded.
        """
        filename = results.get('img_path')
        try:
            out = super().transform(results)
        except FileNotFoundError as e:
            raise ImageDecodeError(
                f'image file not found: {filename!r} (listed by the annotation file). Check '
                f'data_root/data_prefix in the config, or that the data set is complete.') from e
        except Exception as e:  # decoder errors come as cv2.error, AssertionError, OSError...
            header = probe_image(filename)
            why = header if isinstance(header, str) else 'its header reads but its pixels do not'
            raise ImageDecodeError(
                f'could not decode image {filename!r}: {why} ({type(e).__name__}: '
                f'{str(e).strip() or "no details"}). The file is empty, truncated or not an '
                f'image; re-download or regenerate it, or remove it from the annotation '
                f'file.') from e
        if out is not None and out.get('img') is None:
            raise ImageDecodeError(f'could not decode image {filename!r}: the decoder returned '
                                   f'nothing (empty, truncated or not an image).')
        return out
