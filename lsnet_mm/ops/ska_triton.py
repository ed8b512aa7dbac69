"""Fused Triton kernels of small-kernel aggregation (forward, gradient of x, of w).

The kernels are shaped for memory bandwidth (the op does ~1 multiply-add per byte):

* forward and input gradient: one program takes a block of pixels of one weight
  group ``(b, g)``, loads that group's nine kernel planes once and loops over the
  ``C / G`` channels ``c = r * G + g`` using them, so every weight element is read
  once and every input element once (the nine shifted reads of a row hit the cache);
* kernel gradient: one program computes all nine taps of a pixel block of one
  ``(b, g)``, looping over the group's channels, so the output gradient and the
  input are each read once.

The grid is one-dimensional (``B * G * pixel blocks`` on axis 0, whose CUDA limit is
2^31 - 1). Plane offsets are 64-bit: tensors of more than 2^31 elements work (a single
plane must hold fewer than 2^31 pixels). Accumulation is in float32 (float64 when an
input is float64); outputs are stored in the input's dtype and the kernel gradient in
the kernels' dtype (autocast gives bfloat16 ``x`` with float32 ``w``).

``triton.autotune`` picks ``BLOCK`` and ``num_warps`` per plane size and channels per
group. With ``TRITON_INTERPRET=1`` (read when this module is imported) one config is
used, so that Triton's interpreter runs the same kernels on CPU tensors quickly (CI).

Launches run under ``torch.cuda.device(x.device)``, so on the current stream of the
input's device. The launchers expect contiguous tensors (the custom op makes them so).
"""
import contextlib
import os
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get('TRITON_INTERPRET') == '1'

#: Channels of a group handled together (rows of a program's tile): at most 8 on a GPU;
#: 16 in the interpreter, whose cost is mostly per operation, not per element.
MAX_ROWS = 16 if INTERPRET else 8


#: (tile elements, warps) tried per R: 2-4 elements per thread. Compiled for sm_90 (no
#: GPU needed), larger tiles took 140-255 registers and spilled; these take 64-128 at
#: R = 8 (96-178 at R = 1).
TILES = ((256, 4), (512, 4), (1024, 8))


def _configs():
    """Tiles of BLOCK pixels x R channels (one config of 16 rows when interpreted)."""
    if INTERPRET:  # exactly one: Triton < 3.9 would time even a single pruned config
        return [triton.Config({'BLOCK': 64, 'R': MAX_ROWS}, num_warps=4)]
    return [triton.Config({'BLOCK': tile // r, 'R': r}, num_warps=warps)
            for r in (1, 2, 4, 8) for tile, warps in TILES]


def _rows(cpg):
    """The tile rows for C / G channels per group: the next power of 2, capped."""
    return min(triton.next_power_of_2(max(int(cpg), 1)), MAX_ROWS)


def _prune(configs, named_args, **kwargs):
    """Keep the configs whose rows fit C / G and whose block is not far beyond the plane."""
    rows = _rows(named_args['CPG'])
    fit = [c for c in configs if c.kwargs['R'] == rows] or configs
    small = max(64, triton.next_power_of_2(max(int(named_args['HW']), 1)))
    kept = [c for c in fit if c.kwargs['BLOCK'] <= small]
    return kept or [min(fit, key=lambda c: c.kwargs['BLOCK'])]


def _bench(kernel_call, quantiles):
    """Short autotuning runs: each config is timed for ~25 ms, not Triton's ~125 ms."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def _autotune(fn, key):
    return triton.autotune(configs=_configs(), key=key,
                           prune_configs_by={'early_config_prune': _prune},
                           do_bench=_bench)(fn)


@triton.jit
def _tap_mask(i, j, inside, H, W, DU: tl.constexpr, DV: tl.constexpr):
    """Pixels p of a block whose neighbour p + (DU, DV) lies inside the image."""
    m = inside
    if DU < 0:
        m = m & (i >= -DU)
    if DU > 0:
        m = m & (i < H - DU)
    if DV < 0:
        m = m & (j >= -DV)
    if DV > 0:
        m = m & (j < W - DV)
    return m


@triton.jit
def _load_w(base, hw, offs, i, j, inside, H, W, T: tl.constexpr, S: tl.constexpr,
            ACC: tl.constexpr):
    """Kernel plane T of a group at the pixels p (S = 0) or p - offset(T) (S = 1)."""
    if S:
        m = _tap_mask(i, j, inside, H, W, 1 - T // 3, 1 - T % 3)
        return tl.load(base + T * hw + (offs + ((1 - T // 3) * W + (1 - T % 3))), mask=m,
                       other=0.0).to(ACC)
    return tl.load(base + T * hw + offs, mask=inside, other=0.0).to(ACC)


@triton.jit
def _src(rows, offs, i, j, inside, rmask, H, W, T: tl.constexpr, S: tl.constexpr,
         ACC: tl.constexpr):
    """Tap T's source for a tile of channels, 0 outside the image.

    ``rows[c][p + offset(T)]`` (S = 0) or ``rows[c][p - offset(T)]`` (S = 1); ``rows``
    are the (R, 1) channel-plane starts.
    """
    # (the shift is written out in each branch: a plain assignment would make it a
    # tensor, and _tap_mask needs compile-time values)
    if S:
        m = _tap_mask(i, j, inside, H, W, 1 - T // 3, 1 - T % 3)
        ptrs = rows + (offs + ((1 - T // 3) * W + (1 - T % 3)))[None, :]
    else:
        m = _tap_mask(i, j, inside, H, W, T // 3 - 1, T % 3 - 1)
        ptrs = rows + (offs + ((T // 3 - 1) * W + (T % 3 - 1)))[None, :]
    return tl.load(ptrs, mask=rmask[:, None] & m[None, :], other=0.0).to(ACC)


# Triton specialises integer arguments (== 1, divisible by 16), compiling a variant
# for each new combination; only the plane size keeps that (aligned plane starts let
# the weight loads and the stores use vector instructions).
_GENERIC = ['C', 'G', 'H', 'W', 'CPG']


@triton.jit
def _pixel_block(HW, W, G, BLOCK: tl.constexpr):
    """The program's (image b, weight group g) and pixel block, from its 1-D index.

    Returns ``b, g, bg = b * G + g, hw`` (the plane size in 64 bits: offsets may pass
    2^31), the block's pixel offsets, their mask and their rows ``i`` and columns ``j``.
    """
    pid = tl.program_id(0).to(tl.int64)
    nblk = tl.cdiv(HW, BLOCK)
    bg = pid // nblk
    blk = (pid % nblk).to(tl.int32)
    hw = pid * 0 + HW
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    return bg // G, bg % G, bg, hw, offs, offs < HW, offs // W, offs % W


@triton.jit(do_not_specialize=_GENERIC)
def _ska_agg_kernel(src_ptr, w_ptr, out_ptr, C, G, H, W, HW, CPG, TRANSPOSE: tl.constexpr,
                    ACC: tl.constexpr, BLOCK: tl.constexpr, R: tl.constexpr):
    # Forward (TRANSPOSE=0): out[c, p] = sum_t x[c, p + offset(t)] * w[g, t, p].
    # Input gradient (TRANSPOSE=1): pixel p was read by tap t of pixel p - offset(t), so
    # grad_x[c, p] = sum_t grad_out[c, p - offset(t)] * w[g, t, p - offset(t)].
    # One program: pixel block `blk` of group (b, g) for all its channels c = r * G + g,
    # R channels at a time; the nine kernel planes are loaded once.
    b, g, bg, hw, offs, inside, i, j = _pixel_block(HW, W, G, BLOCK)
    w_base = w_ptr + bg * 9 * hw
    w0 = _load_w(w_base, hw, offs, i, j, inside, H, W, 0, TRANSPOSE, ACC)[None, :]
    w1 = _load_w(w_base, hw, offs, i, j, inside, H, W, 1, TRANSPOSE, ACC)[None, :]
    w2 = _load_w(w_base, hw, offs, i, j, inside, H, W, 2, TRANSPOSE, ACC)[None, :]
    w3 = _load_w(w_base, hw, offs, i, j, inside, H, W, 3, TRANSPOSE, ACC)[None, :]
    w4 = _load_w(w_base, hw, offs, i, j, inside, H, W, 4, TRANSPOSE, ACC)[None, :]
    w5 = _load_w(w_base, hw, offs, i, j, inside, H, W, 5, TRANSPOSE, ACC)[None, :]
    w6 = _load_w(w_base, hw, offs, i, j, inside, H, W, 6, TRANSPOSE, ACC)[None, :]
    w7 = _load_w(w_base, hw, offs, i, j, inside, H, W, 7, TRANSPOSE, ACC)[None, :]
    w8 = _load_w(w_base, hw, offs, i, j, inside, H, W, 8, TRANSPOSE, ACC)[None, :]
    r = tl.arange(0, R)
    for r0 in range(0, CPG, R):
        rmask = (r0 + r) < CPG
        plane = ((b * C + g) + (r0 + r).to(tl.int64) * G) * hw  # (R,) channel planes
        rows = src_ptr + plane[:, None]
        acc = _src(rows, offs, i, j, inside, rmask, H, W, 4, TRANSPOSE, ACC) * w4
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 0, TRANSPOSE, ACC) * w0
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 1, TRANSPOSE, ACC) * w1
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 2, TRANSPOSE, ACC) * w2
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 3, TRANSPOSE, ACC) * w3
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 5, TRANSPOSE, ACC) * w5
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 6, TRANSPOSE, ACC) * w6
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 7, TRANSPOSE, ACC) * w7
        acc += _src(rows, offs, i, j, inside, rmask, H, W, 8, TRANSPOSE, ACC) * w8
        tl.store(out_ptr + plane[:, None] + offs[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=rmask[:, None] & inside[None, :])


@triton.jit
def _store_tap(base, hw, offs, inside, T: tl.constexpr, acc):
    """Sum a tap's (R, BLOCK) products over the channels; store its kernel-gradient plane."""
    tl.store(base + T * hw + offs, tl.sum(acc, axis=0).to(base.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=_GENERIC)
def _ska_grad_w_kernel(go_ptr, x_ptr, gw_ptr, C, G, H, W, HW, CPG, ACC: tl.constexpr,
                       BLOCK: tl.constexpr, R: tl.constexpr):
    # grad_w[b, g, t, p] = sum over c = r * G + g of grad_out[b, c, p] * x[b, c, p + offset(t)]
    # One program: all nine taps of pixel block `blk` of group (b, g), R channels at a
    # time (products summed over the channels once, at the end).
    b, g, bg, hw, offs, inside, i, j = _pixel_block(HW, W, G, BLOCK)
    a0 = tl.zeros([R, BLOCK], dtype=ACC)
    a1 = tl.zeros([R, BLOCK], dtype=ACC)
    a2 = tl.zeros([R, BLOCK], dtype=ACC)
    a3 = tl.zeros([R, BLOCK], dtype=ACC)
    a4 = tl.zeros([R, BLOCK], dtype=ACC)
    a5 = tl.zeros([R, BLOCK], dtype=ACC)
    a6 = tl.zeros([R, BLOCK], dtype=ACC)
    a7 = tl.zeros([R, BLOCK], dtype=ACC)
    a8 = tl.zeros([R, BLOCK], dtype=ACC)
    r = tl.arange(0, R)
    for r0 in range(0, CPG, R):
        rmask = (r0 + r) < CPG
        plane = ((b * C + g) + (r0 + r).to(tl.int64) * G) * hw
        go = tl.load(go_ptr + plane[:, None] + offs[None, :],
                     mask=rmask[:, None] & inside[None, :], other=0.0).to(ACC)
        rows = x_ptr + plane[:, None]
        a0 += go * _src(rows, offs, i, j, inside, rmask, H, W, 0, 0, ACC)
        a1 += go * _src(rows, offs, i, j, inside, rmask, H, W, 1, 0, ACC)
        a2 += go * _src(rows, offs, i, j, inside, rmask, H, W, 2, 0, ACC)
        a3 += go * _src(rows, offs, i, j, inside, rmask, H, W, 3, 0, ACC)
        a4 += go * _src(rows, offs, i, j, inside, rmask, H, W, 4, 0, ACC)
        a5 += go * _src(rows, offs, i, j, inside, rmask, H, W, 5, 0, ACC)
        a6 += go * _src(rows, offs, i, j, inside, rmask, H, W, 6, 0, ACC)
        a7 += go * _src(rows, offs, i, j, inside, rmask, H, W, 7, 0, ACC)
        a8 += go * _src(rows, offs, i, j, inside, rmask, H, W, 8, 0, ACC)
    gw_base = gw_ptr + bg * 9 * hw
    _store_tap(gw_base, hw, offs, inside, 0, a0)
    _store_tap(gw_base, hw, offs, inside, 1, a1)
    _store_tap(gw_base, hw, offs, inside, 2, a2)
    _store_tap(gw_base, hw, offs, inside, 3, a3)
    _store_tap(gw_base, hw, offs, inside, 4, a4)
    _store_tap(gw_base, hw, offs, inside, 5, a5)
    _store_tap(gw_base, hw, offs, inside, 6, a6)
    _store_tap(gw_base, hw, offs, inside, 7, a7)
    _store_tap(gw_base, hw, offs, inside, 8, a8)


_agg = _autotune(_ska_agg_kernel, ['HW', 'CPG', 'TRANSPOSE'])
_grad_w = _autotune(_ska_grad_w_kernel, ['HW', 'CPG'])


def _acc(*tensors):
    """float32 accumulation, float64 when an input is float64 (gradcheck)."""
    return tl.float64 if any(t.dtype == torch.float64 for t in tensors) else tl.float32


def _device(x: torch.Tensor):
    """The input's CUDA device as the current one (launch device and stream)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _sizes(x: torch.Tensor, w: torch.Tensor):
    b, c, h, wd = x.shape
    g = w.shape[1]
    if h * wd >= 2 ** 31:
        raise ValueError(f'ska (Triton): a plane of {h}x{wd} pixels is too large (< 2^31)')
    return b, c, g, h, wd


def _grid(b, g, hw):
    return lambda meta: (b * g * triton.cdiv(hw, meta['BLOCK']),)


def forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation by the fused kernel.

    Args:
        x (torch.Tensor): (B, C, H, W) contiguous features.
        w (torch.Tensor): (B, G, 9, H, W) contiguous per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features in ``x``'s dtype.
    """
    b, c, g, h, wd = _sizes(x, w)
    out = torch.empty_like(x)
    if out.numel():
        with _device(x):
            _agg[_grid(b, g, h * wd)](x, w, out, c, g, h, wd, h * wd, c // g, TRANSPOSE=0,
                                      ACC=_acc(x, w))
    return out


def backward(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, need_x: bool = True,
             need_w: bool = True) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of the fused aggregation: one launch for each gradient wanted.

    Args:
        grad_out (torch.Tensor): Contiguous (B, C, H, W) output gradient.
        x (torch.Tensor): Contiguous (B, C, H, W) input of the forward.
        w (torch.Tensor): Contiguous (B, G, 9, H, W) kernels of the forward.
        need_x (bool): Compute the input gradient. Defaults to True.
        need_w (bool): Compute the kernel gradient. Defaults to True.

    Returns:
        tuple: ``(grad_x, grad_w)`` in the dtypes of ``x`` and ``w``, each None when not
        wanted.
    """
    b, c, g, h, wd = _sizes(x, w)
    grad_x = torch.empty_like(x) if need_x else None
    grad_w = torch.empty_like(w) if need_w else None
    if not x.numel():
        return grad_x, grad_w
    acc = _acc(grad_out, x, w)
    with _device(x):
        if need_x:
            _agg[_grid(b, g, h * wd)](grad_out, w, grad_x, c, g, h, wd, h * wd, c // g,
                                      TRANSPOSE=1, ACC=acc)
        if need_w:
            _grad_w[_grid(b, g, h * wd)](grad_out, x, grad_w, c, g, h, wd, h * wd, c // g,
                                         ACC=acc)
    return grad_x, grad_w
