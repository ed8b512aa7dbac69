"""Inference speed, memory, parameters and GMACs of a model built from an mmdet/mmseg config.

    python tools/analysis_tools/benchmark.py configs/retinanet_lsnet_t.py --backbone-only \\
        --shape 800 1333
    python tools/analysis_tools/benchmark.py configs/retinanet_lsnet_t.py --backbone-only \\
        --deploy --compare configs/retinanet_lsnet_t.py     # deploy vs eager, same run
    python tools/analysis_tools/benchmark.py configs/retinanet_lsnet_t.py \\
        --compare mmdet::retinanet/retinanet_r50_fpn_1x_coco.py --out r50.json

CONFIG and OTHER_CONFIG are files or ``mmdet::``/``mmseg::`` names of the libraries'
own configs. Weights are random (no checkpoint is read: pretrained ``init_cfg`` is
dropped); speed does not depend on them.

What is measured:
* the whole network in mmengine's ``tensor`` mode (backbone, neck and head forward,
  without box decoding / NMS or resizing of the logits), or, with ``--backbone-only``,
  ``model.backbone`` alone; input: a random (batch, 3, H, W) tensor, no data
  preprocessing;
* ``--warmup`` untimed runs, then ``--iters`` timed runs under ``torch.no_grad()``
  (CUDA: synchronised); with ``--compare`` the models alternate run by run, so
  that load from other processes hits them alike (``--compare`` takes one or
  more configs; each ratio is a model's median latency over CONFIG's). Latency:
  median, p10 and p90; images/s = batch / median;
* the process's CPU time per run (all threads; ``time.process_time``). On a
  loaded machine it is the steadier figure: with ``--threads 1`` it is about the
  latency on an idle core (with more threads it includes OpenMP spin-waiting);
* peak memory of one extra forward: CPU: the high-water mark of tensor memory
  allocated through PyTorch's CPU allocator (torch.profiler memory events; oneDNN
  scratch space is not included) and the increase of the process's peak RSS
  (VmHWM, reset through /proc/self/clear_refs) over its RSS before that forward;
  CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before;
* parameters of the measured module; GMACs from mmengine's
  ``get_model_complexity_info`` (counts a multiply-add as one; the parameter-free
  LS aggregation is not counted).

``--runtime onnxruntime openvino`` adds CONFIG's measured module exported to ONNX
(:func:`lsnet_mm.deploy.onnx_export.export_onnx`, fixed shape; with ``--predict`` the
end-to-end graph of :func:`~lsnet_mm.deploy.onnx_export.export_end2end`: preprocessing,
decoding and NMS inside) and run in those CPU runtimes (``--threads`` intra-op
threads), alternating with the PyTorch models.
``onnxruntime-int8`` / ``openvino-int8`` add that export quantized to INT8
(:func:`lsnet_mm.deploy.quantize.quantize_onnx`: onnxruntime QDQ / OpenVINO NNCF,
pre- and post-processing and the small-kernel aggregation kept in float), calibrated
on ``--calib-inputs`` random inputs like the timed one (speed does not depend on the
weights or the calibration; for accuracy see ``tools/deployment/quantize.py``).
The files are written to ``--onnx-dir`` and kept, or to a temporary folder removed at
the end.

``--deploy`` converts LSNet backbones of CONFIG with ``LSNet.switch_to_deploy()``
(``--compare-deploy`` does it for the OTHER_CONFIGs). ``--compile`` wraps CONFIG's
measured module in ``torch.compile`` (after deploy; options: the config's
``compile=dict(...)`` if it has one, e.g. ``--cfg-options compile.mode=max-autotune``);
its first run, which compiles, is untimed and reported as ``first_run_s``.
``--modes eager deploy deploy+compile`` measures CONFIG in each mode in the same run
(ratios against the first). ``--predict`` measures the whole model as
``model.test_step`` runs it at test time: data preprocessing, forward and
post-processing (box decoding and NMS; logits resizing), on a random 0-255 image,
with the weights of the model's ``init_weights()`` (PyTorch's default initialisation
makes every anchor a candidate: NMS then costs ~0.9 s for RetinaNet at 640x640).
The table is printed and, with ``--out``, written as JSON.

    python tools/analysis_tools/benchmark.py configs/retinanet_lsnet_t.py --predict \
        --shape 800 1344 --modes eager deploy deploy+compile --threads 1
"""
import argparse
import contextlib
import os
import os.path as osp
import platform
import sys
import tempfile
import time

import mmengine
import numpy as np
import torch
from mmengine.config import DictAction
from torch import nn

from lsnet_mm.apis import build_model_from_cfg, launch, load_config
from lsnet_mm.models import switch_model_to_deploy
from lsnet_mm.utils.errors import ConfigError, ExportError

MODES = ('eager', 'deploy', 'compile', 'deploy+compile')
#: ONNX runtimes of --runtime: float exports, and INT8 ones (OpenVINO: NNCF-quantized
#: IR; onnxruntime: QDQ-quantized ONNX), see lsnet_mm.deploy.quantize
RUNTIMES = ('onnxruntime', 'openvino', 'onnxruntime-int8', 'openvino-int8')
#: INT8 runtime -> the quantized file's extension (which selects the quantization path)
INT8_FILES = {'openvino-int8': 'model_int8.xml', 'onnxruntime-int8': 'model_int8.onnx'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Benchmark a model built from an mmdet/mmseg config')
    p.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    p.add_argument('--backbone-only', action='store_true', help='measure model.backbone only')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'),
                   help='input height and width (default 800 1333)')
    p.add_argument('--batch', type=int, default=1, help='images per forward (default 1)')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--compare', metavar='OTHER_CONFIG', nargs='+', default=[],
                   help='config(s) measured in the same run (runs alternate)')
    p.add_argument('--deploy', action='store_true',
                   help="switch CONFIG's LSNet backbones to deploy mode")
    p.add_argument('--compare-deploy', action='store_true',
                   help="switch OTHER_CONFIG's LSNet backbones to deploy mode")
    p.add_argument('--compile', action='store_true',
                   help="torch.compile CONFIG's measured module (after --deploy)")
    p.add_argument('--modes', nargs='+', choices=MODES, metavar='MODE',
                   help=f"measure CONFIG in each of these modes ({', '.join(MODES)}), "
                        'alternating; instead of --deploy / --compile')
    p.add_argument('--predict', action='store_true',
                   help='measure model.test_step (preprocessing, forward, box decoding / '
                        'NMS or logits resizing) instead of the tensor-mode forward')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='settings merged into CONFIG, e.g. model.test_cfg.score_thr=0.0')
    p.add_argument('--runtime', nargs='+', default=[], choices=RUNTIMES,
                   help="also time CONFIG's measured module exported to ONNX, in these CPU "
                        'runtimes (runs alternate with the PyTorch ones); *-int8: the export '
                        'quantized to INT8 for that runtime, calibrated on --calib-inputs '
                        'random inputs')
    p.add_argument('--calib-inputs', type=int, default=4,
                   help='-int8 runtimes: random calibration inputs like the timed one '
                        '(default 4; speed does not depend on their values)')
    p.add_argument('--onnx-dir', metavar='DIR',
                   help='--runtime: write the exported (and INT8) files to this folder and '
                        'keep them (default: a temporary folder, removed at the end)')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3)')
    p.add_argument('--iters', type=int, default=10, help='timed runs (default 10)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    p.add_argument('--no-flops', action='store_true', help='skip the GMACs count')
    p.add_argument('--out', metavar='JSON', help='write the results to this JSON file')
    args = p.parse_args(argv)
    if (args.iters < 1 or args.warmup < 0 or args.batch < 1 or min(args.shape) < 1
            or args.calib_inputs < 1):
        p.error('--iters, --batch and --calib-inputs must be >= 1, --warmup >= 0, --shape '
                'positive')
    if args.compare_deploy and not args.compare:
        p.error('--compare-deploy needs --compare')
    if args.modes and (args.deploy or args.compile):
        p.error('--modes replaces --deploy / --compile: name the modes, e.g. deploy+compile')
    if args.predict and args.backbone_only:
        p.error('--predict measures the whole model: drop --backbone-only')
    if args.predict and args.runtime and args.batch != 1:
        p.error('--runtime with --predict: the end-to-end ONNX graphs take one image')
    if args.runtime and args.device != 'cpu':
        p.error('--runtime measures CPU runtimes: use --device cpu')
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda: CUDA is not available in this PyTorch build / machine')
    return args


# ----------------------------------------------------------------------------- building
def build_model(name, cfg_options=None):
    """(model, scope, cfg) built from a config (``cfg_options`` merged), random weights,
    eval mode."""
    try:
        cfg = load_config(name)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return build_model_from_cfg(cfg) + (cfg,)


def data_samples_for(scope, batch, shape):
    """Data samples with the meta information a detector/segmentor forward reads."""
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta) for _ in range(batch)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta) for _ in range(batch)]


class TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-argument module."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, x):
        return self.model(x, self.data_samples, mode='tensor')


class PredictForward(nn.Module):
    """``model.test_step`` on a batch of images as a one-argument module.

    Args:
        model (nn.Module): An mmdet/mmseg model (its data preprocessor normalises).
        data_samples (list): One data sample (image meta information) per image.
    """

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, x):
        """Predict.

        Args:
            x (torch.Tensor): (B, 3, H, W) images, 0-255, channels as the dataset's.

        Returns:
            list: The data samples with the predictions.
        """
        return self.model.test_step(dict(inputs=list(x), data_samples=self.data_samples))


def compile_options(cfg):
    """``torch.compile`` keyword arguments: the config's ``compile`` dict, else none."""
    opts = cfg.get('compile')
    return dict(opts) if isinstance(opts, dict) else {}


def prepare(name, args, mode='eager', cfg_options=None):
    """The module to time (backbone, tensor-mode or predict-mode network) and a
    description; ``mode`` is one of MODES."""
    model, scope, cfg = build_model(name, cfg_options)
    if args.predict:  # the heads' own initialisation (e.g. RetinaNet's prior-probability
        # bias): as with trained weights, background anchors score below the threshold
        with quiet_logger():  # (no line per parameter)
            model.init_weights()
    deploy, compiled = 'deploy' in mode, 'compile' in mode
    n_lsnet = switch_model_to_deploy(model) if deploy else 0
    if deploy and not n_lsnet:
        print(f'benchmark: --deploy: {name} has no LSNet backbone; measured as it is')
    if args.backbone_only:
        if not hasattr(model, 'backbone'):
            raise SystemExit(f'benchmark: --backbone-only: {name} builds a '
                             f'{type(model).__name__} without a .backbone')
        module = model.backbone
    else:
        wrapper = PredictForward if args.predict else TensorForward
        module = wrapper(model, data_samples_for(scope, args.batch, args.shape))
    module.to(args.device)
    module.eval()  # not chained: some backbones' train() returns None
    options = compile_options(cfg) if compiled else None
    if compiled:  # after deploy: the converted modules are what gets compiled
        module = torch.compile(module, **options)
    label = osp.splitext(osp.basename(name.split('::')[-1]))[0]
    label += ' backbone' if args.backbone_only else ''
    tags = (['deploy'] if deploy and n_lsnet else []) + (['compile'] if compiled else [])
    label += f" [{'+'.join(tags)}]" if tags else ''
    return module, dict(name=label, config=name, mode=mode, deploy=bool(deploy and n_lsnet),
                        compiled=compiled, compile_options=options, predict=args.predict,
                        backbone_only=args.backbone_only,
                        backbone=type(getattr(model, 'backbone', model)).__name__)


def uncompiled(module):
    """The module a ``torch.compile`` wrapper wraps (or ``module`` itself)."""
    return getattr(module, '_orig_mod', module)


def export_entry(entries):
    """The entry whose module ``--runtime`` exports: CONFIG's first deploy-mode entry,
    else its first one; uncompiled."""
    mine = [e for e in entries if e[1]['config'] == entries[0][1]['config']]
    module, info = next((e for e in mine if e[1]['deploy']), entries[0])
    return uncompiled(module), info


def calibration_like(x, num, predict):
    """``x`` and ``num - 1`` random inputs of its kind (images 0-255 with --predict)."""
    more = [torch.rand_like(x) * 255 if predict else torch.randn_like(x)
            for _ in range(num - 1)]
    return [t.cpu().numpy() for t in [x] + more]


def onnx_entries(entry, x, args, folder):
    """CONFIG's measured module exported to ONNX in ``folder``, one entry per
    ``--runtime``; the ``-int8`` ones quantized from that export
    (:func:`lsnet_mm.deploy.quantize_onnx`)."""
    from lsnet_mm.deploy.onnx_export import export_onnx
    from lsnet_mm.deploy.onnx_runtime import OnnxModule
    module, info = entry
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, 'model.onnx')
    if args.predict:  # the whole model: image in, detections / label map out
        from lsnet_mm.deploy.onnx_export import export_end2end
        export_end2end(module.model, path, x)
    elif isinstance(module, TensorForward) and hasattr(module.model, 'rpn_head'):
        raise ExportError(
            f'--runtime without --predict: {info["config"]} is a two-stage detector, whose '
            f'tensor-mode forward runs the RPN\'s proposal post-processing, which mmdet '
            f'3.3 cannot export to ONNX (it imports mmdet 2\'s mmdet.core); add --predict to '
            f'measure the end-to-end file (lsnet_mm.deploy.export_end2end) instead, or '
            f'--backbone-only.')
    else:
        export_onnx(module, x, path)
    files = dict(onnxruntime=path, openvino=path)
    int8 = [rt for rt in args.runtime if rt in INT8_FILES]
    if int8:
        from lsnet_mm.deploy.quantize import quantize_onnx
        calib = calibration_like(x, args.calib_inputs, args.predict)
        for rt in int8:
            t0 = time.perf_counter()
            files[rt] = quantize_onnx(path, osp.join(folder, INT8_FILES[rt]), calib)['path']
            print(f'benchmark: {rt}: quantized in {time.perf_counter() - t0:.0f} s')
    out = []
    for rt in args.runtime:
        m = OnnxModule(module, files[rt], rt.replace('-int8', ''), args.threads or 0)
        out.append((m, dict(info, name=f"{info['name']} [{rt}]", runtime=rt,
                            runtime_version=m.session.version, model_file=files[rt])))
    return out


# ---------------------------------------------------------------------------- measuring
def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def _rss_kb(field):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_memory(module, x, device):
    """Peak memory of one forward, in MiB: (tensor peak, RSS peak increase or None)."""
    mib = 2 ** 20
    if device == 'cuda':
        _sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            module(x)
        _sync(device)
        return (torch.cuda.max_memory_allocated() - base) / mib, None
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        module(x)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
    cur = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        cur += e.nbytes()
        peak = max(peak, cur)
    rss = None
    if _reset_peak_rss():
        before = _rss_kb('VmRSS')
        with torch.no_grad():
            module(x)
        after = _rss_kb('VmHWM')
        if before is not None and after is not None:
            rss = max(0, after - before) / 1024
    return peak / mib, rss


@contextlib.contextmanager
def quiet_logger():
    """mmengine's current logger at level ERROR within the block."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('ERROR')
    try:
        yield
    finally:
        logger.setLevel(level)


def count_gmacs(module, x):
    from mmengine.analysis import get_model_complexity_info
    # (no unsupported-operator notes, e.g. for the LS aggregation)
    with quiet_logger(), torch.no_grad():
        info = get_model_complexity_info(module, inputs=(x,), show_table=False, show_arch=False)
    return info['flops'] / 1e9


def _loadavg():
    """1-minute load average: other processes' load makes CPU timings noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def summarise(times_s, batch):
    t = np.asarray(times_s) * 1e3
    med = float(np.median(t))
    return dict(median=med, p10=float(np.percentile(t, 10)), p90=float(np.percentile(t, 90)),
                min=float(t.min()), mean=float(t.mean()),
                std=float(t.std(ddof=1)) if len(t) > 1 else 0.0), batch / med * 1e3


def benchmark(args, argv=None, onnx_dir=None):
    """Build, time and measure the models of the command line.

    Args:
        args (argparse.Namespace): :func:`parse_args`'s result.
        argv (list[str], optional): The command line, for the record (default sys.argv).
        onnx_dir (str, optional): Folder of the ``--runtime`` files. Defaults to
            ``args.onnx_dir``, else a new temporary folder (kept).

    Returns:
        dict: The results (``results``, ``ratios``, settings), as ``--out`` writes them.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = args.modes or ['+'.join(['deploy'] * args.deploy + ['compile'] * args.compile)
                           or 'eager']
    entries = []
    for mode in modes:
        torch.manual_seed(0)  # the same weights in every mode
        entries.append(prepare(args.config, args, mode, args.cfg_options))
    for other in args.compare:
        torch.manual_seed(0)
        entries.append(prepare(other, args, 'deploy' if args.compare_deploy else 'eager'))
    if args.predict:  # an image: the data preprocessor normalises it
        x = torch.rand(args.batch, 3, *args.shape, device=args.device) * 255
    else:
        x = torch.randn(args.batch, 3, *args.shape, device=args.device)
    if args.runtime:
        folder = onnx_dir or args.onnx_dir or tempfile.mkdtemp(prefix='lsnet_benchmark_')
        entries += onnx_entries(export_entry(entries), x, args, folder)
    with torch.no_grad():
        for module, info in entries:
            if info.get('compiled'):  # the first run compiles: untimed, reported
                t0 = time.perf_counter()
                module(x)
                info['first_run_s'] = time.perf_counter() - t0
    load_before = _loadavg()

    times = [[] for _ in entries]
    cpu_times = [[] for _ in entries]
    with torch.no_grad():
        for _ in range(args.warmup):
            for module, _ in entries:
                module(x)
        _sync(args.device)
        for _ in range(args.iters):
            for i, (module, _) in enumerate(entries):
                _sync(args.device)
                c0, t0 = time.process_time(), time.perf_counter()
                module(x)
                _sync(args.device)
                times[i].append(time.perf_counter() - t0)
                cpu_times[i].append(time.process_time() - c0)
    load_after = _loadavg()

    results = []
    for (module, info), ts, cts in zip(entries, times, cpu_times):
        latency, ips = summarise(ts, args.batch)
        cpu_ms = np.asarray(cts) * 1e3
        mem, rss = peak_memory(module, x, args.device)
        params = sum(p.numel() for p in module.parameters())
        gmacs = None if args.no_flops or args.predict else count_gmacs(
            getattr(module, 'source', uncompiled(module)), x)
        results.append(dict(info, latency_ms=latency, images_per_s=ips, peak_mem_mib=mem,
                            peak_rss_increase_mib=rss, params=params, params_m=params / 1e6,
                            gmacs=gmacs, times_ms=[t * 1e3 for t in ts],
                            cpu_time_ms=dict(median=float(np.median(cpu_ms)),
                                             p10=float(np.percentile(cpu_ms, 10)),
                                             p90=float(np.percentile(cpu_ms, 90))),
                            cpu_times_ms=cpu_ms.tolist()))
    out = dict(
        command='python ' + ' '.join(['tools/analysis_tools/benchmark.py'] + list(
            sys.argv[1:] if argv is None else argv)),
        shape=list(args.shape), batch=args.batch, device=args.device, warmup=args.warmup,
        iters=args.iters, threads=torch.get_num_threads(), torch=torch.__version__,
        modes=modes, predict=args.predict, cfg_options=args.cfg_options,
        cpu=platform.processor() or platform.machine(),
        gpu=torch.cuda.get_device_name() if args.device == 'cuda' else None,
        cpu_count=os.cpu_count(), loadavg_1min=[load_before, load_after],
        env={k: v for k, v in os.environ.items()
             if k.startswith(('MALLOC_', 'OMP_', 'MKL_', 'KMP_', 'LD_PRELOAD', 'LSNET_'))},
        results=results)
    a = results[0]
    out['ratios'] = [dict(
        other=b['name'],
        latency_other_over_this=b['latency_ms']['median'] / a['latency_ms']['median'],
        # runs alternate: the median of run-by-run ratios is robust to load drifting
        paired_latency_ratio_median=float(np.median(
            np.asarray(b['times_ms']) / np.asarray(a['times_ms']))),
        cpu_time_other_over_this=b['cpu_time_ms']['median'] / a['cpu_time_ms']['median'],
        params_other_over_this=b['params'] / a['params'] if a['params'] else None,
        gmacs_other_over_this=b['gmacs'] / a['gmacs'] if a['gmacs'] and b['gmacs'] else None)
        for b in results[1:]]
    if out['ratios']:
        out['ratio'] = out['ratios'][0]  # CONFIG vs the first OTHER_CONFIG
    return out


def format_table(out):
    mode = 'backbone' if out['results'][0]['backbone_only'] else 'network (tensor mode)'
    if out.get('predict'):
        mode = 'whole model (test_step: preprocessing, forward, post-processing)'
    lines = [f"{mode}, input {out['batch']}x3x{out['shape'][0]}x{out['shape'][1]}, "
             f"{out['device']} ({out['threads']} threads), {out['warmup']} warm-up + "
             f"{out['iters']} timed runs (load average {out['loadavg_1min'][0]} -> "
             f"{out['loadavg_1min'][1]} on {out['cpu_count']} cores)",
             '| model | latency median (ms) | p10-p90 (ms) | latency / first | images/s '
             '| CPU time median (ms) | peak mem (MiB) | params (M) | GMACs |',
             '|---|---|---|---|---|---|---|---|---|']
    first = out['results'][0]['latency_ms']['median']
    for r in out['results']:
        lat = r['latency_ms']
        mem = f"{r['peak_mem_mib']:.1f}"
        if r['peak_rss_increase_mib'] is not None:
            mem += f" (RSS +{r['peak_rss_increase_mib']:.0f})"
        gm = '-' if r['gmacs'] is None else f"{r['gmacs']:.2f}"
        lines.append(f"| {r['name']} | {lat['median']:.1f} | {lat['p10']:.1f}-{lat['p90']:.1f} "
                     f"| {lat['median'] / first:.2f} | {r['images_per_s']:.2f} "
                     f"| {r['cpu_time_ms']['median']:.1f} | {mem} "
                     f"| {r['params_m']:.2f} | {gm} |")
    a = out['results'][0]
    for ratio in out.get('ratios', []):
        lines.append(f"ratio: {ratio['other']} latency / {a['name']} latency = "
                     f"{ratio['latency_other_over_this']:.2f}x (ratio of medians; median of "
                     f"run-by-run ratios {ratio['paired_latency_ratio_median']:.2f}x; CPU time "
                     f"{ratio['cpu_time_other_over_this']:.2f}x)")
    for r in out['results']:
        if r.get('first_run_s') is not None:
            lines.append(f"first run (compilation) of {r['name']}: {r['first_run_s']:.1f} s")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='lsnet_benchmark_') as tmp:
        out = benchmark(args, argv, args.onnx_dir or tmp)  # (the sessions hold the files)
    print(format_table(out))
    if args.out:
        mmengine.dump(out, args.out, file_format='json', indent=1)  # creates the folder
        print(f'wrote {args.out}')
    return out


if __name__ == '__main__':
    launch.run_tool(main)
