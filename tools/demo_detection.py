"""The detection demo, end to end on CPU: generate the shapes data set (if absent),
train RetinaNet-LSNet-T and Mask R-CNN-LSNet-T from scratch with tools/train.py,
evaluate the final checkpoints with tools/test.py (mmdet's CocoMetric), print the
metrics and the run times.

    .venv/bin/python tools/demo_detection.py                       # both detectors
    .venv/bin/python tools/demo_detection.py --models retinanet --work-dir work_dirs/demo

Results also go to WORK_DIR/demo_results.json. Exits non-zero if a step fails or a
detector's box AP stays below --min-ap (it did not learn).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'retinanet': 'configs/demo/retinanet_lsnet_t_demo.py',
    'mask_rcnn': 'configs/demo/mask_rcnn_lsnet_t_demo.py',
}
SHOWN = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50')


def run(cmd, env=None):
    print('+ ' + ' '.join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.time() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', choices=sorted(CONFIGS), default=['retinanet', 'mask_rcnn'])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/demo_coco')
    p.add_argument('--min-ap', type=float, default=0.3,
                   help='fail when the final bbox_mAP is below this (0 disables)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='passed on to tools/train.py and tools/test.py')
    p.add_argument('--threads', type=int,
                   help='PyTorch compute threads (OMP_NUM_THREADS); default: $OMP_NUM_THREADS '
                        'or half the CPU cores (1 on 2 cores: a second thread competing with '
                        'the data loader made iterations 2-3x slower there)')
    args = p.parse_args(argv)
    threads = args.threads or os.environ.get('OMP_NUM_THREADS') or max(1, (os.cpu_count() or 2) // 2)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    py = sys.executable
    work = osp.join(ROOT, args.work_dir) if not osp.isabs(args.work_dir) else args.work_dir

    t0 = time.time()
    data_opts = []
    if args.data_root.rstrip('/') != 'data/demo_coco':
        root = args.data_root.rstrip('/') + '/'
        data_opts = [f'{k}.dataset.data_root={root}' for k in
                     ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
            f'{k}.ann_file={root}annotations/instances_val.json'
            for k in ('val_evaluator', 'test_evaluator')]
    data_time = run([py, 'tools/make_demo_data.py', '--root', args.data_root])
    results = {}
    for name in args.models:
        cfg = CONFIGS[name]
        wd = osp.join(work, name)
        opts = data_opts + list(args.cfg_options)
        extra = ['--cfg-options', *opts] if opts else []
        train_time = run([py, 'tools/train.py', cfg, '--work-dir', wd, *extra], env)
        with open(osp.join(wd, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        test_time = run([py, 'tools/test.py', cfg, ckpt, '--work-dir', osp.join(wd, 'test'),
                         '--out', osp.join(wd, 'test', 'predictions.pkl'), *extra], env)
        with open(osp.join(wd, 'test', 'metrics.json')) as f:
            metrics = json.load(f)
        results[name] = dict(config=cfg, checkpoint=ckpt, train_s=round(train_time, 1),
                             test_s=round(test_time, 1),
                             metrics={k.split('/')[-1]: v for k, v in metrics.items()
                                      if k.split('/')[-1].startswith(('bbox', 'segm'))})
    total = time.time() - t0
    os.makedirs(work, exist_ok=True)
    with open(osp.join(work, 'demo_results.json'), 'w') as f:
        json.dump(dict(results=results, data_s=round(data_time, 1), total_s=round(total, 1),
                       threads=int(threads), cpu_count=os.cpu_count()), f, indent=1)

    print('\n==== LSNet detection demo (synthetic shapes, CPU, from scratch) ====')
    print(f'{"model":<10} {"train s":>8} {"test s":>7} ' + ' '.join(f'{k:>11}' for k in SHOWN))
    failed = []
    for name, r in results.items():
        m = r['metrics']
        print(f'{name:<10} {r["train_s"]:>8.0f} {r["test_s"]:>7.0f} '
              + ' '.join(f'{m[k]:>11.3f}' if k in m else f'{"-":>11}' for k in SHOWN))
        if m.get('bbox_mAP', 0.0) < args.min_ap:
            failed.append(name)
    print(f'total {total:.0f} s (data {data_time:.0f} s, {threads} compute thread(s)); results: '
          f'{osp.join(work, "demo_results.json")}')
    if failed:
        print(f'error: bbox_mAP below {args.min_ap} for {", ".join(failed)}: the detector did '
              f'not learn', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
