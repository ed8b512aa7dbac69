"""The demos, end to end on CPU: generate the demo data sets (if absent), train each demo
model from scratch with tools/train.py, evaluate its final checkpoint with tools/test.py,
then print a summary table.

    .venv/bin/python tools/demo.py                        # retinanet, mask_rcnn and fpn
    .venv/bin/python tools/demo.py --models retinanet --work-dir work_dirs/demo
    .venv/bin/python tools/demo.py --models fpn --min-miou 50 --threads 2

Models: retinanet (configs/demo/retinanet_lsnet_t_demo.py) and mask_rcnn
(configs/demo/mask_rcnn_lsnet_t_demo.py) on the generated COCO-format shapes
(``python -m lsnet_mm.datasets.demo.coco_shapes``); fpn (configs/demo/fpn_lsnet_t_demo.py)
on the generated ADE20K-layout scenes (``python -m lsnet_mm.datasets.demo.ade_scenes``).

The terminal shows a progress bar per model (read from the iteration lines mmengine
logs); the full output of every step goes to a log file, WORK_DIR/MODEL/train.log and
test.log (the data generators' to WORK_DIR/data_NAME.log). Checkpoints are in
WORK_DIR/MODEL, the metrics in WORK_DIR/MODEL/test/metrics.json, and all results in
WORK_DIR/demo_results.json. Relative paths are taken from the repository root, where the
steps run. Exits non-zero when a step fails (the end of its log is printed) or a model
ends below its threshold: box AP under --min-ap for the detectors, mIoU under --min-miou
for the segmentor (it did not learn).
"""
import argparse
import json
import os
import os.path as osp
import re
import resource
import shlex
import subprocess
import sys
import time
import warnings
from collections import namedtuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

# generated data sets: generator module, its output-folder flag, the configs' default root
DATASETS = {
    'coco_shapes': dict(module='lsnet_mm.datasets.demo.coco_shapes', flag='--root',
                        default='data/demo_coco'),
    'ade_scenes': dict(module='lsnet_mm.datasets.demo.ade_scenes', flag='--root',
                       default='data/demo_ade/ADEChallengeData2016'),
}
# demo models: config, data set, metrics shown in the summary (the first one is checked
# against the threshold), number format
MODELS = {
    'retinanet': dict(config='configs/demo/retinanet_lsnet_t_demo.py', data='coco_shapes',
                      metrics=('bbox_mAP', 'bbox_mAP_50'), fmt='.3f'),
    'mask_rcnn': dict(config='configs/demo/mask_rcnn_lsnet_t_demo.py', data='coco_shapes',
                      metrics=('bbox_mAP', 'bbox_mAP_50', 'segm_mAP'), fmt='.3f'),
    'fpn': dict(config='configs/demo/fpn_lsnet_t_demo.py', data='ade_scenes',
                metrics=('mIoU', 'mAcc', 'aAcc'), fmt='.2f'),
}
THRESHOLD_FLAGS = {'bbox_mAP': '--min-ap', 'mIoU': '--min-miou'}

# mmengine's LogProcessor: "Epoch(train)  [3][10/40]", "Epoch(test) [10/40]",
# "Iter(train) [ 25/300]", each followed by "... eta: 0:01:23 ..." in training
_EPOCH_RE = re.compile(r'Epoch\((train|val|test)\)\s*(?:\[\s*(\d+)\])?\s*\[\s*(\d+)/(\d+)\]')
_ITER_RE = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]')
_ETA_RE = re.compile(r'\beta: ((?:\d+ days?, )?\d+:\d\d:\d\d)')

Progress = namedtuple('Progress', 'mode epoch iter total eta')


class StepError(RuntimeError):
    """A demo step (data, train, test) that exited non-zero or left no result.

    Args:
        message (str): What failed.
        log (str): The step's log file.
    """

    def __init__(self, message, log):
        super().__init__(message)
        self.log = log


def parse_progress(line):
    """Read the progress of a run from one line of an mmengine log.

    Args:
        line (str): A line of the log (mmengine's iteration lines look like
            ``Epoch(train)  [3][10/40]  ... eta: 0:01:23 ...``,
            ``Iter(train) [ 25/300]  ...`` or ``Epoch(test) [10/40]  ...``).

    Returns:
        Progress | None: ``(mode, epoch, iter, total, eta)``: mode 'train', 'val' or
        'test'; the epoch (None on iteration-based loops and at test time); the
        iteration and the number of iterations of the epoch (epoch-based), of the run
        (iteration-based training) or of the evaluation; mmengine's eta string or None.
        None when the line is no iteration line.
    """
    eta = _ETA_RE.search(line)
    eta = eta.group(1) if eta else None
    m = _EPOCH_RE.search(line)
    if m:
        mode, epoch, it, total = m.groups()
        return Progress(mode, int(epoch) if epoch else None, int(it), int(total), eta)
    m = _ITER_RE.search(line)
    if m:
        mode, it, total = m.groups()
        return Progress(mode, None, int(it), int(total), eta)
    return None


def overall(progress, max_epochs=None):
    """Iterations done and planned in a run, from one progress reading.

    Args:
        progress (Progress): From :func:`parse_progress`.
        max_epochs (int, optional): The epochs of an epoch-based training run.

    Returns:
        tuple[int, int]: (done, total); for an epoch-based reading without
        ``max_epochs``, those of the current epoch.
    """
    if progress.epoch is not None and progress.mode == 'train' and max_epochs:
        n = progress.total
        return (progress.epoch - 1) * n + progress.iter, max_epochs * n
    return progress.iter, progress.total


class ProgressLine:
    """A step's progress on the terminal: on a TTY one line redrawn in place, otherwise a
    line at each quarter of training (25, 50, 75 %), then the closing line.

    Args:
        label (str): Who runs, e.g. 'retinanet'.
        step (str): What runs, e.g. 'train'.
        stream (file): Where to write; defaults to sys.stdout.
        width (int): Characters of the bar.
    """

    def __init__(self, label, step, stream=None, width=24):
        self.label = f'{label:<10} {step:<5}'
        self.step = step
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.width = width
        self.start = time.time()
        self.quarter = 0
        self.shown = 0
        if self.tty:
            self._draw(f'{self.label} starting')

    def _draw(self, text):
        pad = max(0, self.shown - len(text))
        self.stream.write('\r' + text + ' ' * pad)
        self.stream.flush()
        self.shown = len(text)

    def update(self, mode, done, total, eta=None):
        """Show ``done`` of ``total`` iterations of ``mode`` ('train', 'val', 'test').

        Args:
            mode (str): The loop the iterations belong to.
            done (int): Iterations done.
            total (int): Iterations planned.
            eta (str, optional): Remaining time as mmengine estimates it.
        """
        frac = min(1.0, done / total) if total else 0.0
        filled = int(round(frac * self.width))
        bar = '#' * filled + '-' * (self.width - filled)
        other = f'({mode}) ' if mode != self.step else ''  # validation during training
        text = (f'{self.label} {other}[{bar}] {done:>{len(str(total))}}/{total} {frac:4.0%} '
                f'{time.time() - self.start:5.0f} s')
        if eta:
            text += f'  eta {eta}'
        if self.tty:
            self._draw(text)
        elif mode == self.step == 'train' and int(frac * 4) > self.quarter and frac < 1:
            self.quarter = int(frac * 4)
            print(text, file=self.stream, flush=True)

    def close(self, text):
        """End the step's line with ``text``.

        Args:
            text (str): The closing words, after the label.
        """
        line = f'{self.label} {text}'
        if self.tty:
            self._draw(line)
            self.stream.write('\n')
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)


def shown_path(path):
    """``path`` relative to the repository root when it lies inside it (a relative path
    is one from the repository root already)."""
    if not osp.isabs(path):
        return path
    rel = osp.relpath(path, ROOT)
    return path if rel.startswith('..') else rel


def log_tail(path, lines=25):
    """The last ``lines`` lines of a log file (text)."""
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def run_step(label, cmd, log_path, env, display=None, max_epochs=None):
    """Run a command from the repository root with its whole output in a log file.

    Args:
        label (str): The step's name in messages, e.g. 'retinanet train'.
        cmd (list[str]): The command.
        log_path (str): The log file (written anew).
        env (dict): The environment.
        display (ProgressLine, optional): Fed with the iteration lines of the output.
        max_epochs (int, optional): For the progress of epoch-based training.

    Returns:
        tuple[float, float]: Wall and CPU (user + system) seconds.

    Raises:
        StepError: The command exited non-zero.
    """
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    t0, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, 'w', buffering=1) as log:  # line-buffered: `tail -f` follows it
        log.write('+ ' + shlex.join(cmd) + '\n')
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors='replace')
        with proc:
            for line in proc.stdout:
                log.write(line)
                progress = parse_progress(line) if display else None
                if progress:
                    display.update(progress.mode, *overall(progress, max_epochs),
                                   eta=progress.eta)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise StepError(f'{label} failed (exit code {proc.returncode})', log_path)
    return time.time() - t0, cpu


def data_options(name, root):
    """--cfg-options that point a demo config at another root of its data set.

    Args:
        name (str): Key of :data:`DATASETS`.
        root (str): The data set's folder.

    Returns:
        list[str]: key=value strings (none for the configs' own root).
    """
    if osp.normpath(root) == osp.normpath(DATASETS[name]['default']):
        return []
    if name == 'coco_shapes':
        root = root.rstrip('/') + '/'
        return [f'{k}.dataset.data_root={root}' for k in LOADERS] + [
            f'{k}.ann_file={root}annotations/instances_val.json'
            for k in ('val_evaluator', 'test_evaluator')]
    return [f'{k}.dataset.data_root={root}' for k in LOADERS]


def max_epochs_of(config, cfg_options):
    """``train_cfg.max_epochs`` of a config with options merged (None when the loop is
    iteration-based or the config does not load here; the progress then counts epochs)."""
    try:
        with warnings.catch_warnings():  # e.g. pkg_resources deprecation: not for this output
            warnings.simplefilter('ignore')
            from mmengine.config import Config, DictAction
            cfg = Config.fromfile(osp.join(ROOT, config), import_custom_modules=False)
        if cfg_options:
            parser = argparse.ArgumentParser()
            parser.add_argument('--o', nargs='+', action=DictAction)
            cfg.merge_from_dict(parser.parse_args(['--o', *cfg_options]).o)
        return cfg.train_cfg.get('max_epochs')
    except Exception:  # only the progress display depends on it
        return None


def run_model(name, work, opts, env):
    """Train and test one demo model.

    Args:
        name (str): Key of :data:`MODELS`.
        work (str): The demo's work dir (the model's is WORK/NAME).
        opts (list[str]): --cfg-options for tools/train.py and tools/test.py.
        env (dict): The environment of the steps.

    Returns:
        dict: config, work_dir, checkpoint, logs, train_s, test_s, cpu_s, metrics.

    Raises:
        StepError: A step failed or left no checkpoint / metrics.
    """
    spec = MODELS[name]
    wd, py = osp.join(work, name), sys.executable
    extra = ['--cfg-options', *opts] if opts else []
    logs = dict(train=osp.join(wd, 'train.log'), test=osp.join(wd, 'test.log'))

    line = ProgressLine(name, 'train')
    train_s, train_cpu = run_step(f'{name} train', [py, 'tools/train.py', spec['config'],
                                                    '--work-dir', wd, *extra],
                                  logs['train'], env, line, max_epochs_of(spec['config'], opts))
    line.close(f'done in {train_s:.0f} s; log: {shown_path(logs["train"])}')
    try:
        with open(osp.join(wd, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
    except OSError:
        raise StepError(f'{name} train left no checkpoint (no last_checkpoint file in '
                        f'{shown_path(wd)})', logs['train'])

    test_dir = osp.join(wd, 'test')
    # mmdet: the raw predictions too (mmseg's --out would write label maps)
    out = ['--out', osp.join(test_dir, 'predictions.pkl')] if 'bbox_mAP' in spec['metrics'] else []
    line = ProgressLine(name, 'test')
    test_s, test_cpu = run_step(f'{name} test', [py, 'tools/test.py', spec['config'], ckpt,
                                                 '--work-dir', test_dir, *out, *extra],
                                logs['test'], env, line)
    try:
        with open(osp.join(test_dir, 'metrics.json')) as f:
            metrics = {k.split('/')[-1]: v for k, v in json.load(f).items()}
    except (OSError, ValueError):
        raise StepError(f'{name} test left no metrics.json in {shown_path(test_dir)}',
                        logs['test'])
    shown = '  '.join(f'{k} {metrics[k]:{spec["fmt"]}}' for k in spec['metrics'][:1]
                      if isinstance(metrics.get(k), (int, float)))
    line.close(f'done in {test_s:.0f} s; {shown or "no metrics"}; '
               f'log: {shown_path(logs["test"])}')
    return dict(config=spec['config'], work_dir=wd, checkpoint=ckpt, logs=logs,
                train_s=round(train_s, 1), test_s=round(test_s, 1),
                cpu_s=dict(train=round(train_cpu, 1), test=round(test_cpu, 1)),
                metrics=metrics)


def summary(results, thresholds):
    """The summary table, and which models ended below their threshold.

    Args:
        results (dict): Per model name, the dict :func:`run_model` returns (``metrics``,
            ``train_s``, ``test_s`` are read).
        thresholds (dict): Minimum per metric name, e.g. ``{'bbox_mAP': 0.3,
            'mIoU': 40.0}``; a metric missing from a result counts as 0, a minimum of 0
            accepts anything.

    Returns:
        tuple[list[str], list[str]]: The table's lines, and one error line per model
        below its threshold (empty when all passed).
    """
    lines = [f'{"model":<10}  {"train s":>7}  {"test s":>6}  {"check":<5}  metrics']
    errors = []
    for name, r in results.items():
        spec = MODELS[name]
        m = r.get('metrics') or {}
        key = spec['metrics'][0]
        value = m.get(key)
        minimum = thresholds.get(key, 0)
        ok = (value if isinstance(value, (int, float)) else 0.0) >= minimum
        r['threshold'] = dict(metric=key, min=minimum, passed=ok)
        shown = '  '.join(f'{k} {m[k]:{spec["fmt"]}}' if isinstance(m.get(k), (int, float))
                          else f'{k} -' for k in spec['metrics'])
        lines.append(f'{name:<10}  {r["train_s"]:>7.0f}  {r["test_s"]:>6.0f}  '
                     f'{"ok" if ok else "LOW":<5}  {shown}')
        if not ok:
            flag = THRESHOLD_FLAGS.get(key, 'the threshold')
            errors.append(f'{name}: {key} {"missing" if value is None else value} is below '
                          f'{flag} {minimum}: the model did not learn '
                          f'(see {shown_path(r["logs"]["train"])})')
    return lines, errors


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].replace('\n', ' '))
    p.add_argument('--models', nargs='+', choices=list(MODELS), default=list(MODELS),
                   help='which demos to run, in this order (default: all)')
    p.add_argument('--work-dir', default='work_dirs/demo',
                   help='results, checkpoints and logs, one folder per model')
    p.add_argument('--threads', type=int,
                   help='PyTorch compute threads (OMP_NUM_THREADS) of the steps; default: '
                        '$OMP_NUM_THREADS or half the CPU cores (1 on 2 cores: a second '
                        'thread competing with the data loader made iterations 2-3x '
                        'slower there)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='passed on to tools/train.py and tools/test.py of every model')
    p.add_argument('--min-ap', type=float, default=0.3,
                   help='fail when a detector\'s final bbox_mAP is below this (0 disables)')
    p.add_argument('--min-miou', type=float, default=40.0,
                   help='fail when the segmentor\'s final mIoU (%%) is below this '
                        '(0 disables; chance is below 10)')
    for name, spec in DATASETS.items():
        short = name.split('_')[0]
        p.add_argument(f'--{short}-root', default=spec['default'],
                       help=f'where the {name} data set is (generated if absent; default: '
                            f'%(default)s)')
        p.add_argument(f'--{short}-args', default='', metavar='ARGS',
                       help=f'more arguments for "python -m {spec["module"]}", e.g. '
                            f'"--num-train 8"')
    return p.parse_args(argv)


def main(argv=None):
    """Run the demos; returns the exit status (0: all trained and passed)."""
    args = parse_args(argv)
    threads = args.threads or os.environ.get('OMP_NUM_THREADS') or max(
        1, (os.cpu_count() or 2) // 2)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    work = osp.join(ROOT, args.work_dir)  # unchanged when absolute
    os.makedirs(work, exist_ok=True)
    results_file = osp.join(work, 'demo_results.json')
    print(f'LSNet demo: {" ".join(args.models)}; {threads} compute thread(s); '
          f'logs and results in {shown_path(work)}', flush=True)

    t0 = time.time()
    report = dict(models={}, data={}, threads=int(threads), cpu_count=os.cpu_count())

    def save():
        report['total_s'] = round(time.time() - t0, 1)
        report['load_avg'] = list(os.getloadavg())
        with open(results_file, 'w') as f:
            json.dump(report, f, indent=1)

    try:
        opts = {}
        for name in dict.fromkeys(MODELS[m]['data'] for m in args.models):
            short = name.split('_')[0]
            root = getattr(args, f'{short}_root')
            spec = DATASETS[name]
            cmd = [sys.executable, '-m', spec['module'], spec['flag'], root,
                   *shlex.split(getattr(args, f'{short}_args'))]
            data_s, _ = run_step(f'data {name}', cmd, osp.join(work, f'data_{name}.log'), env)
            report['data'][name] = dict(root=root, s=round(data_s, 1))
            print(f'{"data":<10} {name} in {shown_path(root)}: ready in {data_s:.0f} s',
                  flush=True)
            opts[name] = data_options(name, root)
        for name in args.models:
            report['models'][name] = run_model(
                name, work, opts[MODELS[name]['data']] + list(args.cfg_options), env)
    except StepError as e:
        save()
        print(f'\nerror: {e}; the end of its log:\n{log_tail(e.log)}'
              f'error: {e}; full log: {shown_path(e.log)}', file=sys.stderr)
        return 1

    lines, errors = summary(report['models'],
                            {'bbox_mAP': args.min_ap, 'mIoU': args.min_miou})
    save()
    print('\n==== LSNet demo results (generated data, trained from scratch) ====')
    print('\n'.join(lines))
    print(f'total {report["total_s"]:.0f} s, {threads} compute thread(s); results: '
          f'{shown_path(results_file)}')
    for err in errors:
        print(f'error: {err}', file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
