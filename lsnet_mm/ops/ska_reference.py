"""Direct 3x3-tap loop of small-kernel aggregation: the ground truth for tests."""
import torch


def ska_reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation written as the formula, one channel and tap at a time.

    ``out[b, c, i, j] = sum_{u, v} x[b, c, i+u-1, j+v-1] * w[b, c % G, 3u+v, i, j]``,
    zero outside the image.

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features.
    """
    b, c, h, wd = x.shape
    groups = w.shape[1]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    out = torch.zeros_like(x)
    for ch in range(c):
        g = ch % groups
        for u in range(3):
            for v in range(3):
                out[:, ch] += xp[:, ch, u:u + h, v:v + wd] * w[:, g, 3 * u + v]
    return out
