"""Every tool turns a user's mistake into one ``error:`` line and exit status 2, without a
traceback (``LSNET_DEBUG=1`` shows it): the tools' ``main`` run through
``lsnet_mm.apis.launch.run_tool`` as their ``__main__`` does, on a file that is not there.

(What each message says in detail is tested beside each tool's feature.)
"""
import os.path as osp

import pytest

from lsnet_mm.apis import launch
from product_helpers import ROOT, tool

RETINA_DEMO = osp.join(ROOT, 'configs', 'demo', 'retinanet_lsnet_t_demo.py')
MISSING = 'no_such_dir/missing.pth'

NO_CONFIG = osp.join(ROOT, 'configs', 'no_such_config.py')

#: tool -> (its arguments, what the error line must name); the tests run in an empty
#: folder, so the demo config's data (data/demo_coco/) is not there either
CASES = {
    'train': ([NO_CONFIG], NO_CONFIG),
    'test': ([RETINA_DEMO, MISSING], MISSING),
    'infer': ([osp.join(ROOT, 'docs', 'images'), RETINA_DEMO, '--weights', MISSING], MISSING),
    'misc/verify_dataset': ([RETINA_DEMO], 'data/demo_coco'),
    'model_converters/convert_checkpoint': ([MISSING, 'out.pth'], MISSING),
    'model_converters/reparameterize_model': ([RETINA_DEMO, MISSING, 'out.pth'], MISSING),
    'deployment/export_onnx': ([RETINA_DEMO, MISSING, '--out', 'out.onnx'], MISSING),
    'deployment/quantize': ([RETINA_DEMO, MISSING, '--out', 'out.xml'], MISSING),
    'analysis_tools/benchmark': ([NO_CONFIG], 'no_such_config'),
    'analysis_tools/plot_logs': (['no_such_dir'], 'no_such_dir'),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_one_error_line_and_status_2(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(launch.DEBUG_ENV, raising=False)
    main = tool(name).main
    argv, named = CASES[name]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: main(list(argv)))
    err = capsys.readouterr().err
    assert e.value.code == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith('error: ') and 'Traceback' not in err, err[-3000:]
    assert named in lines[-1], lines[-1]
    assert not list(tmp_path.iterdir()), 'a failed start leaves files behind'


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(launch.DEBUG_ENV, '1')
    main = tool('model_converters/convert_checkpoint').main
    with pytest.raises(Exception) as e:
        launch.run_tool(lambda: main([MISSING, 'out.pth']))
    assert not isinstance(e.value, SystemExit) and MISSING in str(e.value)
