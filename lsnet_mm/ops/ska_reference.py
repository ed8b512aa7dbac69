"""Direct 3x3-tap loop of small-kernel aggregation: the ground truth for tests."""
import torch


def ska_reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """out[b, c, i, j] = sum_{u, v} x[b, c, i+u-1, j+v-1] * w[b, c % G, 3u+v, i, j]."""
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
