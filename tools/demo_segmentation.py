"""The segmentation demo, end to end on CPU: generate the ADE20K-layout demo data (if
absent), train Semantic FPN-LSNet-T from scratch with tools/train.py, evaluate the
final checkpoint with tools/test.py (mmseg's IoUMetric), print mIoU / mAcc / aAcc
and the run times.

    .venv/bin/python tools/demo_segmentation.py
    .venv/bin/python tools/demo_segmentation.py --work-dir work_dirs/my_seg_demo --min-miou 50

Results also go to WORK_DIR/demo_results.json. Exits non-zero if a step fails or the
final mIoU stays below --min-miou (the model did not learn; chance is below 10).
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/demo/fpn_lsnet_t_demo.py'
DATA_ROOT = 'data/demo_ade/ADEChallengeData2016'
SHOWN = ('mIoU', 'mAcc', 'aAcc')


CPU_S = {}  # CPU seconds (user + system) of each step: comparable on a busy machine


def run(cmd, name):
    print('+ ' + ' '.join(cmd), flush=True)
    t = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_S[name] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)
    return time.time() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/seg_demo')
    p.add_argument('--data-root', default=DATA_ROOT,
                   help='where the generated data set is (written if absent)')
    p.add_argument('--min-miou', type=float, default=40.0,
                   help='fail when the final mIoU (%%) is below this (0 disables)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='passed on to tools/train.py and tools/test.py')
    args = p.parse_args(argv)
    py = sys.executable
    work = args.work_dir if osp.isabs(args.work_dir) else osp.join(ROOT, args.work_dir)

    t0 = time.time()
    data_time = run([py, '-m', 'lsnet_mm.datasets.demo_ade', '--out', args.data_root], 'data')
    opts = list(args.cfg_options)
    if args.data_root.rstrip('/') != DATA_ROOT:
        opts = [f'{k}.dataset.data_root={args.data_root}' for k in
                ('train_dataloader', 'val_dataloader', 'test_dataloader')] + opts
    extra = ['--cfg-options', *opts] if opts else []
    train_time = run([py, 'tools/train.py', CONFIG, '--work-dir', work, *extra], 'train')
    with open(osp.join(work, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    test_dir = osp.join(work, 'test')
    test_time = run([py, 'tools/test.py', CONFIG, ckpt, '--work-dir', test_dir, *extra], 'test')
    with open(osp.join(test_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    total = time.time() - t0
    result = dict(config=CONFIG, checkpoint=ckpt, metrics={k: metrics.get(k) for k in SHOWN},
                  data_s=round(data_time, 1), train_s=round(train_time, 1),
                  test_s=round(test_time, 1), total_s=round(total, 1), cpu_s=CPU_S,
                  load_avg=os.getloadavg())
    os.makedirs(work, exist_ok=True)
    with open(osp.join(work, 'demo_results.json'), 'w') as f:
        json.dump(result, f, indent=1)

    print('\n==== LSNet segmentation demo (generated ADE20K-layout scenes, CPU, from scratch) ====')
    print(f'{"model":<12} {"train s":>8} {"test s":>7} {"(cpu s)":>13} '
          + ' '.join(f'{k:>7}' for k in SHOWN))
    print(f'{"FPN-LSNet-T":<12} {train_time:>8.0f} {test_time:>7.0f} '
          f'{CPU_S["train"]:>6.0f} {CPU_S["test"]:>6.0f} '
          + ' '.join(f'{metrics[k]:>7.2f}' for k in SHOWN))
    print(f'total {total:.0f} s (data {data_time:.0f} s), load average at the end '
          f'{os.getloadavg()[0]:.1f}; results: {osp.join(work, "demo_results.json")}')
    if metrics.get('mIoU', 0.0) < args.min_miou:
        print(f'error: mIoU {metrics.get("mIoU")} below {args.min_miou}: the model did not '
              f'learn', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
