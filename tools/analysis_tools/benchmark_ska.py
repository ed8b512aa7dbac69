"""Memory and time of the LS convolution's forward + backward: our SKA op vs unfold.

    python tools/analysis_tools/benchmark_ska.py           # default shapes, CPU
    python tools/analysis_tools/benchmark_ska.py --iters 5 --out work_dirs/ska.json

Two implementations of small-kernel aggregation are compared:

* ``ours``: ``lsnet_mm.ops.ska`` (on CPU its PyTorch path: nine shifted
  multiply-adds, saving only ``x`` and ``w`` for backward);
* ``unfold``: the textbook version written here, ``F.unfold`` to a (B, 9C, HW)
  copy of the input, multiply by the kernels, sum over the taps; autograd keeps the
  9x copy for backward.

For each shape, two things are measured on a training step (forward, then backward
of a random gradient): the op alone (``x`` and ``w`` require grad) and a whole
:class:`~lsnet_mm.models.layers.LSConv` (large-kernel perception + aggregation +
BN, frozen BN statistics as in the detection recipes) with the op swapped.
Reported: the peak of tensor memory allocated during the step above what existed
before it (torch.profiler memory events, PyTorch's CPU allocator), the memory held
when the forward ends (its output and what autograd saved for backward), and the
median time of ``--iters`` steps after
``--warmup`` (runs of the two versions alternate).
"""
import argparse
import sys
import time
from contextlib import contextmanager

import mmengine
import numpy as np
import torch
import torch.nn.functional as F

# (label, batch, channels, height, width): LS convolutions at an 800x1333 input with
# the detection recipe's 2 images: LSNet-T/S stage 2 (stride 16), stage 3 (stride 32),
# LSNet-B stage 1 (stride 8, its largest map).
SHAPES = [
    ('T stage 2 @800x1333', 2, 128, 50, 84),
    ('T stage 3 @800x1333', 2, 256, 25, 42),
    ('B stage 1 @800x1333', 2, 128, 100, 167),
]


def ska_unfold(x, w):
    """Unfold-based SKA: out[b, c] = sum_t unfold(x)[b, c, t] * w[b, c % G, t]."""
    b, c, h, wd = x.shape
    g = w.shape[1]
    cols = F.unfold(x, 3, padding=1).view(b, c // g, g, 9, h, wd)  # channel r*G + g, tap t
    return (cols * w.unsqueeze(1)).sum(3).view(b, c, h, wd)


def ska_ours(x, w):
    from lsnet_mm.ops import ska
    return ska(x, w)


IMPLS = {'ours': ska_ours, 'unfold': ska_unfold}


@contextmanager
def ska_impl(fn):
    """Make LSConv use ``fn`` for the aggregation."""
    from lsnet_mm.models.layers import ls_conv
    old = ls_conv.ska
    ls_conv.ska = fn
    try:
        yield
    finally:
        ls_conv.ska = old


def make_case(kind, b, c, h, w, device):
    """(step function, inputs): one forward + backward of the op or of an LSConv."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g).to(device).requires_grad_()
    if kind == 'op':
        wt = torch.randn(b, c // 8, 9, h, w, generator=g).to(device).requires_grad_()
        grad = torch.randn(b, c, h, w, generator=g).to(device)

        def step(fn):
            out = fn(x, wt)
            _mark_forward_done()
            out.backward(grad)
            x.grad = wt.grad = None
        return step
    from lsnet_mm.models.layers import LSConv
    m = LSConv(c).to(device).train()
    m.bn.eval()  # frozen statistics, as the detection/segmentation recipes train
    grad = torch.randn(b, c, h, w, generator=g).to(device)

    def step(fn):
        with ska_impl(fn):
            out = m(x)
        _mark_forward_done()
        out.backward(grad)
        x.grad = None
        m.zero_grad(set_to_none=True)
    return step


def _mark_forward_done():
    """Marks the end of the forward in the profiler trace."""
    with torch.profiler.record_function('ska_benchmark::forward_done'):
        pass


def memory_of(step, fn):
    """(peak MiB during forward + backward, MiB held when the forward ends)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(fn)
    events = list(prof.profiler.kineto_results.events())
    mark = min(e.start_ns() for e in events if e.name() == 'ska_benchmark::forward_done')
    cur = peak = 0
    at_mark = None
    for e in sorted((e for e in events if e.name() == '[memory]'), key=lambda e: e.start_ns()):
        if at_mark is None and e.start_ns() >= mark:
            at_mark = cur
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2 ** 20, (cur if at_mark is None else at_mark) / 2 ** 20


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    import lsnet_mm  # noqa: F401
    rows = []
    for label, b, c, h, w in SHAPES:
        for kind in ('op', 'lsconv'):
            step = make_case(kind, b, c, h, w, args.device)
            times = {k: [] for k in IMPLS}
            for _ in range(args.warmup):
                for fn in IMPLS.values():
                    step(fn)
            for _ in range(args.iters):
                for name, fn in IMPLS.items():
                    t0 = time.perf_counter()
                    step(fn)
                    times[name].append(time.perf_counter() - t0)
            for name, fn in IMPLS.items():
                peak, held = memory_of(step, fn)
                t = np.asarray(times[name]) * 1e3
                rows.append(dict(shape=label, input=[b, c, h, w], what=kind, impl=name,
                                 peak_mib=peak, after_forward_mib=held,
                                 time_ms_median=float(np.median(t)),
                                 time_ms_p10=float(np.percentile(t, 10)),
                                 time_ms_p90=float(np.percentile(t, 90))))
    return rows


def check_equal():
    """The two implementations agree (forward and gradients) on a small input."""
    x = torch.randn(2, 16, 9, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 9, 9, 11, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 16, 9, 11, dtype=torch.float64)
    res = []
    for fn in IMPLS.values():
        out = fn(x, w)
        gx, gw = torch.autograd.grad(out, (x, w), g)
        res.append((out, gx, gw))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b)


def format_table(rows):
    header = ['layer input (B, C, H, W)', 'measured', 'impl', 'peak MiB (fwd+bwd)',
              'held after fwd MiB', 'time ms median (p10-p90)']
    table = [header, ['---'] * len(header)]
    for r in rows:
        table.append([f"{r['shape']} {tuple(r['input'])}",
                      'SKA op' if r['what'] == 'op' else 'LSConv', r['impl'],
                      f"{r['peak_mib']:.1f}", f"{r['after_forward_mib']:.1f}",
                      f"{r['time_ms_median']:.1f} "
                      f"({r['time_ms_p10']:.1f}-{r['time_ms_p90']:.1f})"])
    return '\n'.join('| ' + ' | '.join(cells) + ' |' for cells in table)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu', choices=['cpu'],
                   help='CPU only (GPU memory: tools/analysis_tools/benchmark.py --device cuda)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--threads', type=int)
    p.add_argument('--out', metavar='JSON')
    args = p.parse_args(argv)
    check_equal()
    rows = run(args)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{args.warmup} warm-up + {args.iters} timed steps')
    print(format_table(rows))
    if args.out:
        command = ['python', 'tools/analysis_tools/benchmark_ska.py']
        command += sys.argv[1:] if argv is None else argv
        mmengine.dump(dict(command=' '.join(command), threads=torch.get_num_threads(),
                           torch=torch.__version__, rows=rows),
                      args.out, file_format='json', indent=1)  # creates the folder
    return rows


if __name__ == '__main__':
    main()
