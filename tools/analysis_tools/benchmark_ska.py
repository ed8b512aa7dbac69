"""Memory and time of the LS convolution's forward + backward: our SKA op vs unfold.

    python tools/analysis_tools/benchmark_ska.py           # default shapes, CPU
    python tools/analysis_tools/benchmark_ska.py --iters 5 --out work_dirs/ska.json
    python tools/analysis_tools/benchmark_ska.py --device cuda   # Triton, PyTorch path, unfold

Two implementations of small-kernel aggregation are compared:

* ``ours``: ``lsnet_mm.ops.ska`` (on CPU its PyTorch path: nine shifted
  multiply-adds, saving only ``x`` and ``w`` for backward);
* ``unfold``: the textbook version written here, ``F.unfold`` to a (B, 9C, HW)
  copy of the input, multiply by the kernels, sum over the taps; autograd keeps the
  9x copy for backward;
* with ``--device cuda`` also ``torch``: the op's PyTorch path (``backend='torch'``),
  while ``ours`` is then its Triton kernels.

For each shape, two things are measured on a training step (forward, then backward
of a random gradient): the op alone (``x`` and ``w`` require grad) and a whole
:class:`~lsnet_mm.models.layers.LSConv` (large-kernel perception + aggregation +
BN, frozen BN statistics as in the detection recipes) with the op swapped.
Reported: the peak of tensor memory allocated during the step above what existed
before it (torch.profiler memory events, PyTorch's CPU allocator), the memory held
when the forward ends (its output and what autograd saved for backward), and the
median time of ``--iters`` steps after
``--warmup`` (runs of the versions alternate). On CUDA: time by CUDA events around each
step, memory by ``torch.cuda.max_memory_allocated`` above what was allocated before.

The helpers :func:`time_ms` and :func:`peak_memory_mib` (CUDA events or wall clock;
CUDA or no memory figure) and :func:`ska_impl` are shared with
``tools/analysis_tools/gpu_check.py``.
"""
import argparse
import functools
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


def ska_backend(backend):
    """``lsnet_mm.ops.ska`` with a fixed backend ('triton', 'torch' or 'auto')."""
    from lsnet_mm.ops import ska
    return functools.partial(ska, backend=backend)


IMPLS = {'ours': ska_ours, 'unfold': ska_unfold}


def impls_for(device):
    """The implementations compared on a device (CUDA adds the op's PyTorch path)."""
    if torch.device(device).type == 'cuda':
        return {'ours': ska_ours, 'torch': ska_backend('torch'), 'unfold': ska_unfold}
    return dict(IMPLS)


@contextmanager
def ska_impl(fn):
    """Make the model code (LSConv, its deploy-mode form) use ``fn`` for the aggregation.

    Every ``lsnet_mm.models`` module that imported ``lsnet_mm.ops.ska`` by name has it
    replaced while the context lasts.
    """
    import lsnet_mm.models  # noqa: F401  (imports the layers)
    from lsnet_mm.ops import ska
    users = [m for name, m in list(sys.modules.items())
             if name.startswith('lsnet_mm.models') and getattr(m, 'ska', None) is ska]
    if not users:
        raise RuntimeError('no lsnet_mm.models module calls lsnet_mm.ops.ska')
    for m in users:
        m.ska = fn
    try:
        yield
    finally:
        for m in users:
            m.ska = ska


# ------------------------------------------------------------------ timing, memory
# GPU cycles of the sleep queued before a batch of short timed calls, so that the CPU
# has enqueued them all before the GPU reaches them (~10 ms at 2 GHz): the events then
# measure GPU time, not the launch overhead of the Python calls.
SLEEP_CYCLES = 20_000_000


def synchronize(device):
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn, device, iters=10, warmup=2, batched=False, repeats=5):
    """Times of ``fn`` in ms: CUDA events on a CUDA device, else the wall clock.

    Args:
        fn: The callable timed.
        device: Where it runs.
        iters (int): Timed calls (per repeat when ``batched``).
        warmup (int): Untimed calls first.
        batched (bool): CUDA: queue ``iters`` calls behind a GPU sleep and time them
            together, ``repeats`` times (one time per repeat: the mean of its calls).
            For calls shorter than their launch overhead.
        repeats (int): Repeats when ``batched``.

    Returns:
        list[float]: One time per timed call (or per repeat).
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    if device.type != 'cuda':
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return times
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.device(device):
        if batched:
            for _ in range(repeats):
                torch.cuda._sleep(SLEEP_CYCLES)
                start.record()
                for _ in range(iters):
                    fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / iters)
        else:
            for _ in range(iters):
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
    return times


def peak_memory_mib(fn, device):
    """(peak above what was allocated before, absolute peak) of one call of ``fn``, MiB.

    ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; (None, None)
    on other devices.
    """
    device = torch.device(device)
    if device.type != 'cuda':
        fn()
        return None, None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return (peak - base) / 2 ** 20, peak / 2 ** 20


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


_ON_FORWARD_DONE = []  # callbacks run at the mark (CUDA memory of the forward)


def _mark_forward_done():
    """Marks the end of the forward in the profiler trace."""
    with torch.profiler.record_function('ska_benchmark::forward_done'):
        pass
    for callback in _ON_FORWARD_DONE:
        callback()


def memory_of(step, fn, device='cpu'):
    """(peak MiB during forward + backward, MiB held when the forward ends)."""
    if torch.device(device).type == 'cuda':
        held = []
        base = torch.cuda.memory_allocated(device)
        _ON_FORWARD_DONE.append(lambda: held.append(torch.cuda.memory_allocated(device)))
        try:
            peak, _ = peak_memory_mib(lambda: step(fn), device)
        finally:
            _ON_FORWARD_DONE.clear()
        return peak, (held[0] - base) / 2 ** 20
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
    impls = impls_for(args.device)
    for label, b, c, h, w in SHAPES:
        for kind in ('op', 'lsconv'):
            step = make_case(kind, b, c, h, w, args.device)
            times = {k: [] for k in impls}
            for _ in range(args.warmup):
                for fn in impls.values():
                    step(fn)
            for _ in range(args.iters):  # the versions alternate call by call
                for name, fn in impls.items():
                    times[name] += time_ms(functools.partial(step, fn), args.device, iters=1,
                                           warmup=0)
            for name, fn in impls.items():
                peak, held = memory_of(step, fn, args.device)
                t = np.asarray(times[name])
                rows.append(dict(shape=label, input=[b, c, h, w], what=kind, impl=name,
                                 peak_mib=peak, after_forward_mib=held,
                                 time_ms_median=float(np.median(t)),
                                 time_ms_p10=float(np.percentile(t, 10)),
                                 time_ms_p90=float(np.percentile(t, 90))))
    return rows


def check_equal(device='cpu'):
    """The implementations agree (forward and gradients) on a small input."""
    kw = dict(dtype=torch.float64, device=device)
    x = torch.randn(2, 16, 9, 11, requires_grad=True, **kw)
    w = torch.randn(2, 2, 9, 9, 11, requires_grad=True, **kw)
    g = torch.randn(2, 16, 9, 11, **kw)
    res = []
    for fn in impls_for(device).values():
        out = fn(x, w)
        gx, gw = torch.autograd.grad(out, (x, w), g)
        res.append((out, gx, gw))
    for other in res[1:]:
        for a, b in zip(res[0], other):
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
    p.add_argument('--device', default='cpu',
                   help="'cpu', or 'cuda' / 'cuda:N' (Triton kernels vs PyTorch path vs unfold)")
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--threads', type=int)
    p.add_argument('--out', metavar='JSON')
    args = p.parse_args(argv)
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device}: no CUDA device')
    check_equal(args.device)
    rows = run(args)
    where = (torch.cuda.get_device_name(args.device) if torch.device(args.device).type == 'cuda'
             else f'{torch.get_num_threads()} threads')
    print(f'torch {torch.__version__}, {where}, '
          f'{args.warmup} warm-up + {args.iters} timed steps')
    print(format_table(rows))
    if args.out:
        command = ['python', 'tools/analysis_tools/benchmark_ska.py']
        command += sys.argv[1:] if argv is None else argv
        mmengine.dump(dict(command=' '.join(command), threads=torch.get_num_threads(),
                           device=args.device, torch=torch.__version__, rows=rows),
                      args.out, file_format='json', indent=1)  # creates the folder
    return rows


if __name__ == '__main__':
    main()
