"""tools/train.py and tools/test.py run the dataset check before anything is built: a bad
dataset ends the command with exit status 2 and one ``error:`` line naming the file, with
no log folder, checkpoint or metrics written."""
import glob
import os
import os.path as osp

import cv2
import pytest
import torch

from lsnet_mm.apis import launch
from product_helpers import RETINA, SEG, det_opts, seg_opts, tiny_ade, tool

train_tool, test_tool = tool('train'), tool('test')


def fails(capsys, tool_mod, argv):
    """Run a tool as its command does; expect exit status 2; returns the error line."""
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: tool_mod.main([str(a) for a in argv]))
    assert e.value.code == 2
    err = capsys.readouterr().err
    # the error line may follow a logging.lastResort message of an earlier test's logger
    # whose stream pytest has closed: look for the line, not the start of stderr
    [line] = [s for s in err.splitlines() if s.startswith('error: dataset check failed')]
    return line


def test_train_stops_before_the_runner_on_a_missing_val_image(coco, tmp_path, capsys):
    missing = osp.join(coco, 'val', '000001.png')
    os.remove(missing)
    wd = str(tmp_path / 'wd')
    line = fails(capsys, train_tool, [RETINA, '--work-dir', wd, '--cfg-options',
                                      *det_opts(coco, val=True)])
    ann = osp.join(coco, 'annotations', 'instances_val.json')
    assert f'val_dataloader: 1 of the 2 images listed in {ann!r} are missing: {missing!r}' in line
    assert not glob.glob(osp.join(wd, '**', '*'), recursive=True)  # no run started


def test_test_stops_before_evaluation_on_a_bad_val_label_map(tmp_path, capsys):
    """A label value above the classes in a validation map: before, tools/test.py exited
    0 with a wrong mIoU (IoUMetric drops such pixels)."""
    ade = tiny_ade(str(tmp_path / 'ade'), num_train=2, num_val=2)
    seg = osp.join(ade, 'annotations', 'validation', 'ADE_val_00000002.png')
    lab = cv2.imread(seg, cv2.IMREAD_UNCHANGED)
    lab[0, 0] = 200
    cv2.imwrite(seg, lab)
    ckpt = tmp_path / 'any.pth'  # a readable file: the model is never built
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), ckpt)
    wd = tmp_path / 'wd'
    line = fails(capsys, test_tool, [SEG, ckpt, '--work-dir', wd, '--cfg-options',
                                     *seg_opts(ade)])
    assert f'test_dataloader: 1 of the 2 label maps hold values outside the 6 classes of this ' \
           f'dataset: {seg!r} holds value(s) [200]' in line
    assert not osp.exists(wd / 'metrics.json')
