"""Check the datasets of a config without training or testing (as mmpretrain's tool).

    python tools/misc/verify_dataset.py configs/retinanet_lsnet_t.py
    python tools/misc/verify_dataset.py CONFIG --phase test --workers 8 --no-cache
    python tools/misc/verify_dataset.py CONFIG --cfg-options train_dataloader.dataset.data_root=X

Runs the check that tools/train.py and tools/test.py run before a run starts
(lsnet_mm/datasets/verify.py): each dataset the phase reads is built through the
config's registries and what it loads is checked (images and label maps readable,
label maps of their image's size with values that are classes, annotation files,
ids, box values, class order, empty splits), and the heads' num_classes against the
dataset's classes. Prints one line per dataloader and a ``warning:`` line per
non-fatal finding; a problem prints ``error: ...`` (every problem found, naming the
files and the fix) and exits with status 2. The check runs even where the config
turns it off for the tools (``dataset_check = False``).
"""
import argparse
import sys

import lsnet_mm  # noqa: F401 (registers LSNet modules and datasets)
from lsnet_mm.apis.launch import load_tool_config, run_tool
from lsnet_mm.datasets.verify import check_num_classes, verify_datasets

PHASES = {'train': ['train'], 'test': ['test'], 'all': ['train', 'test']}


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Check the datasets of a config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--phase', choices=sorted(PHASES), default='all',
                        help='train: the train and val datasets; test: the test dataset; '
                             'all (default): both')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--workers', type=int, help='processes reading the files (default: '
                        'the config\'s dataset_check.workers, else the CPU count, at most 8)')
    parser.add_argument('--no-cache', action='store_true',
                        help='check every file again (and cache nothing)')
    return parser.parse_args(argv)


def main(argv=None):
    """Check; returns {phase: verify_datasets' result}."""
    args = parse_args(argv)
    cfg = load_tool_config(args.config, cfg_options=args.cfg_options)
    options = cfg.get('dataset_check')
    cfg.dataset_check = dict(options) if isinstance(options, dict) else {}
    cfg.dataset_check['enable'] = True
    if args.no_cache:
        cfg.dataset_check['cache_dir'] = None
    results = {}
    for phase in PHASES[args.phase]:
        check_num_classes(cfg, phase)
        results[phase] = verify_datasets(cfg, phase, workers=args.workers, quiet=True)
        for label, result in results[phase].items():
            for warning in result['warnings']:
                print(f'warning: {label}: {warning}', file=sys.stderr)
            print(f'{label}: {result["images"]} images, ok'
                  + (' (cached)' if result['cached'] else '')
                  + (f', {len(result["warnings"])} warnings' if result['warnings'] else ''),
                  flush=True)
    return results


if __name__ == '__main__':
    run_tool(main)
