"""Plot the loss, learning-rate and validation-metric curves of a training run.

    python tools/analysis_tools/plot_logs.py WORK_DIR [--out DIR]
        [--reference AUTHORS_LOG.json [--reference-epoch-iters N]]

Reads mmengine's scalar logs, WORK_DIR/<timestamp>/vis_data/scalars.json, written
by every run of tools/train.py (the configs' LocalVisBackend). A work dir trained
in several sessions (``--resume``) holds one such file per session: they are
merged in time order, and iterations a later session repeated (after resuming from
an earlier checkpoint) replace the earlier values. A truncated last line (a run
killed while logging) is skipped. Writes, to DIR (default WORK_DIR/plots):

* loss.png    - every logged loss term per training iteration (total loss in bold);
* lr.png      - the learning rate per iteration (log scale when it spans decades);
* metrics.png - each validation metric (COCO mAP..., mIoU/mAcc/aAcc) per epoch or
  iteration; only when the run (or the reference) validated;
* curves.json - every series drawn, read back from the figures: for each picture a
  list of ``{"label", "source" ("run" or "reference"), "color", "linestyle", "x", "y"}``
  (NaN as null).

``--reference`` draws a published run beside this one, dashed, in the same colour as
the run's curve of the same name: a json log of mmdet 2 / mmseg 0.x, as the LSNet
authors published theirs (one JSON object per line, ``"mode": "train"`` rows with
``epoch``, ``iter``, ``lr`` and the losses, ``"mode": "val"`` rows with the metrics).
The x axes are aligned: an epoch-based mmdet 2 log counts ``iter`` from 1 in every
epoch, which becomes the global iteration ``(epoch - 1) * N + iter`` (N: the
iterations of one epoch, ``--reference-epoch-iters``, by default the largest iteration
logged in an epoch, which falls short of N by less than the logging interval; for
COCO train2017 at 16 images a step N is about 7330). Its metrics are renamed as mmdet 3
and mmseg 1 log them (``bbox_mAP`` -> ``coco/bbox_mAP``; ``mIoU``, ``mAcc`` and
``aAcc`` from fractions to percent). A run that accumulated gradients
(``optim_wrapper.accumulative_counts=K`` in its vis_data/config.py) is drawn per
optimizer step (iteration / K), the unit of the authors' 8-GPU runs.

WORK_DIR may also be a single run folder or a scalars.json file.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp

from lsnet_mm.apis.launch import run_tool
from lsnet_mm.utils.errors import ConfigError

# bookkeeping keys of mmengine's logs, not curves
NOT_CURVES = {'iter', 'step', 'epoch', 'time', 'data_time', 'memory', 'eta', 'grad_norm',
              'base_lr'}
# mmseg 0.x metrics (fractions) that mmseg 1.x logs in percent under the same name
PERCENT_METRICS = ('mIoU', 'mAcc', 'aAcc')
# mmdet 2 COCO metrics, logged by mmdet 3's CocoMetric as 'coco/<name>'
COCO_METRIC_PREFIXES = ('bbox_mAP', 'segm_mAP')
REFERENCE_FORMAT = ('a json log of mmdet 2 / mmseg 0.x (WORK_DIR/<timestamp>.log.json: one '
                    'JSON object per line, with "mode": "train" rows holding "epoch", "iter", '
                    '"lr" and the losses, and "mode": "val" rows holding the metrics)')


def find_scalar_files(path):
    """scalars.json files of a work dir (oldest run first), a run folder or a file."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise ConfigError(f'not found: {path!r} (cwd {os.getcwd()!r}); give the work dir of a '
                          f'run (--work-dir of tools/train.py)')
    files = sorted(glob.glob(osp.join(path, 'vis_data', 'scalars.json')))
    files += sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise ConfigError(
            f'no vis_data/scalars.json under {path!r}. tools/train.py writes '
            f'WORK_DIR/<timestamp>/vis_data/scalars.json through mmengine\'s LocalVisBackend '
            f'(visualizer.vis_backends in the config); was this run trained with a config '
            f'without it, or did it stop before its first log line '
            f'(default_hooks.logger.interval)?')
    return files


def read_json_lines(path):
    """(the JSON objects of a log file, number of lines that are not one)."""
    rows, skipped = [], 0
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
            if isinstance(row, dict):
                rows.append(row)
            else:
                skipped += 1
    return rows, skipped


def read_rows(files):
    """(train rows keyed by iteration, validation rows keyed by step, skipped lines)."""
    train, val, skipped = {}, {}, 0
    for path in files:
        rows, bad = read_json_lines(path)
        skipped += bad
        for row in rows:
            if 'lr' in row or any('loss' in k for k in row):
                x = row.get('iter', row.get('step'))
                if x is not None:
                    train[int(x)] = row
            elif 'step' in row:
                val[int(row['step'])] = row
    return train, val, skipped


def accumulative_counts(files):
    """``optim_wrapper.accumulative_counts`` of the run's latest session (1 if unset)."""
    from mmengine.config import Config
    configs = [osp.join(osp.dirname(f), 'config.py') for f in files]
    configs = [c for c in configs if osp.isfile(c)]
    if not configs:
        return 1
    cfg = Config.fromfile(configs[-1], import_custom_modules=False)
    return int((cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1))


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


def _per_step(series, k):
    """Series over iterations -> over optimizer steps (iteration / k)."""
    return {name: ([x / k for x in xs], ys) for name, (xs, ys) in series.items()}


def collect(path):
    """Curves of a run: dict(loss={key: (x, y)}, lr={...}, metrics={...}, metric_x=str,
    x_unit=str, accumulative_counts=int, ...)."""
    files = find_scalar_files(path)
    train, val, skipped = read_rows(files)
    if not train:
        raise ConfigError(f'the logs under {path!r} hold no training iterations (no "loss"/'
                          f'"lr" entries)')
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
    k = accumulative_counts(files)
    if k > 1:  # drawn per optimizer step
        loss, lr = _per_step(loss, k), _per_step(lr, k)
        if metric_x == 'iteration':
            metrics = _per_step(metrics, k)
    x_unit = f'optimizer step (iteration / {k})' if k > 1 else 'iteration'
    return dict(loss=loss, lr=lr, metrics=metrics, metric_x=metric_x, skipped_lines=skipped,
                iterations=sorted(train), accumulative_counts=k, x_unit=x_unit)


def reference_metric_name(key):
    """(name mmdet 3 / mmseg 1 log for an mmdet 2 / mmseg 0.x metric, scale), or None."""
    if key in PERCENT_METRICS:
        return key, 100.0
    if key.startswith(COCO_METRIC_PREFIXES):
        return f'coco/{key}', 1.0
    return None  # per-class IoU.* / Acc.*, copy-paste strings: not logged as scalars


def collect_reference(path, epoch_iters=None):
    """Curves of an authors' json log (mmdet 2 / mmseg 0.x) on the run's axes.

    Returns:
        dict: loss / lr ({key: (global iterations, values)}), metrics_by_epoch and
        metrics_by_iteration ({mmdet 3 / mmseg 1 name: (x, values)}), epoch_iters (the
        epoch length used, None for a log counting iterations globally) and
        skipped_lines (lines that are not a JSON object; a header line of environment
        and config without "mode" is passed over silently).
    """
    if not osp.isfile(path):
        raise ConfigError(f'--reference {path!r}: no such file; give {REFERENCE_FORMAT}.')
    rows, skipped = read_json_lines(path)
    rows = [r for r in rows if r.get('mode') in ('train', 'val')]
    train = [r for r in rows if r['mode'] == 'train' and isinstance(r.get('iter'), int)]
    if not train:
        raise ConfigError(f'--reference {path!r} holds no training rows; give '
                          f'{REFERENCE_FORMAT}.')
    # an epoch-based runner counts iterations from 1 again in each epoch
    restarts = any(b['iter'] < a['iter'] for a, b in zip(train, train[1:]))
    if restarts:
        epoch_iters = epoch_iters or max(r['iter'] for r in train)
    else:
        epoch_iters = None
    train_rows, val_by_epoch, val_by_iter, last_iter = {}, {}, {}, 0
    for r in rows:
        if r['mode'] == 'train':
            if not isinstance(r.get('iter'), int):
                continue
            epoch = r.get('epoch', 1)
            last_iter = (epoch - 1) * epoch_iters + r['iter'] if restarts else r['iter']
            train_rows[last_iter] = r
            continue
        named = {}
        for key, value in r.items():
            target = reference_metric_name(key)
            if target and isinstance(value, (int, float)) and not isinstance(value, bool):
                named[target[0]] = value * target[1]
        if named:
            epoch = r.get('epoch', 1)
            val_by_epoch[epoch] = named
            # validation after an epoch (its end) or after the last logged iteration
            val_by_iter[epoch * epoch_iters if restarts else last_iter] = named
    names = _keys(val_by_iter, lambda k: True)
    return dict(loss=_series(train_rows, _keys(train_rows, lambda k: 'loss' in k)),
                lr=_series(train_rows, ['lr']),
                metrics_by_epoch=_series(val_by_epoch, names),
                metrics_by_iteration=_series(val_by_iter, names),
                epoch_iters=epoch_iters, skipped_lines=skipped)


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


def _draw(ax, run, reference, **style):
    """The run's curves (solid), then the reference's (dashed, colour of the run's curve
    of the same name); returns [(label, source)] in drawing order."""
    colours = {}
    drawn = []
    for k, (xs, ys) in run.items():
        extra = dict(linewidth=2.2) if k == 'loss' else {}
        (line,) = ax.plot(xs, ys, label=k, **{**style, **extra})
        colours[k] = line.get_color()
        drawn.append('run')
    for k, (xs, ys) in (reference or {}).items():
        colour = dict(color=colours[k]) if k in colours else {}
        ax.plot(xs, ys, label=f'{k} (reference)', linestyle='--', linewidth=1.0, alpha=0.8,
                **colour)
        drawn.append('reference')
    return drawn


def _save(plt, fig, ax, path, sources, data):
    """Save the picture; record every line drawn (read back from the axes) in data."""
    from matplotlib.colors import to_hex
    data[osp.splitext(osp.basename(path))[0]] = [
        dict(label=line.get_label(), source=source, color=to_hex(line.get_color()),
             linestyle=line.get_linestyle(), x=[float(x) for x in line.get_xdata()],
             y=[None if math.isnan(y) else float(y) for y in line.get_ydata()])
        for line, source in zip(ax.get_lines(), sources)]
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc='best')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _markers(series, marker, threshold=30):
    return dict(marker=marker, markersize=3) if any(len(xs) < threshold
                                                    for xs, _ in series.values()) else {}


def plot(path, out_dir=None, reference=None, reference_epoch_iters=None):
    """Write loss.png, lr.png, metrics.png (if the run or the reference validated) and
    curves.json; returns dict(files={name: path}, curves=collect(path),
    reference=collect_reference(reference) or None)."""
    curves = collect(path)
    ref = collect_reference(reference, reference_epoch_iters) if reference else None
    if out_dir is None:
        base = path if osp.isdir(path) else osp.dirname(osp.dirname(osp.dirname(path)))
        out_dir = osp.join(base, 'plots')
    os.makedirs(out_dir, exist_ok=True)
    files, data = {}, {}
    name = osp.basename(osp.abspath(path).rstrip(os.sep))
    versus = f' vs {osp.basename(reference)}' if reference else ''

    plt, fig, ax = _figure(f'training losses ({name}{versus})', curves['x_unit'], 'loss')
    sources = _draw(ax, curves['loss'], ref and ref['loss'], **_markers(curves['loss'], 'o'))
    files['loss'] = _save(plt, fig, ax, osp.join(out_dir, 'loss.png'), sources, data)

    if curves['lr']:
        plt, fig, ax = _figure(f'learning rate ({name}{versus})', curves['x_unit'],
                               'learning rate')
        sources = _draw(ax, curves['lr'], ref and ref['lr'], **_markers(curves['lr'], 'o'))
        pos = [y for _, ys in curves['lr'].values() for y in ys if y > 0]
        if pos and max(pos) / min(pos) > 20:
            ax.set_yscale('log')
        files['lr'] = _save(plt, fig, ax, osp.join(out_dir, 'lr.png'), sources, data)

    ref_metrics = ref and ref['metrics_by_epoch' if curves['metric_x'] == 'epoch'
                              else 'metrics_by_iteration']
    if curves['metrics'] or ref_metrics:
        x_label = 'epoch' if curves['metric_x'] == 'epoch' else curves['x_unit']
        plt, fig, ax = _figure(f'validation metrics ({name}{versus})', x_label, 'value')
        sources = _draw(ax, curves['metrics'], ref_metrics, marker='o', markersize=4)
        files['metrics'] = _save(plt, fig, ax, osp.join(out_dir, 'metrics.png'), sources,
                                 data)
    files['curves'] = osp.join(out_dir, 'curves.json')
    with open(files['curves'], 'w') as f:
        json.dump(data, f)
    return dict(files=files, curves=curves, reference=ref)


def main(argv=None):
    """Plot a run's curves (and a reference log's); returns what :func:`plot` returns."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='work dir of a run, a run folder or a scalars.json file')
    p.add_argument('--out', help='output folder (default: WORK_DIR/plots)')
    p.add_argument('--reference', help='a published json log (mmdet 2 / mmseg 0.x format) '
                                       'to draw beside the run, e.g. the LSNet authors\'')
    p.add_argument('--reference-epoch-iters', type=int,
                   help='iterations per epoch of the reference run (epoch-based logs; '
                        'default: the largest iteration it logged in an epoch)')
    args = p.parse_args(argv)
    res = plot(args.work_dir, args.out, args.reference, args.reference_epoch_iters)
    c, ref = res['curves'], res['reference']
    for k, f in res['files'].items():
        print(f'{k}: {f}')
    if not c['metrics']:
        print('no validation metrics in the logs (the run did not validate)')
    if c['accumulative_counts'] > 1:
        print(f'the run accumulated gradients over {c["accumulative_counts"]} iterations: '
              f'drawn per optimizer step')
    if ref and ref['epoch_iters']:
        print(f'reference: an epoch-based log, drawn at (epoch - 1) x {ref["epoch_iters"]} + '
              f'iteration (--reference-epoch-iters to set the epoch length)')
    for what, n in (('log', c['skipped_lines']), ('reference', ref and ref['skipped_lines'])):
        if n:
            print(f'skipped {n} unreadable {what} line(s) (a run killed while logging)')
    return res


if __name__ == '__main__':
    run_tool(main)
