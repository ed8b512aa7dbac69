"""The checks before a run: misspelled config keys and registry types, unwritable
outputs, missing checkpoints, and the one-line errors of the tools."""
import os
import os.path as osp
import stat

import pytest
from mmengine.config import Config

from lsnet_mm.apis import launch, preflight
from lsnet_mm.utils.errors import CheckpointError, ConfigError, DatasetError
from product_helpers import RETINA, ROOT, SEG


def _cfg(path, **overrides):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(overrides)
    return cfg


def test_misspelled_top_level_key_warns_with_the_closest(caplog):
    cfg = _cfg(RETINA)
    cfg['train_dataloder'] = dict(batch_size=1)
    cfg['my_own_variable'] = 3  # config variables far from any Runner key stay quiet
    warnings = preflight.check_config_keys(cfg)
    assert warnings == ["config key 'train_dataloder' is not a setting of mmengine's Runner "
                        "and is ignored; did you mean 'train_dataloader'?"]


def test_paper_and_demo_configs_have_no_unknown_key_or_type():
    for path in (RETINA, SEG):
        cfg = _cfg(path)
        assert preflight.check_config_keys(cfg) == []
        preflight.check_registry_types(cfg)  # nms / roi_layer types are not registry names


def test_misspelled_registry_type_names_path_and_closest():
    cfg = _cfg(RETINA, model=dict(bbox_head=dict(type='RetinaHed')))
    with pytest.raises(ConfigError) as e:
        preflight.check_registry_types(cfg)
    msg = str(e.value)
    assert "model.bbox_head.type='RetinaHed' is not registered in scope 'mmdet'" in msg
    assert "'RetinaHead'" in msg.split('closest registered names:')[1]


def test_misspelled_project_type_suggests_the_scoped_name():
    cfg = _cfg(RETINA)
    cfg.default_hooks.checkpoint.type = 'lsnet_mm.SafeCheckpoinHook'
    with pytest.raises(ConfigError, match=r"default_hooks\.checkpoint\.type="
                                          r"'lsnet_mm\.SafeCheckpoinHook'.*"
                                          r"'lsnet_mm\.SafeCheckpointHook'"):
        preflight.check_registry_types(cfg)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_unwritable_output_is_named(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(ConfigError, match=r"--out .*ro.* cannot be written"):
        preflight.check_outputs(Config(dict(work_dir=str(tmp_path / 'w'))),
                                [(str(ro / 'preds.pkl'), '--out', True)])


def test_output_path_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(ConfigError, match=r"--show-dir '.*file/vis' cannot be written"):
        preflight.check_outputs(Config(dict(work_dir=str(tmp_path / 'w'))),
                                [(str(blocker / 'vis'), '--show-dir', False)])
    with pytest.raises(ConfigError, match='is a folder; give a file name'):
        preflight.check_outputs(Config(dict(work_dir=str(tmp_path / 'w'))),
                                [(str(tmp_path), '--out', True)])
    assert not osp.exists(tmp_path / 'w')  # checked, not created: a refused run leaves nothing


def test_missing_local_checkpoint_names_the_setting(tmp_path):
    with pytest.raises(CheckpointError, match=r"load_from: checkpoint not found: '.*nope\.pth'"):
        preflight.prepare_checkpoint(str(tmp_path / 'nope.pth'), 'load_from')


def test_pretrained_entries_are_found_with_their_paths():
    cfg = _cfg(osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py'))
    cfg.model.neck.init_cfg = [dict(type='Xavier'), dict(type='Pretrained', checkpoint='n.pth')]
    assert preflight._pretrained_entries(cfg) == [
        ('model.backbone.init_cfg.checkpoint', cfg.model.backbone.init_cfg.checkpoint),
        ('model.neck.init_cfg[1].checkpoint', 'n.pth')]
    assert preflight._pretrained_entries(_cfg(RETINA)) == []  # the demo trains from scratch


def test_error_line_is_one_line():
    err = DatasetError('dataset check failed:\ntrain: a is broken\nval: b is missing')
    assert launch.error_line(err) == ('error: dataset check failed:; train: a is broken; '
                                      'val: b is missing')


def test_run_tool_exits_2_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv(launch.DEBUG_ENV, raising=False)

    def main():
        raise ConfigError('model.neck.in_channels=[1] does not fit: set it to [64]')
    with pytest.raises(SystemExit) as e:
        launch.run_tool(main)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == 'error: model.neck.in_channels=[1] does not fit: set it to [64]\n'


def test_run_tool_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv(launch.DEBUG_ENV, '1')

    def main():
        raise ConfigError('bad')
    with pytest.raises(ConfigError, match='bad'):
        launch.run_tool(main)


def test_run_tool_lets_bugs_through(monkeypatch):
    monkeypatch.delenv(launch.DEBUG_ENV, raising=False)

    def main():
        raise KeyError('a bug, not a user error')
    with pytest.raises(KeyError):
        launch.run_tool(main)
