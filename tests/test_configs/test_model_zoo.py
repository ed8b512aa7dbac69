"""The model zoo: configs/metafile.yml (OpenMMLab's model-index format) lists every paper
config with the authors' released checkpoints; each entry's config builds and fits the
entry; its numbers are the paper's; docs/model_zoo.md shows the same."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import lsnet_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RELEASE = 'https://huggingface.co/jameslahm/lsnet/resolve/main/'
# The LSNet paper's table (Wang et al., CVPR 2025): RetinaNet AP (AP50, AP75, APs, APm, APl),
# Mask R-CNN box / mask AP, Semantic FPN mIoU.
PAPER = {
    'retinanet': {'t': (34.2, 54.6, 35.2, 17.8, 37.1, 48.5),
                  's': (36.5, 57.3, 38.1, 20.3, 39.5, 51.0),
                  'b': (39.2, 60.0, 41.5, 22.1, 43.0, 52.9)},
    'mask_rcnn': {'t': (35.0, 32.7), 's': (37.4, 34.8), 'b': (40.8, 37.8)},
    'fpn': {'t': (40.1,), 's': (41.6,), 'b': (43.1,)},
}
METRICS = {'retinanet': ('box AP', 'box AP50', 'box AP75', 'box APs', 'box APm', 'box APl'),
           'mask_rcnn': ('box AP', 'mask AP'), 'fpn': ('mIoU',)}
TASKS = {'retinanet': [('Object Detection', 'COCO')],
         'mask_rcnn': [('Object Detection', 'COCO'), ('Instance Segmentation', 'COCO')],
         'fpn': [('Semantic Segmentation', 'ADE20K')]}
RELEASED = {'retinanet': 'retinanet', 'mask_rcnn': 'maskrcnn', 'fpn': 'semfpn'}
MODEL_TYPES = {'retinanet': 'RetinaNet', 'mask_rcnn': 'MaskRCNN', 'fpn': 'EncoderDecoder'}

with open(osp.join(ROOT, 'configs', 'metafile.yml')) as f:
    METAFILE = yaml.safe_load(f)
MODELS_BY_NAME = {m['Name']: m for m in METAFILE['Models']}


def kind_arch(name):
    """('retinanet' | 'mask_rcnn' | 'fpn', 't' | 's' | 'b') of an entry name."""
    kind, arch = name.split('_lsnet_')
    return kind, arch[0]


def metrics(entry):
    out = {}
    for result in entry['Results']:
        out.update(result['Metrics'])
    return out


def test_every_paper_config_has_one_entry():
    """All configs/*.py (the demo configs under configs/demo are CPU demos of no release)."""
    on_disk = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '*.py')))
    listed = [m['Config'] for m in METAFILE['Models']]
    assert sorted(listed) == on_disk and len(on_disk) == 9
    assert len(MODELS_BY_NAME) == 9
    assert all(osp.basename(m['Config']) == m['Name'] + '.py' for m in METAFILE['Models'])


def test_model_index_format():
    (collection,) = METAFILE['Collections']
    assert collection['Name'] == 'LSNet' and collection['README'] == 'docs/model_zoo.md'
    assert collection['Paper'] == dict(URL='https://arxiv.org/abs/2503.23135',
                                       Title='LSNet: See Large, Focus Small')
    assert osp.isfile(osp.join(ROOT, collection['README']))
    for m in METAFILE['Models']:
        assert set(m) == {'Name', 'In Collection', 'Config', 'Metadata', 'Results', 'Weights'}
        assert m['In Collection'] == 'LSNet'
        kind, _ = kind_arch(m['Name'])
        assert [(r['Task'], r['Dataset']) for r in m['Results']] == TASKS[kind]


@pytest.mark.parametrize('name', list(MODELS_BY_NAME))
def test_numbers_are_the_papers(name):
    kind, arch = kind_arch(name)
    assert metrics(MODELS_BY_NAME[name]) == dict(zip(METRICS[kind], PAPER[kind][arch]))


@pytest.mark.parametrize('name', list(MODELS_BY_NAME))
def test_entry_config_builds_and_fits_the_entry(name):
    entry, (kind, arch) = MODELS_BY_NAME[name], kind_arch(name)
    meta = entry['Metadata']
    cfg = Config.fromfile(osp.join(ROOT, entry['Config']))
    assert entry['Weights'] == f'{RELEASE}lsnet_{arch}_{RELEASED[kind]}.pth'
    assert meta['Pretrained'] == cfg.model.backbone.init_cfg.checkpoint == \
        f'{RELEASE}lsnet_{arch}.pth'
    assert meta['Batch Size'] == cfg.train_dataloader.batch_size * 8 == \
        cfg.auto_scale_lr.base_batch_size
    if kind == 'fpn':
        assert meta['Iterations'] == cfg.train_cfg.max_iters == 40000
        assert meta['Training Data'] == 'ADE20K' and 'ADE' in cfg.train_dataloader.dataset.type
    else:
        assert meta['Epochs'] == cfg.train_cfg.max_epochs == 12
        assert meta['Training Data'] == 'COCO' and cfg.train_dataloader.dataset.type == \
            'CocoDataset'
    assert meta['Architecture'][0] == f'LSNet-{arch.upper()}'
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == MODEL_TYPES[kind]
    assert type(model.backbone).__name__ == 'LSNet' and model.backbone.arch == arch


def doc_row(doc, entry):
    """The cells of the table row of an entry in docs/model_zoo.md, keyed by the header."""
    lines = doc.splitlines()
    (i,) = [i for i, line in enumerate(lines)
            if line.startswith(f'| [{entry["Name"]}](../{entry["Config"]}) |')]
    header = i
    while not lines[header].startswith('| config |'):  # the table's header, above the row
        header -= 1

    def cells(line):
        return [c.strip() for c in line.strip('|').split('|')]
    return dict(zip(cells(lines[header]), cells(lines[i])))


def test_model_zoo_page_shows_the_metafile():
    with open(osp.join(ROOT, 'docs', 'model_zoo.md')) as f:
        doc = f.read()
    for entry in METAFILE['Models']:
        row = doc_row(doc, entry)
        for key, value in metrics(entry).items():
            assert float(row[key]) == value, (entry['Name'], key)
        assert f'({entry["Weights"]})' in row['released checkpoint']
        assert f'({entry["Metadata"]["Pretrained"]})' in row['backbone (ImageNet weights)']
        assert float(row['memory (GB)']) == entry['Metadata']['Training Memory (GB)']
        # the command that evaluates the released model
        command = f'.venv/bin/python tools/test.py {entry["Config"]} {entry["Weights"]}'
        assert f'\n{command}  # needs ' in doc
