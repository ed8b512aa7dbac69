"""One command that proves and measures on a GPU what CI cannot: the LS aggregation's
Triton kernels, the LSNet backbones on them, training and deploy-mode speed.

    python tools/analysis_tools/gpu_check.py --out-dir work_dirs/gpu_check   # CUDA, ~6 min
    python tools/analysis_tools/gpu_check.py --smoke --out-dir /tmp/gpu_smoke  # CPU, < 1 min

Writes ``gpu_check.json`` (every figure, per-section wall time, failures with their
traceback text) and ``gpu_check.md`` (the report) to ``--out-dir``. Needs torch, triton,
mmengine and this repository only (no mmcv, mmdet or mmseg). Sections, in order:

``env``            versions, the device, the device-to-device copy bandwidth;
``op_correctness`` ``backend='triton'`` (no fallback allowed) against the float64 loop,
                   forward and both gradients: shapes from 1x1 to (2, 256, 200, 336), G
                   1-64, float32/float16/bfloat16 and reduced-precision x with float32 w,
                   channels-last and sliced x, expanded and channels-last gradients, one
                   gradient only, repeated backward bitwise identical, > 2^31 elements in
                   bfloat16, gradcheck in float64;
``op_timing``      forward and forward+backward of Triton, the PyTorch path and unfold at
                   the LSNet-T stage shapes of 2x3x800x1344 and 8x3x800x1344 batches: ms
                   (CUDA events, medians, the queue kept full), GB/s against the minimum
                   bytes, % of the copy bandwidth, peak memory;
``backbone_parity`` LSNet-T/S/B on the Triton vs the PyTorch path: outputs and parameter
                   gradients in float32 and under bfloat16 / float16 autocast;
``train_step``     forward, a dense loss, backward, AdamW at 2 and 8 images of 800x1344:
                   step time and peak memory, Triton / PyTorch path / unfold, float32 and
                   bfloat16 autocast;
``deploy``         deploy-mode (BN-fused) backbones: images/s at 224x224, batch 256 (the
                   authors' protocol: float16 autocast) beside the authors' RTX 3090
                   figures, and batch-1 latency at 800x1344;
``train_step_compiled`` / ``deploy_compiled``  the same under ``torch.compile``.

Each section has a time budget and the whole run a deadline (``--max-total-s``): items
that would not fit are recorded as skipped, never silently dropped. Should an item
overrun (a slow compilation), the reports are written at ``--hard-limit-s`` with the
running section marked as stopped, and the process exits with status 1. A section that
raises is recorded (with the traceback) and the run goes on; the exit status is 1 when
any check failed or any section raised. The goals of the issue (kernels >= 60% of the
copy bandwidth at the stage-1 shape of the batch of 8; the Triton training step faster
than the PyTorch path's and below unfold's peak memory) are measured and reported, and
do not change the exit status.

``--smoke`` runs every section on tiny shapes on the CPU with Triton's interpreter
(``TRITON_INTERPRET=1``, set here before triton is imported), one iteration each, and
``torch.compile`` with the ``aot_eager`` backend: CI's proof that the script works.
"""
import argparse
import contextlib
import json
import os
import platform
import sys
import threading
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark_ska  # noqa: E402  (shared: unfold formulation, timing, memory, ska_impl)

AUTHORS_RTX3090 = {'t': 14708, 's': 9023, 'b': 3996}  # images/s, 224x224, batch 256
# A small LSNet for --smoke with every kind of block of T/S/B: RepVGG + SE, an LS
# convolution (stage 2), attention (stage 4).
TINY_ARCH = dict(embed_dims=(16, 16, 32, 32), depths=(0, 2, 0, 2))
DTYPES = {'fp32': (torch.float32, torch.float32), 'fp16': (torch.float16, torch.float16),
          'bf16': (torch.bfloat16, torch.bfloat16),
          'bf16x_fp32w': (torch.bfloat16, torch.float32),
          'fp16x_fp32w': (torch.float16, torch.float32), 'fp64': (torch.float64, torch.float64)}
# largest error allowed, relative to the largest magnitude of the reference tensor
# (the inputs are the same rounded values; what remains is accumulation and the
# rounding of the result)
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2,
             torch.float64: 1e-12}
AUTOCAST = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
BUDGETS_S = {'env': 20, 'op_correctness': 90, 'op_timing': 40, 'backbone_parity': 30,
             'train_step': 60, 'deploy': 25, 'train_step_compiled': 80, 'deploy_compiled': 60}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out-dir', default='work_dirs/gpu_check')
    p.add_argument('--smoke', action='store_true',
                   help='tiny shapes on the CPU under TRITON_INTERPRET=1 (CI)')
    p.add_argument('--device', default=None, help="default: 'cuda' ('cpu' with --smoke)")
    p.add_argument('--sections', nargs='+', choices=list(BUDGETS_S), default=list(BUDGETS_S))
    p.add_argument('--max-total-s', type=float, default=330.0,
                   help='deadline of the whole run; later items are skipped (default 330)')
    p.add_argument('--hard-limit-s', type=float, default=350.0,
                   help='write what was measured and exit 1 if still running (default 350)')
    return p.parse_args(argv)


# ---------------------------------------------------------------------- sections
class Section:
    """What one section measured: data, checks, skipped items, its time budget."""

    def __init__(self, name, budget_s, deadline):
        self.name = name
        self.t0 = time.perf_counter()
        self.deadline = min(self.t0 + budget_s, deadline)
        self.budget_s = budget_s
        self.data = {}
        self.checks = []
        self.skipped = []

    def left(self):
        return self.deadline - time.perf_counter()

    def can_start(self, what, estimate_s=0.0):
        """Whether an item estimated to take ``estimate_s`` fits; records it if not."""
        if self.left() >= estimate_s:
            return True
        self.skipped.append(f'{what} (time budget: {max(self.left(), 0):.0f} s left, '
                            f'~{estimate_s:.0f} s needed)')
        return False

    def check(self, name, passed, **detail):
        self.checks.append(dict(name=name, passed=bool(passed), **detail))
        return passed


def run_sections(sections, deadline, results=None):
    """Run ``[(name, budget_s, fn(section))]`` in order; a raising section is recorded.

    ``results`` (filled as the sections end) is returned; ``results['_current']`` names
    the running section meanwhile (for the hard time limit's report).

    Returns:
        dict: name -> {status, elapsed_s, budget_s, data, checks, skipped, error}.
    """
    results = {} if results is None else results
    for name, budget_s, fn in sections:
        sec = Section(name, budget_s, deadline)
        results['_current'] = sec
        status, error = 'ok', None
        if time.perf_counter() >= deadline:
            status = 'skipped'
            sec.skipped.append('whole section (run deadline reached)')
        else:
            try:
                fn(sec)
            except Exception:
                status, error = 'error', traceback.format_exc()
        if status == 'ok' and any(not c['passed'] for c in sec.checks):
            status = 'failed'
        results[name] = _section_record(sec, status, error)
        print(f'gpu_check: {name}: {status} in {results[name]["elapsed_s"]:.1f} s'
              + (f' ({len(sec.skipped)} skipped)' if sec.skipped else ''), flush=True)
    results.pop('_current', None)
    return results


def _section_record(sec, status, error):
    return dict(status=status, elapsed_s=round(time.perf_counter() - sec.t0, 3),
                budget_s=sec.budget_s, data=sec.data, checks=sec.checks, skipped=sec.skipped,
                error=error)


class Check:
    """The state every section shares: device, mode, sizes, measured copy bandwidth."""

    def __init__(self, args):
        self.smoke = args.smoke
        self.device = torch.device(args.device or ('cpu' if args.smoke else 'cuda'))
        self.cuda = self.device.type == 'cuda'
        self.copy_gbps = None
        self.iters = 1 if self.smoke else 10
        self.warmup = 1 if self.smoke else 3
        # --smoke: TorchDynamo capture only (AOTAutograd of the op: tests/test_ops)
        self.compile_backend = 'eager' if self.smoke else 'inductor'

    def randn(self, *shape, dtype=torch.float32, seed=0):
        """Normal samples made on the device (the > 2^31 case: no host copy)."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        if self.cuda:
            return torch.randn(*shape, generator=g, device=self.device, dtype=dtype)
        return torch.randn(*shape, generator=g).to(dtype)

    def time(self, fn, batched=False, iters=None):
        times = benchmark_ska.time_ms(fn, self.device, iters=iters or self.iters,
                                      warmup=self.warmup, batched=batched,
                                      repeats=1 if self.smoke else 5)
        return float(sorted(times)[len(times) // 2])

    def memory(self, fn):
        return benchmark_ska.peak_memory_mib(fn, self.device)

    def autocast(self, precision):
        dtype = AUTOCAST[precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)


def _gb(nbytes):
    return nbytes / 1e9


def _triton_fn():
    return benchmark_ska.ska_backend('triton')


# ------------------------------------------------------------------------- env
def section_env(chk, sec):
    import mmengine
    import triton

    import lsnet_mm
    from lsnet_mm.ops import ska_dispatch
    d = sec.data
    d['versions'] = dict(python=platform.python_version(), torch=torch.__version__,
                         cuda=torch.version.cuda, triton=triton.__version__,
                         mmengine=mmengine.__version__, lsnet_mm=lsnet_mm.__version__)
    d['platform'] = platform.platform()
    d['device'] = str(chk.device)
    if chk.cuda:
        props = torch.cuda.get_device_properties(chk.device)
        d['device_name'] = props.name
        d['capability'] = f'{props.major}.{props.minor}'
        d['memory_gib'] = round(props.total_memory / 2 ** 30, 1)
        d['multiprocessors'] = props.multi_processor_count
    else:
        d['device_name'] = f'CPU ({torch.get_num_threads()} threads)'
    s, import_error = ska_dispatch.settings(), ska_dispatch.triton_import_error()
    d['ska_dispatch'] = dict(triton_import_error=import_error, interpret=s.interpret,
                             torch_only=s.torch_only)
    d['openmmlab_imported'] = sorted(m for m in ('mmcv', 'mmdet', 'mmseg')
                                     if sys.modules.get(m) is not None)
    sec.check('triton imports', import_error is None, detail=import_error)
    # device-to-device copy bandwidth: read + write of a tensor larger than the caches
    numel = 2 ** 18 if chk.smoke else 2 ** 28  # 1 MiB / 1 GiB of float32
    x = torch.empty(numel, device=chk.device).uniform_()
    y = torch.empty_like(x)
    ms = chk.time(lambda: y.copy_(x), batched=True, iters=chk.iters)
    nbytes = 2 * numel * x.element_size()
    chk.copy_gbps = _gb(nbytes) / (ms * 1e-3)
    d['copy'] = dict(bytes=nbytes, ms=ms, gbps=chk.copy_gbps)
    sec.check('copy bandwidth measured', chk.copy_gbps > 0)


# --------------------------------------------------------------- op correctness
def _rel_err(got, want):
    scale = want.abs().max().item() if want.numel() else 0.0
    return (got.double() - want).abs().max().item() / max(scale, 1e-30) if want.numel() else 0.0


def _make_case(chk, shape, xd, wd, variant, seed):
    b, c, h, w, g = shape
    x = chk.randn(b, c, h, w, dtype=xd, seed=seed)
    if variant == 'channels_last_x':
        x = x.to(memory_format=torch.channels_last)
    elif variant == 'sliced_x':
        x = chk.randn(b, 2 * c, h + 2, w + 2, dtype=xd, seed=seed)[:, ::2, 1:-1, 1:-1]
    k = chk.randn(b, g, 9, h, w, dtype=wd, seed=seed + 1)
    if variant == 'expanded_grad':
        go = torch.ones((), device=chk.device, dtype=xd).expand(b, c, h, w)
    else:
        go = chk.randn(b, c, h, w, dtype=xd, seed=seed + 2)
        if variant == 'channels_last_grad':
            go = go.to(memory_format=torch.channels_last)
    return x, k, go


def _op_case(chk, shape, dtype_name, variant='contiguous', seed=0):
    """Errors of backend='triton' against the float64 loop: (errors, passed, tol)."""
    from lsnet_mm.ops import ska, ska_reference
    xd, wd = DTYPES[dtype_name]
    x, k, go = _make_case(chk, shape, xd, wd, variant, seed)
    need_x, need_w = variant != 'grad_w_only', variant != 'grad_x_only'
    xr = x.detach().requires_grad_(need_x)
    kr = k.detach().requires_grad_(need_w)
    out = ska(xr, kr, backend='triton')
    wanted = [t for t in (xr, kr) if t.requires_grad]
    grads = torch.autograd.grad(out, wanted, go)
    x64 = x.detach().double().requires_grad_()
    k64 = k.detach().double().requires_grad_()
    ref = ska_reference(x64, k64)
    gx64, gk64 = torch.autograd.grad(ref, (x64, k64), go.double())
    errors = {'out': _rel_err(out, ref)}
    tol = {'out': TOLERANCE[xd]}
    it = iter(grads)
    if need_x:
        gx = next(it)
        errors['grad_x'], tol['grad_x'] = _rel_err(gx, gx64), TOLERANCE[xd]
        assert gx.dtype == xd, (gx.dtype, xd)
    if need_w:
        gk = next(it)
        errors['grad_w'], tol['grad_w'] = _rel_err(gk, gk64), TOLERANCE[wd]
        assert gk.dtype == wd, (gk.dtype, wd)
    assert out.dtype == xd
    passed = all(errors[n] <= tol[n] for n in errors)
    if variant == 'repeat_bitwise':
        again = torch.autograd.grad(ska(xr, kr, backend='triton'), wanted, go)
        same = all(torch.equal(a, b) for a, b in zip(grads, again))
        errors['bitwise_repeat'] = same
        passed = passed and same
    return errors, passed


def _big_case(chk, sec):
    """More than 2^31 elements in bfloat16: the last rows of the last image, where the
    offsets pass 2^31, against the float64 loop on a window of rows."""
    from lsnet_mm.ops import ska, ska_reference
    if chk.smoke:
        b, c, h, w, g = 1, 8, 7, 5, 2  # the same code on a tiny tensor
    else:
        b, c, h, w, g = 2, 256, 2048, 2100, 32
    # x, out, grad_out, grad_x and w, grad_w in bfloat16, plus headroom
    need_gib = (4 * b * c * h * w * 2 + 2 * b * g * 9 * h * w * 2) / 2 ** 30 + 2
    if chk.cuda:
        free, _ = torch.cuda.mem_get_info(chk.device)
        if free / 2 ** 30 < need_gib:
            sec.skipped.append(f'> 2^31 elements: {need_gib:.0f} GiB needed, '
                               f'{free / 2 ** 30:.0f} free')
            return None
    x = chk.randn(b, c, h, w, dtype=torch.bfloat16, seed=5).requires_grad_()
    k = chk.randn(b, g, 9, h, w, dtype=torch.bfloat16, seed=6).requires_grad_()
    out = ska(x, k, backend='triton')
    go = chk.randn(b, c, h, w, dtype=torch.bfloat16, seed=7)
    gx, gk = torch.autograd.grad(out, (x, k), go)
    # rows h-4.. of the last image are exact in a window of rows starting one earlier
    xs, gos = (t[-1:, :, h - 5:].detach().double() for t in (x, go))
    ks = k[-1:, :, :, h - 5:].detach().double().requires_grad_()
    xs.requires_grad_()
    ref = ska_reference(xs, ks)
    gx_ref, gk_ref = torch.autograd.grad(ref, (xs, ks), gos)
    errors = {'out': _rel_err(out[-1:, :, h - 4:], ref[:, :, 1:]),
              'grad_x': _rel_err(gx[-1:, :, h - 4:], gx_ref[:, :, 1:]),
              'grad_w': _rel_err(gk[-1:, :, :, h - 4:], gk_ref[:, :, :, 1:])}
    numel = dict(x=x.numel(), w=k.numel())
    del x, k, out, go, gx, gk
    return dict(shape=[b, c, h, w, g], numel=numel, errors=errors,
                passed=all(e <= TOLERANCE[torch.bfloat16] for e in errors.values()))


def section_op_correctness(chk, sec):
    from lsnet_mm.ops import ska, ska_dispatch, ska_triton
    # auto picks Triton on this device (CUDA, or CPU under the interpreter)
    calls = []
    real = ska_triton.forward
    ska_triton.forward = lambda *a: calls.append(1) or real(*a)
    try:
        ska(chk.randn(1, 8, 4, 5), chk.randn(1, 1, 9, 4, 5))
    finally:
        ska_triton.forward = real
    sec.check("backend='auto' runs the Triton kernel", calls == [1])
    if chk.smoke:
        shapes = [(1, 8, 1, 1, 1), (1, 8, 5, 7, 1), (1, 12, 5, 6, 3), (1, 4, 3, 4, 4)]
        main, big = (1, 8, 4, 5, 2), (2, 16, 3, 4, 2)
    else:
        shapes = [(1, 8, 1, 1, 1), (1, 8, 5, 7, 1), (2, 24, 17, 19, 3), (2, 64, 33, 47, 8),
                  (2, 64, 13, 21, 64), (1, 512, 9, 9, 64), (2, 128, 50, 84, 16),
                  (1, 64, 7, 300, 8), (2, 256, 200, 336, 32)]
        main, big = (2, 64, 33, 47, 8), (2, 256, 200, 336, 32)
    variants = ('channels_last_x', 'sliced_x', 'expanded_grad', 'channels_last_grad',
                'grad_x_only', 'grad_w_only', 'repeat_bitwise')
    sizes = (main,) if chk.smoke else (main, big)  # the interpreter is slow
    plan = [(s, 'fp32', 'contiguous') for s in shapes]
    plan += [(s, 'bf16x_fp32w', 'contiguous') for s in sizes]
    plan += [(main, d, v) for d in (('fp32',) if chk.smoke else ('fp32', 'bf16x_fp32w'))
             for v in variants]
    rest = [(s, d, 'contiguous') for d in ('bf16', 'fp16', 'fp16x_fp32w') for s in sizes]
    cases = sec.data['cases'] = []

    def run_cases(items, seed0):
        for i, (shape, dtype_name, variant) in enumerate(items):
            what = f'{tuple(shape)} {dtype_name} {variant}'
            if not sec.can_start(what, 1):
                continue
            t0 = time.perf_counter()
            errors, passed = _op_case(chk, shape, dtype_name, variant, seed=seed0 + i)
            cases.append(dict(shape=list(shape), dtype=dtype_name, variant=variant,
                              errors=errors, passed=passed,
                              seconds=round(time.perf_counter() - t0, 3)))
            sec.check(what, passed, errors=errors)

    run_cases(plan, 0)
    # > 2^31 elements and gradcheck before the remaining dtypes
    if sec.can_start('> 2^31 elements (bf16)', 5 if chk.smoke else 15):
        r = _big_case(chk, sec)
        if r is not None:
            sec.data['more_than_2_31'] = r
            sec.check('> 2^31 elements (bf16)', r['passed'], errors=r['errors'])
    t0 = time.perf_counter()
    if sec.can_start('gradcheck float64', 5):
        b, c, h, w, g = (1, 2, 2, 2, 1) if chk.smoke else (1, 4, 3, 4, 2)
        x = chk.randn(b, c, h, w, dtype=torch.float64).requires_grad_()
        k = chk.randn(b, g, 9, h, w, dtype=torch.float64, seed=1).requires_grad_()
        # every Jacobian entry on the GPU; the interpreter (--smoke) checks random
        # directions (tests/test_ops runs the full check in the interpreter)
        sec.check('gradcheck float64', torch.autograd.gradcheck(
            lambda a, b: ska(a, b, backend='triton'), (x, k), fast_mode=chk.smoke),
            seconds=round(time.perf_counter() - t0, 3))
    run_cases(rest, len(plan))
    sec.check('no fallback to the PyTorch path', ska_dispatch.fallback_reason() is None,
              detail=ska_dispatch.fallback_reason())


# -------------------------------------------------------------------- op timing
def _min_bytes(x, w, backward):
    """Bytes the op must move: forward reads x, w and writes out; backward reads
    grad_out, x, w and writes grad_x, grad_w."""
    xb, wb = x.numel() * x.element_size(), w.numel() * w.element_size()
    return 2 * xb + wb if not backward else 3 * xb + 2 * wb


def _stage_shapes(batch):
    """LSNet-T's LS-convolution stage shapes at 800x1344: strides 8, 16, 32."""
    return [(f'T stage {i + 1}', batch, c, 800 // s, 1344 // s, c // 8)
            for i, (c, s) in enumerate(((64, 8), (128, 16), (256, 32)))]


def section_op_timing(chk, sec):
    impls = {'triton': _triton_fn(), 'torch': benchmark_ska.ska_backend('torch'),
             'unfold': benchmark_ska.ska_unfold}
    if chk.smoke:
        shapes = [('tiny', 1, 16, 6, 8, 2)]
    else:
        shapes = _stage_shapes(2) + _stage_shapes(8)
    rows = sec.data['rows'] = []
    for label, b, c, h, w, g in shapes:
        for dtype_name in ('fp32', 'bf16x_fp32w'):
            xd, wd = DTYPES[dtype_name]
            x = chk.randn(b, c, h, w, dtype=xd)
            k = chk.randn(b, g, 9, h, w, dtype=wd, seed=1)
            go = chk.randn(b, c, h, w, dtype=xd, seed=2)
            xg, kg = x.clone().requires_grad_(), k.clone().requires_grad_()
            for name, fn in impls.items():
                if not sec.can_start(f'{label} {dtype_name} {name}', 1):
                    continue

                def fwd(fn=fn, x=x, k=k):
                    with torch.no_grad():
                        fn(x, k)

                def fwd_bwd(fn=fn, xg=xg, kg=kg, go=go):
                    torch.autograd.grad(fn(xg, kg), (xg, kg), go)

                row = dict(shape=label, input=[b, c, h, w], groups=g, dtype=dtype_name,
                           impl=name)
                for mode, f, backward in (('fwd', fwd, False), ('fwd_bwd', fwd_bwd, True)):
                    ms = chk.time(f, batched=True)
                    nbytes = _min_bytes(x, k, False) + (_min_bytes(x, k, True) if backward
                                                        else 0)
                    gbps = _gb(nbytes) / (ms * 1e-3)
                    peak, _ = chk.memory(f)
                    row[mode] = dict(ms=ms, min_bytes=nbytes, gbps=gbps,
                                     pct_copy=100 * gbps / chk.copy_gbps if chk.copy_gbps
                                     else None, peak_mib=peak)
                rows.append(row)
            del x, k, go, xg, kg
    return rows


# ------------------------------------------------------------- backbone helpers
def _archs(chk):
    return {'tiny': TINY_ARCH} if chk.smoke else {'t': 't', 's': 's', 'b': 'b'}


def _backbone(chk, arch, seed=0):
    from lsnet_mm.models import LSNet
    torch.manual_seed(seed)
    return LSNet(arch=arch, out_indices=(0, 1, 2, 3)).to(chk.device)


def _dense_loss(outs):
    """A loss that reaches every pixel of every output: sum of the squared means."""
    return sum(o.float().square().mean() for o in outs)


def _rel_norm(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def section_backbone_parity(chk, sec):
    from lsnet_mm.ops import ska_dispatch
    tol = {'fp32': 1e-4, 'bf16': 5e-2, 'fp16': 1e-2}
    size = (1, 3, 32, 32) if chk.smoke else (2, 3, 256, 384)
    rows = sec.data['rows'] = []
    for arch, cfg in _archs(chk).items():
        model = _backbone(chk, cfg).train()
        x = chk.randn(*size)
        for precision in ('fp32', 'bf16', 'fp16'):
            if not sec.can_start(f'LSNet-{arch} {precision}', 3):
                continue
            res = {}
            for path in ('triton', 'torch'):
                model.zero_grad(set_to_none=True)
                with benchmark_ska.ska_impl(benchmark_ska.ska_backend(path)), \
                        chk.autocast(precision):
                    outs = model(x)
                    loss = _dense_loss(outs)
                loss.backward()
                res[path] = ([o.detach().float() for o in outs],
                             {n: p.grad.detach().float().clone()
                              for n, p in model.named_parameters() if p.grad is not None})
            (out_t, grad_t), (out_p, grad_p) = res['triton'], res['torch']
            out_err = max(_rel_norm(a, b) for a, b in zip(out_t, out_p))
            names = sorted(grad_p)
            grad_err = _rel_norm(torch.cat([grad_t[n].flatten() for n in names]),
                                 torch.cat([grad_p[n].flatten() for n in names]))
            worst = max(names, key=lambda n: _rel_norm(grad_t[n], grad_p[n])
                        if grad_p[n].norm() > 0 else 0.0)
            same_params = set(grad_t) == set(grad_p) and len(grad_p) > 0
            row = dict(arch=arch, precision=precision, input=list(size), output_rel_err=out_err,
                       grad_rel_err=grad_err, worst_param=worst,
                       worst_param_rel_err=_rel_norm(grad_t[worst], grad_p[worst]),
                       params_with_grad=len(grad_p), tolerance=tol[precision])
            rows.append(row)
            sec.check(f'LSNet-{arch} {precision}: Triton == PyTorch path',
                      same_params and out_err <= tol[precision] and grad_err <= tol[precision],
                      output_rel_err=out_err, grad_rel_err=grad_err)
        del model
    sec.check('no fallback to the PyTorch path', ska_dispatch.fallback_reason() is None)


# ----------------------------------------------------------------- train step
def _train_step_fn(model, opt, x, precision, chk):
    def step():
        opt.zero_grad(set_to_none=True)
        with chk.autocast(precision):
            loss = _dense_loss(model(x))
        loss.backward()
        opt.step()
    return step


def _measure_step(chk, step):
    ms = chk.time(step, iters=1 if chk.smoke else 5)
    peak, peak_abs = chk.memory(step)
    return dict(ms=ms, peak_extra_mib=peak, peak_mib=peak_abs)


def section_train_step(chk, sec):
    paths = {'triton': _triton_fn(), 'torch': benchmark_ska.ska_backend('torch'),
             'unfold': benchmark_ska.ska_unfold}
    batches, size = ((1,), (32, 32)) if chk.smoke else ((2, 8), (800, 1344))
    rows = sec.data['rows'] = []
    goals = sec.data['goals'] = []
    for arch, cfg in _archs(chk).items():
        model = _backbone(chk, cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for batch in batches:
            x = chk.randn(batch, 3, *size)
            for precision in ('fp32', 'bf16'):
                group = {}
                for path, fn in paths.items():
                    what = f'LSNet-{arch} batch {batch} {precision} {path}'
                    if not sec.can_start(what, 2):
                        continue
                    with benchmark_ska.ska_impl(fn):
                        r = _measure_step(chk, _train_step_fn(model, opt, x, precision, chk))
                    group[path] = r
                    rows.append(dict(arch=arch, batch=batch, input=[batch, 3, *size],
                                     precision=precision, path=path, **r))
                if {'triton', 'torch', 'unfold'} <= set(group):
                    t, p, u = group['triton'], group['torch'], group['unfold']
                    goals.append(dict(
                        arch=arch, batch=batch, precision=precision,
                        faster_than_torch_path=t['ms'] < p['ms'],
                        speedup_vs_torch_path=p['ms'] / t['ms'],
                        below_unfold_peak=(t['peak_mib'] < u['peak_mib']
                                           if t['peak_mib'] is not None else None)))
            del x
        del model, opt
        if chk.cuda:
            torch.cuda.empty_cache()


def section_train_step_compiled(chk, sec):
    from torch._dynamo.utils import counters
    batches, size = ((1,), (32, 32)) if chk.smoke else ((8,), (800, 1344))
    arch, cfg = next(iter(_archs(chk).items()))  # LSNet-T (tiny with --smoke)
    rows = sec.data['rows'] = []
    sec.data['backend'] = chk.compile_backend
    for batch in batches:
        for precision in ('fp32',) if chk.smoke else ('fp32', 'bf16'):
            what = f'compiled LSNet-{arch} batch {batch} {precision}'
            if not sec.can_start(what, 10 if chk.smoke else 75):
                continue
            torch._dynamo.reset()
            counters.clear()
            model = _backbone(chk, cfg).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x = chk.randn(batch, 3, *size)
            with benchmark_ska.ska_impl(_triton_fn()):
                eager = _measure_step(chk, _train_step_fn(model, opt, x, precision, chk))
                compiled = torch.compile(model, backend=chk.compile_backend)
                step = _train_step_fn(compiled, opt, x, precision, chk)
                t0 = time.perf_counter()
                step()
                benchmark_ska.synchronize(chk.device)
                first = time.perf_counter() - t0
                r = _measure_step(chk, step)
            rows.append(dict(arch=arch, batch=batch, precision=precision, path='triton',
                             first_step_s=first, eager=eager, compiled=r,
                             speedup=eager['ms'] / r['ms'],
                             graphs=counters['stats']['unique_graphs'],
                             graph_breaks=sum(counters['graph_break'].values())))
            sec.check(f'{what}: compiles and steps', r['ms'] > 0)
            del model, opt, compiled
    torch._dynamo.reset()


# --------------------------------------------------------------------- deploy
def _deploy_rows(chk, sec, compiled):
    from lsnet_mm.ops import ska_dispatch
    if chk.smoke:
        thr_shape, lat_shape = (2, 3, 32, 32), (1, 3, 32, 48)
    else:
        thr_shape, lat_shape = (256, 3, 224, 224), (1, 3, 800, 1344)
    rows = []
    for arch, cfg in _archs(chk).items():
        estimate = (10 if chk.smoke else 40) if compiled else 3
        if not sec.can_start(f'{"compiled " if compiled else ""}LSNet-{arch} deploy', estimate):
            continue
        torch._dynamo.reset()
        model = _backbone(chk, cfg).eval().switch_to_deploy()
        module = torch.compile(model, backend=chk.compile_backend) if compiled else model
        precisions = ('fp16', 'fp32') if not compiled else ('fp16',)
        for what, shape in (('throughput', thr_shape), ('latency', lat_shape)):
            x = chk.randn(*shape)
            for precision in precisions:
                if compiled and what == 'latency' and arch != next(iter(_archs(chk))):
                    continue  # compiled batch-1 latency: LSNet-T only (compile time)

                def fwd(module=module, x=x, precision=precision):
                    with torch.inference_mode(), chk.autocast(precision):
                        module(x)

                t0 = time.perf_counter()
                fwd()
                benchmark_ska.synchronize(chk.device)
                first = time.perf_counter() - t0
                ms = chk.time(fwd, iters=1 if chk.smoke else 10)
                row = dict(arch=arch, measure=what, input=list(shape), precision=precision,
                           compiled=compiled, ms=ms, first_run_s=first,
                           images_per_s=shape[0] / (ms * 1e-3))
                if what == 'throughput':
                    row['authors_rtx3090_images_per_s'] = AUTHORS_RTX3090.get(arch)
                    if arch in AUTHORS_RTX3090:
                        row['vs_authors'] = row['images_per_s'] / AUTHORS_RTX3090[arch]
                rows.append(row)
        del model, module
    sec.check('no fallback to the PyTorch path', ska_dispatch.fallback_reason() is None)
    torch._dynamo.reset()
    return rows


def section_deploy(chk, sec):
    sec.data['protocol'] = ('deploy mode (BN fused), inference_mode, float16 autocast as the '
                            "authors' speed test; also float32")
    sec.data['rows'] = _deploy_rows(chk, sec, compiled=False)


def section_deploy_compiled(chk, sec):
    sec.data['backend'] = chk.compile_backend
    sec.data['rows'] = _deploy_rows(chk, sec, compiled=True)


SECTIONS = {'env': section_env, 'op_correctness': section_op_correctness,
            'op_timing': section_op_timing, 'backbone_parity': section_backbone_parity,
            'train_step': section_train_step, 'deploy': section_deploy,
            'train_step_compiled': section_train_step_compiled,
            'deploy_compiled': section_deploy_compiled}


# --------------------------------------------------------------------- goals
def evaluate_goals(results, smoke):
    """The issue's goals, from what the sections measured (None: not measured)."""
    goals = []
    timing = results.get('op_timing', {}).get('data', {}).get('rows', [])
    stage1 = [r for r in timing if r['impl'] == 'triton' and r['dtype'] == 'fp32'
              and r['shape'] == 'T stage 1' and r['input'][0] == 8]
    for mode in ('fwd', 'fwd_bwd'):
        pct = stage1[0][mode]['pct_copy'] if stage1 else None
        goals.append(dict(goal=f'SKA Triton {mode} >= 60% of copy bandwidth, T stage 1, '
                               f'batch 8, fp32', value=pct,
                          met=None if pct is None else pct >= 60))
    train = results.get('train_step', {}).get('data', {}).get('goals', [])
    faster = [g['faster_than_torch_path'] for g in train]
    below = [g['below_unfold_peak'] for g in train if g['below_unfold_peak'] is not None]
    goals.append(dict(goal='Triton training step faster than the PyTorch path (every arch, '
                           'batch, precision)', value=f'{sum(faster)}/{len(faster)}',
                      met=all(faster) if faster else None))
    goals.append(dict(goal="Triton training step below unfold's peak memory",
                      value=f'{sum(below)}/{len(below)}', met=all(below) if below else None))
    if smoke:
        for g in goals:
            g['met'] = None
            g['note'] = 'not applicable with --smoke (CPU, interpreter)'
    return goals


# --------------------------------------------------------------------- report
def _fmt(v, digits=2):
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, float):
        return f'{v:.2e}' if 0 < abs(v) < 10 ** -digits else f'{v:,.{digits}f}'
    return str(v)


def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(_fmt(c) for c in r) + ' |' for r in rows]
    return lines


def format_report(result):
    s = result['sections']
    env = s.get('env', {}).get('data', {})
    mode = 'smoke run: CPU, Triton interpreter, tiny shapes' if result['smoke'] else 'full run'
    lines = ['# GPU check', '',
             f"`{result['command']}` ({mode}), {result['total_s']:.1f} s, exit status "
             f"{result['exit_status']}.", '']
    if env:
        v = env.get('versions', {})
        lines += [f"Device: {env.get('device_name')} ({env.get('device')}); "
                  + ', '.join(f'{k} {val}' for k, val in v.items()) + '.']
        if 'copy' in env:
            lines += [f"Device-to-device copy: {env['copy']['gbps']:.1f} GB/s "
                      f"({env['copy']['bytes'] / 1e9:.3f} GB moved, {env['copy']['ms']:.3f} ms)."]
        lines += ['']
    lines += ['## Sections', '']
    lines += _table(['section', 'status', 'wall s', 'budget s', 'checks passed', 'skipped'],
                    [[n, r['status'], r['elapsed_s'], r['budget_s'],
                      f"{sum(c['passed'] for c in r['checks'])}/{len(r['checks'])}",
                      len(r['skipped'])] for n, r in s.items()])
    lines += ['', '## Goals', '']
    lines += _table(['goal', 'value', 'met'], [[g['goal'], g['value'], g['met']]
                                              for g in result['goals']])
    notes = {g['note'] for g in result['goals'] if g.get('note')}
    lines += [''] + sorted(notes) if notes else []
    failed = [f"{n}: {c['name']}" for n, r in s.items() for c in r['checks'] if not c['passed']]
    errors = [n for n, r in s.items() if r['error']]
    if failed or errors:
        lines += ['', '## Failures', '']
        lines += [f'- check failed: {f}' for f in failed]
        lines += [f"- section {n} raised:\n\n```\n{s[n]['error']}```" for n in errors]
    if 'op_correctness' in s:
        d = s['op_correctness']['data']
        lines += ['', '## SKA op, backend=triton vs float64 loop', '']
        lines += _table(['shape (B, C, H, W, G)', 'dtype', 'variant', 'out', 'grad_x', 'grad_w',
                         'ok'],
                        [[tuple(c['shape']), c['dtype'], c['variant'],
                          *(_fmt(c['errors'].get(k)) for k in ('out', 'grad_x', 'grad_w')),
                          c['passed']]
                         for c in d.get('cases', [])])
        if 'more_than_2_31' in d:
            big = d['more_than_2_31']
            lines += ['', f"> 2^31 elements (bf16, {tuple(big['shape'])}, x {big['numel']['x']:,} "
                          f"elements): errors {big['errors']}, ok: {_fmt(big['passed'])}"]
    if 'op_timing' in s:
        lines += ['', '## SKA op timing (median; GB/s against the minimum bytes)', '']
        lines += _table(['shape', '(B, C, H, W)', 'dtype', 'impl', 'fwd ms', 'fwd GB/s',
                         'fwd % copy', 'fwd+bwd ms', 'fwd+bwd GB/s', 'fwd+bwd % copy',
                         'peak MiB fwd+bwd'],
                        [[r['shape'], tuple(r['input']), r['dtype'], r['impl'],
                          _fmt(r['fwd']['ms'], 3), r['fwd']['gbps'], r['fwd']['pct_copy'],
                          _fmt(r['fwd_bwd']['ms'], 3), r['fwd_bwd']['gbps'],
                          r['fwd_bwd']['pct_copy'], r['fwd_bwd']['peak_mib']]
                         for r in s['op_timing']['data'].get('rows', [])])
    if 'backbone_parity' in s:
        lines += ['', '## Backbones: Triton vs PyTorch path (relative norm of the difference)',
                  '']
        lines += _table(['arch', 'precision', 'input', 'outputs (worst level)',
                         'all param grads', 'worst param', 'its error', 'tolerance'],
                        [[r['arch'], r['precision'], tuple(r['input']),
                          r['output_rel_err'], r['grad_rel_err'], r['worst_param'],
                          r['worst_param_rel_err'], r['tolerance']]
                         for r in s['backbone_parity']['data'].get('rows', [])])
    for key, title in (('train_step', 'Training step (forward, dense loss, backward, AdamW)'),):
        if key in s:
            lines += ['', f'## {title}', '']
            lines += _table(['arch', 'batch', 'precision', 'path', 'step ms', 'peak MiB',
                             'peak above start MiB'],
                            [[r['arch'], r['batch'], r['precision'], r['path'], r['ms'],
                              r['peak_mib'], r['peak_extra_mib']]
                             for r in s[key]['data'].get('rows', [])])
    if 'train_step_compiled' in s:
        lines += ['', f"## Training step, torch.compile "
                      f"({s['train_step_compiled']['data'].get('backend')})", '']
        lines += _table(['arch', 'batch', 'precision', 'first step s', 'eager ms',
                         'compiled ms', 'speedup', 'peak MiB compiled', 'graphs',
                         'graph breaks'],
                        [[r['arch'], r['batch'], r['precision'], r['first_step_s'],
                          r['eager']['ms'], r['compiled']['ms'], r['speedup'],
                          r['compiled']['peak_mib'], r['graphs'], r['graph_breaks']]
                         for r in s['train_step_compiled']['data'].get('rows', [])])
    for key in ('deploy', 'deploy_compiled'):
        if key in s:
            lines += ['', f"## Deploy mode{' + torch.compile' if key.endswith('compiled') else ''}",
                      '']
            lines += _table(['arch', 'measure', 'input', 'precision', 'ms', 'images/s',
                             "authors' RTX 3090 images/s", 'ratio'],
                            [[r['arch'], r['measure'], tuple(r['input']), r['precision'],
                              _fmt(r['ms'], 3), r['images_per_s'],
                              r.get('authors_rtx3090_images_per_s'), r.get('vs_authors')]
                             for r in s[key]['data'].get('rows', [])])
    skipped = [f'{n}: {w}' for n, r in s.items() for w in r['skipped']]
    if skipped:
        lines += ['', '## Skipped (time budget or memory)', ''] + [f'- {w}' for w in skipped]
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.smoke:
        if 'triton' in sys.modules and os.environ.get('TRITON_INTERPRET') != '1':
            raise SystemExit('gpu_check --smoke: run it in a fresh process (triton was '
                             'imported without TRITON_INTERPRET=1)')
        os.environ['TRITON_INTERPRET'] = '1'  # before triton is imported
        os.environ.pop('LSNET_SKA_TORCH', None)
        torch.set_num_threads(1)  # tiny ops: threads only contend
    chk = Check(args)
    if chk.cuda and not torch.cuda.is_available():
        raise SystemExit(f'gpu_check: no CUDA device ({args.device or "cuda"}); use --smoke '
                         'for the CPU run')
    if chk.cuda:
        torch.cuda.set_device(chk.device)
        torch.backends.cudnn.benchmark = True
    deadline = t_start + args.max_total_s
    sections = [(name, BUDGETS_S[name], lambda sec, fn=SECTIONS[name]: fn(chk, sec))
                for name in BUDGETS_S if name in args.sections]
    command = 'python tools/analysis_tools/gpu_check.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    results = {}

    def finish(hard_stop=False):
        done = {n: r for n, r in results.items() if n != '_current'}
        if hard_stop and '_current' in results:  # the section running at the hard limit
            sec = results['_current']
            done[sec.name] = _section_record(
                sec, 'error', f'stopped at the hard time limit ({args.hard_limit_s:.0f} s)')
        failed = [f"{n}: {c['name']}" for n, r in done.items() for c in r['checks']
                  if not c['passed']]
        errors = [n for n, r in done.items() if r['status'] == 'error']
        result = dict(tool='gpu_check', command=command.strip(), smoke=args.smoke,
                      device=str(chk.device), sections=done,
                      goals=evaluate_goals(done, args.smoke), failed_checks=failed,
                      errored_sections=errors, exit_status=1 if failed or errors else 0,
                      total_s=round(time.perf_counter() - t_start, 3))
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, 'gpu_check.json'), 'w') as f:
            json.dump(result, f, indent=1, default=str)
        with open(os.path.join(args.out_dir, 'gpu_check.md'), 'w') as f:
            f.write(format_report(result))
        print(f"gpu_check: {result['total_s']:.1f} s; {len(failed)} failed checks, "
              f"{len(errors)} sections raised; {args.out_dir}/gpu_check.json, gpu_check.md",
              flush=True)
        return result

    def hard_stop():
        finish(hard_stop=True)
        os._exit(1)

    watchdog = threading.Timer(max(args.hard_limit_s - (time.perf_counter() - t_start), 0),
                               hard_stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        run_sections(sections, deadline, results)
    finally:
        watchdog.cancel()
    return finish()


if __name__ == '__main__':
    sys.exit(main()['exit_status'])
