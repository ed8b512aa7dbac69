"""Plot the loss, learning-rate and validation-metric curves of a training run.

    python tools/analysis_tools/plot_logs.py WORK_DIR [--out DIR]

Reads mmengine's scalar logs, WORK_DIR/<timestamp>/vis_data/scalars.json, written
by every run of tools/train.py (the configs' LocalVisBackend). A work dir trained
in several sessions (``--resume``) holds one such file per session: they are
merged in time order, and iterations a later session repeated (after resuming from
an earlier checkpoint) replace the earlier values. A truncated last line (a run
killed while logging) is skipped. Writes, to DIR (default WORK_DIR/plots):

* loss.png    - every logged loss term per training iteration (total loss in bold);
* lr.png      - the learning rate per iteration (log scale when it spans decades);
* metrics.png - each validation metric (COCO mAP..., mIoU/mAcc/aAcc) per epoch or
  iteration; only when the run validated.

WORK_DIR may also be a single run folder or a scalars.json file.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import sys

# bookkeeping keys of mmengine's logs, not curves
NOT_CURVES = {'iter', 'step', 'epoch', 'time', 'data_time', 'memory', 'eta', 'grad_norm',
              'base_lr'}


class LogError(RuntimeError):
    """No usable log: the message says what was looked for."""


def find_scalar_files(path):
    """scalars.json files of a work dir (oldest run first), a run folder or a file."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise LogError(f'not found: {path!r} (cwd {os.getcwd()!r}); give the work dir of a run '
                       f'(--work-dir of tools/train.py)')
    files = sorted(glob.glob(osp.join(path, 'vis_data', 'scalars.json')))
    files += sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise LogError(
            f'no vis_data/scalars.json under {path!r}. tools/train.py writes '
            f'WORK_DIR/<timestamp>/vis_data/scalars.json through mmengine\'s LocalVisBackend '
            f'(visualizer.vis_backends in the config); was this run trained with a config '
            f'without it, or did it stop before its first log line '
            f'(default_hooks.logger.interval)?')
    return files


def read_rows(files):
    """(train rows keyed by iteration, validation rows keyed by step, skipped lines)."""
    train, val, skipped = {}, {}, 0
    for path in files:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    skipped += 1  # e.g. the last line of a killed run
                    continue
                if not isinstance(row, dict):
                    skipped += 1
                    continue
                if 'lr' in row or any('loss' in k for k in row):
                    x = row.get('iter', row.get('step'))
                    if x is not None:
                        train[int(x)] = row
                elif 'step' in row:
                    val[int(row['step'])] = row
    return train, val, skipped


def _series(rows, keys):
    xs = sorted(rows)
    out = {}
    for k in keys:
        pts = [(x, rows[x][k]) for x in xs
               if isinstance(rows[x].get(k), (int, float)) and not isinstance(rows[x][k], bool)]
        if pts:
            out[k] = ([p[0] for p in pts], [float(p[1]) for p in pts])
    return out


def _keys(rows, pred):
    seen = []
    for r in rows.values():
        for k in r:
            if k not in seen and pred(k):
                seen.append(k)
    return seen


def collect(path):
    """Curves of a run: dict(loss={key: (x, y)}, lr={...}, metrics={...}, metric_x=str)."""
    train, val, skipped = read_rows(find_scalar_files(path))
    if not train:
        raise LogError(f'the logs under {path!r} hold no training iterations (no "loss"/"lr" '
                       f'entries)')
    loss = _series(train, _keys(train, lambda k: 'loss' in k))
    lr = _series(train, [k for k in ('lr', 'base_lr') if any(k in r for r in train.values())])
    if 'base_lr' in lr and lr['base_lr'] == lr.get('lr'):
        del lr['base_lr']
    metrics = _series(val, _keys(val, lambda k: k not in NOT_CURVES))
    for k, (xs, ys) in metrics.items():  # COCO reports -1 for an empty area range
        metrics[k] = (xs, [math.nan if y == -1 else y for y in ys])
    metrics = {k: v for k, v in metrics.items() if not all(math.isnan(y) for y in v[1])}
    by_epoch = any('epoch' in r for r in train.values())
    max_epoch = max((r.get('epoch', 0) for r in train.values()), default=0)
    metric_x = 'epoch' if by_epoch and val and max(val) <= max_epoch else 'iteration'
    return dict(loss=loss, lr=lr, metrics=metrics, metric_x=metric_x, skipped_lines=skipped,
                iterations=sorted(train))


def _figure(title, xlabel, ylabel):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, ax, path, legend=True):
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc='best')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot(path, out_dir=None):
    """Write loss.png, lr.png and (if the run validated) metrics.png; returns
    dict(files={name: path}, curves=collect(path))."""
    curves = collect(path)
    if out_dir is None:
        base = path if osp.isdir(path) else osp.dirname(osp.dirname(osp.dirname(path)))
        out_dir = osp.join(base, 'plots')
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    name = osp.basename(osp.abspath(path).rstrip(os.sep))

    plt, fig, ax = _figure(f'training losses ({name})', 'iteration', 'loss')
    for k, (xs, ys) in curves['loss'].items():
        marker = 'o' if len(xs) < 30 else None
        ax.plot(xs, ys, label=k, linewidth=2.2 if k == 'loss' else 1.2, marker=marker,
                markersize=3)
    files['loss'] = _save(plt, fig, ax, osp.join(out_dir, 'loss.png'))

    if curves['lr']:
        plt, fig, ax = _figure(f'learning rate ({name})', 'iteration', 'learning rate')
        for k, (xs, ys) in curves['lr'].items():
            ax.plot(xs, ys, label=k, marker='o' if len(xs) < 30 else None, markersize=3)
        pos = [y for _, ys in curves['lr'].values() for y in ys if y > 0]
        if pos and max(pos) / min(pos) > 20:
            ax.set_yscale('log')
        files['lr'] = _save(plt, fig, ax, osp.join(out_dir, 'lr.png'))

    if curves['metrics']:
        plt, fig, ax = _figure(f'validation metrics ({name})', curves['metric_x'], 'value')
        for k, (xs, ys) in curves['metrics'].items():
            ax.plot(xs, ys, label=k, marker='o', markersize=4)
        files['metrics'] = _save(plt, fig, ax, osp.join(out_dir, 'metrics.png'))
    return dict(files=files, curves=curves)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='work dir of a run, a run folder or a scalars.json file')
    p.add_argument('--out', help='output folder (default: WORK_DIR/plots)')
    args = p.parse_args(argv)
    res = plot(args.work_dir, args.out)
    c = res['curves']
    for k, f in res['files'].items():
        print(f'{k}: {f}')
    if not c['metrics']:
        print('no validation metrics in the logs (the run did not validate): no metrics.png')
    if c['skipped_lines']:
        print(f'skipped {c["skipped_lines"]} unreadable log line(s) (a run killed while logging)')
    return res


if __name__ == '__main__':
    try:
        main()
    except LogError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
