"""Exported files as mmengine models (lsnet_mm.deploy.backend_model): tools/test.py
--backend (and a Runner built from a config given use_backend_model) scores the file with
the config's own evaluator, as tools/test.py scores the PyTorch checkpoint, and bad files
or modes are named (as one error line of the tool)."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.deploy import (
    LSNetBackendDetector,
    LSNetBackendSegmentor,
    export_end2end,
    prepare_for_export,
    use_backend_model,
)
from lsnet_mm.deploy.calibration import calibration_inputs
from lsnet_mm.utils.errors import ConfigError
from product_helpers import tool

pytestmark = pytest.mark.usefixtures('one_thread')
pytest.importorskip('onnxruntime')


def _float_file(trained, tmp_path):
    cfg = trained['cfg']
    model = prepare_for_export(build_model_from_cfg(cfg)[0], trained['checkpoint'], True)
    path = str(tmp_path / 'model.onnx')
    image = calibration_inputs(cfg, cfg, split='val', num=1)[0]
    export_end2end(model, path, torch.from_numpy(image), dynamic=True)
    return path


def _pytorch_metrics(trained, tmp_path, *extra):
    """tools/test.py on the checkpoint (the config's test set is its val set here)."""
    return _test_tool(trained, trained['checkpoint'], tmp_path / 'torch', *extra)


def _test_tool(trained, model_file, work_dir, *extra):
    """tools/test.py on a checkpoint or (with --backend) an exported file."""
    return tool('test').main([trained['config'], model_file, '--work-dir', str(work_dir),
                              *extra, '--cfg-options', *trained['opts']])


def _backend_runner(trained, path, backend, tmp_path):
    cfg = copy.deepcopy(trained['cfg'])
    use_backend_model(cfg, path, backend, threads=1)
    cfg.work_dir = str(tmp_path / f'backend_{backend}')
    return cfg, Runner.from_cfg(cfg)


def test_test_tool_scores_a_detector_file_as_the_checkpoint(trained_detector, tmp_path):
    """tools/test.py --backend on the float export: the same metric keys and COCO numbers,
    and the same detections per image (--out: mmdet's DumpDetResults in both runs, boxes
    in the original images' pixels), as tools/test.py on the checkpoint."""
    from mmengine import load

    from lsnet_mm.deploy.onnx_check import compare_detections
    path = _float_file(trained_detector, tmp_path)
    cfg, runner = _backend_runner(trained_detector, path, 'onnxruntime', tmp_path)
    assert type(runner.model) is LSNetBackendDetector and cfg.load_from is None
    assert cfg.model.model_file == path and cfg.model.mask_thr_binary == 0.5
    assert 'lsnet_mm.deploy.backend_model' in cfg.custom_imports['imports']
    metrics = _test_tool(trained_detector, path, tmp_path / 'onnx', '--backend', 'onnxruntime',
                         '--threads', '1', '--out', str(tmp_path / 'onnx.pkl'))
    ref = _pytorch_metrics(trained_detector, tmp_path, '--out', str(tmp_path / 'torch.pkl'))
    assert set(metrics) == set(ref) and 'coco/bbox_mAP' in ref
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert metrics[key] == pytest.approx(ref[key], abs=2e-3), key
    got, want = load(str(tmp_path / 'onnx.pkl')), load(str(tmp_path / 'torch.pkl'))
    assert [g['img_id'] for g in got] == [w['img_id'] for w in want] and len(got) == 2
    for g, w in zip(got, want):
        g, w = ({k: v.numpy() for k, v in d['pred_instances'].items()} for d in (g, w))
        assert len(w['scores']) > 3
        res = compare_detections(w, g, score_thr=0.05, max_per_img=50)
        assert res['ok'] and res['matched'] == len(w['scores']) == len(g['scores']), res


def _error_line(capsys, argv):
    """tools/test.py run as a command (launch.run_tool): its exit status and last stderr
    line."""
    from lsnet_mm.apis import launch
    test_tool = tool('test')
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: test_tool.main(argv))
    return e.value.code, capsys.readouterr().err.strip().splitlines()[-1]


def test_test_tool_names_exported_file_errors(trained_segmentor, tmp_path, capsys,
                                              monkeypatch):
    monkeypatch.delenv('LSNET_DEBUG', raising=False)
    config = trained_segmentor['config']
    common = ['--work-dir', str(tmp_path / 'work'), '--cfg-options', *trained_segmentor['opts']]
    xml = tmp_path / 'model.xml'
    xml.write_text('<net/>')
    assert _error_line(capsys, [config, str(xml), *common]) == (
        2, f'error: {xml} is an exported model, not a PyTorch checkpoint: evaluate it with '
           f'--backend onnxruntime or --backend openvino')
    missing = str(tmp_path / 'none.onnx')
    assert _error_line(capsys, [config, missing, '--backend', 'openvino', *common]) == (
        2, f'error: model file {missing!r} not found: export one with '
           f'tools/deployment/export_onnx.py or tools/deployment/quantize.py')
    code, line = _error_line(capsys, [config, str(xml), '--backend', 'onnxruntime', *common])
    assert code == 2 and line.startswith(f'error: {xml} is an OpenVINO IR file: run it with')
    code, line = _error_line(capsys, [config, str(xml), '--backend', 'openvino', '--deploy',
                                      *common])
    assert code == 2 and line.startswith('error: --deploy and --compile change the PyTorch')


def test_segmentor_file_scores_as_the_pytorch_model(trained_segmentor, tmp_path):
    """mIoU of the file in both runtimes within 1 point of PyTorch's (label maps resized to
    the 48x64 originals from the 96x128 network size by nearest neighbour, where mmseg
    resizes the logits)."""
    path = _float_file(trained_segmentor, tmp_path)
    ref = _pytorch_metrics(trained_segmentor, tmp_path)
    for backend in ('onnxruntime', 'openvino'):
        cfg, runner = _backend_runner(trained_segmentor, path, backend, tmp_path)
        assert type(runner.model) is LSNetBackendSegmentor
        # the config's top-level SegDataPreProcessor is not merged in: the graph normalises
        assert type(runner.model.data_preprocessor).__name__ == 'BaseDataPreprocessor'
        metrics = runner.test()
        assert set(metrics) == {'aAcc', 'mIoU', 'mAcc'}
        assert metrics['mIoU'] == pytest.approx(ref['mIoU'], abs=1.0), backend
        assert metrics['aAcc'] == pytest.approx(ref['aAcc'], abs=1.0), backend


def test_bad_files_and_modes_are_named(trained_segmentor, tmp_path):
    cfg = copy.deepcopy(trained_segmentor['cfg'])
    missing = str(tmp_path / 'none.onnx')
    with pytest.raises(ConfigError, match=f'model file {missing!r} not found: export one'):
        use_backend_model(cfg, missing, 'onnxruntime')
    xml = tmp_path / 'model.xml'
    xml.write_text('<net/>')
    with pytest.raises(ConfigError, match='is an OpenVINO IR file: run it with the openvino'):
        use_backend_model(cfg, str(xml), 'onnxruntime')
    with pytest.raises(ConfigError, match="runtime must be one of onnxruntime, openvino, got "
                                          "'tensorrt'"):
        use_backend_model(cfg, str(xml), 'tensorrt')
    assert cfg.model == trained_segmentor['cfg'].model  # unchanged on error
    path = _float_file(trained_segmentor, tmp_path)
    model = LSNetBackendSegmentor(path)
    assert osp.samefile(model.model_file, path) and not list(model.parameters())
    with pytest.raises(ConfigError, match="inference only .mode=predict., not mode='tensor'"):
        model([torch.zeros(3, 96, 128, dtype=torch.uint8)], [None], mode='tensor')
