"""The recipe on many machines: tools/slurm_{train,test}.sh (srun, mmengine's slurm
launcher) and tools/dist_{train,test}.sh on several nodes (torchrun), run with recording
stand-ins for srun and python that write the command line they were given."""
import os
import os.path as osp
import stat
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECORDER = '#!/bin/sh\nfor a in "$@"; do echo "$a"; done > "$RECORD"\n'


@pytest.fixture
def recorders(tmp_path):
    """(environment with a recording srun on PATH and a recording PYTHON, reader)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in ('srun', 'python'):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', PYTHON=str(bin_dir / 'python'),
               RECORD=str(tmp_path / 'argv'))
    for key in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'NNODES', 'NODE_RANK',
                'MASTER_ADDR', 'PORT', 'LSNET_TOOL'):
        env.pop(key, None)

    def run(script, *args, **settings):
        proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                              env=dict(env, **settings), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return (tmp_path / 'argv').read_text().splitlines()
    return env, run


def test_slurm_train_starts_one_task_per_gpu_over_the_nodes(recorders):
    env, run = recorders
    argv = run('slurm_train.sh', 'gpu', 'lsnet', 'configs/retinanet_lsnet_t.py', 'work_dirs/r',
               '--auto-scale-lr', GPUS='16', SRUN_ARGS='--time=1:00:00 --quotatype=auto')
    assert argv == ['-p', 'gpu', '--job-name=lsnet', '--gres=gpu:8', '--ntasks=16',
                    '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                    '--time=1:00:00', '--quotatype=auto', env['PYTHON'], '-u',
                    osp.join(ROOT, 'tools', 'train.py'), 'configs/retinanet_lsnet_t.py',
                    '--work-dir=work_dirs/r', '--launcher=slurm', '--auto-scale-lr']
    # fewer GPUs than a node holds: one node of that many
    argv = run('slurm_train.sh', 'gpu', 'j', 'c.py', 'wd', GPUS='2', CPUS_PER_TASK='8')
    assert argv[3:7] == ['--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2',
                         '--cpus-per-task=8']


def test_slurm_test_passes_the_checkpoint_to_the_test_tool(recorders):
    env, run = recorders
    url = 'https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t_retinanet.pth'
    argv = run('slurm_test.sh', 'gpu', 'ev', 'configs/retinanet_lsnet_t.py', url, '--out', 'r.pkl')
    assert argv[:6] == ['-p', 'gpu', '--job-name=ev', '--gres=gpu:8', '--ntasks=8',
                        '--ntasks-per-node=8']
    assert argv[argv.index('-u') + 1:] == [
        osp.join(ROOT, 'tools', 'test.py'), 'configs/retinanet_lsnet_t.py', url,
        '--launcher=slurm', '--out', 'r.pkl']


def test_slurm_scripts_need_their_four_arguments(recorders):
    env, _ = recorders
    for script in ('slurm_train.sh', 'slurm_test.sh'):
        proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), 'gpu', 'job', 'c.py'],
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.startswith('usage: bash ')
        assert not osp.exists(env['RECORD'])  # srun never started


@pytest.mark.parametrize('script, args, tool', [
    ('dist_train.sh', ['configs/fpn_lsnet_t_ade20k.py', '8', '--auto-scale-lr'], 'train.py'),
    ('dist_test.sh', ['configs/fpn_lsnet_t_ade20k.py', 'ckpt.pth', '8'], 'test.py'),
])
def test_torchrun_on_the_second_of_two_nodes(recorders, script, args, tool):
    _, run = recorders
    argv = run(script, *args, NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1', PORT='29600')
    tail = ['--auto-scale-lr'] if tool == 'train.py' else ['ckpt.pth']
    assert argv == ['-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
                    '--master_addr=10.0.0.1', '--nproc_per_node=8', '--master_port=29600',
                    osp.join(ROOT, 'tools', tool), 'configs/fpn_lsnet_t_ade20k.py',
                    '--launcher', 'pytorch', *tail]
