"""The commands of README.md and docs/*.md run as written (issue 21).

Every command of the docs' shell blocks (and every inline one, e.g. `` `.venv/bin/python
tools/x.py ...` ``) is checked:

- no bare ``python`` / ``pip`` (the README's set-up installs into ``.venv/``);
- every script, config, test file and module it names exists;
- every flag is one that tool's argument parser takes (read from its ``--help``, run
  in-process), for the wrappers too (``tools/dist_train.sh`` -> ``tools/train.py``, ...);
- sample inputs are bundled files or files the demo generates (``data/demo_coco/...``,
  ``data/demo_ade/...``: matched against freshly generated data sets), never an image
  the user does not have; a demo checkpoint path is one that the demo writes;
- a command that needs what CI lacks says so in a comment on its line (``# needs COCO``,
  ``# needs ADE20K``, ``# needs a GPU``, ``# needs internet``, ``# needs Slurm``; several
  joined by commas): required when it names a paper config with a dataset, a URL,
  ``--amp``, a CUDA device, ``pip install``/``wget`` or Slurm. Marked commands are not
  run; their paths and flags are checked all the same.

The cheap ones run: ``--help`` of every tool the docs name, and the documented data
generators (into a temporary folder). The demo training itself is run small by
tests/test_tools/test_demo.py.
"""
import contextlib
import functools
import glob
import importlib
import importlib.util
import io
import os
import os.path as osp
import re
import shlex
import sys

import pytest

from product_helpers import ROOT

DOCS = ['README.md'] + sorted(osp.relpath(p, ROOT)
                              for p in glob.glob(osp.join(ROOT, 'docs', '*.md')))
PYTHON = '.venv/bin/python'
SHELL_LANGS = ('bash', 'sh', 'shell', 'console')
LAUNCHERS = re.compile(r'^(\S*/)?(python3?|pip3?|bash)$|^\.venv/bin/|^\$\{?PY')
# the Python of another machine (the GPU machine of docs/benchmarks.md), named by a variable
OTHER_PYTHON = re.compile(r'^\$\{?PY(THON)?\}?$')
ENV_ASSIGN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')
FLAG = re.compile(r'^--?[A-Za-z][\w-]*$')
NEEDS = re.compile(r'#\s*needs\s+(.*)$')
NEEDS_WORDS = re.compile(r"^(COCO|ADE20K|a GPU|\d+ GPUs?|internet|Slurm)$")
IMAGE = re.compile(r'\.(jpe?g|png|bmp)$', re.I)
# placeholders the docs use for the user's own files and values (CONFIG, CKPT, DIR, ...)
PLACEHOLDER = re.compile(r'^[A-Z][A-Z_0-9.]*$|(^|/)[A-Z][A-Z_0-9]*\.\w+$')
OUTPUT_FLAGS = ('--out', '--out-dir', '--work-dir', '--float-out', '--show-dir')
REPO_PREFIXES = ('configs/', 'tools/', 'tests/', 'docs/', 'lsnet_mm/')
DEMO_DATA = {'data/demo_coco': 'lsnet_mm.datasets.demo.coco_shapes',
             'data/demo_ade/ADEChallengeData2016': 'lsnet_mm.datasets.demo.ade_scenes'}
# wrapper script -> (the tool it runs, how many positional words precede its flags,
# which of them is the config)
WRAPPERS = {
    'tools/dist_train.sh': ('tools/train.py', 2, 0),
    'tools/dist_test.sh': ('tools/test.py', 3, 0),
    'tools/slurm_train.sh': ('tools/train.py', 4, 2),
    'tools/slurm_test.sh': ('tools/test.py', 4, 2),
    'tools/run_demo.sh': ('tools/demo.py', 0, None),
    'tools/run_tests.sh': ('module:pytest', 0, None),
    'tools/setup.sh': (None, 0, None),
}
DATA_TOOLS = ('tools/train.py', 'tools/test.py', 'tools/misc/verify_dataset.py',
              'tools/deployment/quantize.py')


# ---------------------------------------------------------------- extraction
def _blocks(text):
    """(language, first line number, lines) of every fenced code block."""
    out, cur = [], None
    for n, line in enumerate(text.splitlines(), 1):
        fence = re.match(r'^\s*```\s*([\w+-]*)', line)
        if fence:
            if cur is None:
                cur = (fence.group(1).lower(), n + 1, [])
            else:
                out.append(cur)
                cur = None
        elif cur is not None:
            cur[2].append(line)
    assert cur is None, 'unclosed code block'
    return out


def _outside_blocks(text):
    """The text outside fenced code blocks (block lines blanked)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r'^\s*```', line):
            inside = not inside
            out.append('')
        else:
            out.append('' if inside else line)
    return '\n'.join(out)


def _first_word(text):
    for w in text.split():
        if not ENV_ASSIGN.match(w):
            return w
    return ''


class Cmd:
    """One documented command: where it is, its text, its `# needs` words."""

    def __init__(self, doc, line, text, inline):
        self.doc, self.line, self.text, self.inline = doc, line, text, inline
        m = NEEDS.search(text)
        # "# needs COCO, a GPU: remarks" or "# needs COCO (remarks)"
        what = re.split(r'[(:;]', m.group(1))[0] if m else ''
        self.needs = [w.strip() for w in re.split(r',|\band\b', what) if w.strip()]

    @property
    def where(self):
        return f'{self.doc}:{self.line}'

    def __repr__(self):
        return f'{self.where}: {self.text}'


def doc_commands():
    """Every shell command of the docs: the lines of shell blocks, the command-like lines
    of unmarked / text blocks, and inline code that starts like a command."""
    found = []
    for doc in DOCS:
        with open(osp.join(ROOT, doc)) as f:
            text = f.read()
        for lang, start, lines in _blocks(text):
            if lang not in SHELL_LANGS + ('', 'text'):
                continue
            buf, first = '', None
            for n, line in enumerate(lines, start):
                if first is None:
                    first = n
                if line.rstrip().endswith('\\'):
                    buf += line.rstrip()[:-1] + ' '
                    continue
                cmd = (buf + line).strip()
                buf, line_no, first = '', first, None
                if not cmd or cmd.startswith('#'):
                    continue
                if lang in SHELL_LANGS or LAUNCHERS.match(_first_word(cmd)):
                    found.append(Cmd(doc, line_no, cmd, inline=False))
        prose = _outside_blocks(text)
        for m in re.finditer(r'`([^`]+)`', prose):
            span = ' '.join(m.group(1).split())
            words = span.split()
            first = _first_word(span)
            if len(words) < 2 or not (LAUNCHERS.match(first)
                                      or re.match(r'^tools/\S+\.py$', first)):
                continue
            found.append(Cmd(doc, prose.count('\n', 0, m.start()) + 1, span, inline=True))
    return found


COMMANDS = doc_commands()


def _ids(cmd):
    return f'{cmd.where} {cmd.text[:50]}'


def _words(text):
    """The command's words before its comment, shell quoting respected; the brackets
    of optional arguments (``[--out DIR]``) dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=';&|')
    lexer.whitespace_split = True
    lexer.commenters = '#'
    out = [w.strip('[]') for w in lexer]
    return [w for w in out if w and w != '...']


def _segments(words):
    """The simple commands of a command line (split at ``&&``, ``||``, ``;``), each
    without its leading environment assignments."""
    segs, cur = [], []
    for w in words + [';']:
        if w in ('&&', '||', ';', '&', '|'):
            while cur and ENV_ASSIGN.match(cur[0]):
                cur.pop(0)
            if cur:
                segs.append(cur)
            cur = []
        else:
            cur.append(w)
    return segs


def invocations(cmd):
    """(tool, args, config position or None, launcher words) for each tool the command
    runs: tool is 'tools/x.py' or 'module:name'."""
    out = []
    for seg in _segments(_words(cmd.text)):
        head = seg[0]
        if head == PYTHON or OTHER_PYTHON.match(head):
            if seg[1:2] == ['-m'] and len(seg) > 2:
                out.append(('module:' + seg[2], seg[3:], None, seg))
            elif len(seg) > 1 and seg[1].endswith('.py'):
                out.append((seg[1], seg[2:], 0, seg))
        elif re.match(r'^tools/\S+\.py$', head) and cmd.inline:
            out.append((head, seg[1:], 0, seg))
        elif head == 'bash' and len(seg) > 1 and seg[1] in WRAPPERS:
            tool_, npos, cfg = WRAPPERS[seg[1]]
            if tool_ is not None:
                pos = seg[2:2 + npos]
                args = ([pos[cfg]] if cfg is not None and len(pos) > cfg else []) \
                    + seg[2 + npos:]
                out.append((tool_, args, 0 if cfg is not None else None, seg))
    return out


# ------------------------------------------------------------------ --help
def _load_tool(path):
    name = 'lsnet_doc_tool_' + re.sub(r'\W', '_', path)
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@functools.lru_cache(maxsize=None)
def tool_help(target):
    """The ``--help`` text of a tool script or module, run in-process."""
    path, environ = list(sys.path), dict(os.environ)
    try:  # a tool may extend sys.path when imported: leave the test process as it was
        mod = importlib.import_module(target[len('module:'):]) if target.startswith(
            'module:') else _load_tool(target)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
            mod.main(['--help'])
    finally:
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)
    assert e.value.code in (0, None), f'{target} --help exited with {e.value.code}'
    return buf.getvalue()


def tool_flags(target):
    """The option strings of a tool's parser, from the option lines of its help."""
    flags = set()
    for line in tool_help(target).splitlines():
        m = re.match(r'^\s{2,}(-\S.*?)(\s{2,}|$)', line)
        if m:
            flags.update(re.findall(r'(?<![\w-])(--?[A-Za-z][\w-]*)', m.group(1)))
    return flags


TOOLS = sorted({t for c in COMMANDS for t, *_ in invocations(c)} - {'module:pytest',
                                                                      'module:pip'})


def test_docs_have_commands():
    assert len(COMMANDS) > 60, COMMANDS
    assert len(TOOLS) >= 10, TOOLS
    assert all(doc in {c.doc for c in COMMANDS} for doc in ('README.md',
                                                           'docs/deployment.md'))


@pytest.mark.parametrize('target', TOOLS)
def test_help_of_every_documented_tool_runs(target):
    if target.startswith('module:'):
        assert importlib.util.find_spec(target[len('module:'):]), f'no module {target}'
    else:
        assert osp.isfile(osp.join(ROOT, target)), f'{target} does not exist'
    assert 'usage:' in tool_help(target)


# ------------------------------------------------------------ the commands
def bare_python_problems(cmd):
    """A bare ``python`` / ``pip`` runs outside .venv/ (ModuleNotFoundError: lsnet_mm)."""
    out = []
    for seg in _segments(_words(cmd.text)):
        head = seg[1] if seg[0] in ('bash', 'exec', 'sudo') and len(seg) > 1 else seg[0]
        if re.match(r'^(python3?|pip3?)$', head):
            out.append(f'{cmd.where}: bare {head} in {cmd.text!r}: use {PYTHON} (the README '
                       f'set-up installs into .venv/)')
    return out


def _repo_path_exists(p):
    return bool(glob.glob(osp.join(ROOT, p.split('::')[0])))


def path_and_flag_problems(cmd):
    """Scripts, modules, repository paths and flags that do not exist."""
    out = []
    for seg in _segments(_words(cmd.text)):
        if seg[0] == 'bash' and len(seg) > 1 and not osp.isfile(osp.join(ROOT, seg[1])):
            out.append(f'{cmd.where}: {seg[1]} does not exist')
        if seg[0].startswith('.venv/bin/') and seg[0].split('/')[-1] not in (
                'python', 'pip', 'ruff', 'pytest'):
            out.append(f'{cmd.where}: tools/setup.sh installs no {seg[0]}')
    for target, args, _, _ in invocations(cmd):
        if target.startswith('module:'):
            if not importlib.util.find_spec(target[len('module:'):]):
                out.append(f'{cmd.where}: no module {target[7:]} ({cmd.text!r})')
                continue
        elif not osp.isfile(osp.join(ROOT, target)):
            out.append(f'{cmd.where}: {target} does not exist ({cmd.text!r})')
            continue
        for prev, a in zip([''] + args, args):
            value = a.split('=', 1)[-1] if a.startswith('--') else a
            if prev in OUTPUT_FLAGS or a.split('=', 1)[0] in OUTPUT_FLAGS:
                continue  # written by the command
            if value.startswith(REPO_PREFIXES) and not PLACEHOLDER.search(value) and \
                    not _repo_path_exists(value):
                out.append(f'{cmd.where}: {value} does not exist ({cmd.text!r})')
        if target in ('module:pytest', 'module:pip'):
            continue
        known = tool_flags(target)
        for a in args:
            flag = a.split('=', 1)[0]
            if FLAG.match(flag) and flag not in known:
                out.append(f'{cmd.where}: {target} has no flag {flag} ({cmd.text!r}); it '
                           f'takes {sorted(known)}')
    return out


def _required_needs(cmd):
    """What the command needs beyond the README's set-up and the demo."""
    need = set()
    for seg in _segments(_words(cmd.text)):
        pip = seg[1:3] == ['-m', 'pip'] and seg[3:] or seg[0].endswith(('pip', 'pip3')) \
            and seg[1:]
        if seg[0] == 'wget' or pip and (pip[0] == 'download' or pip[0] == 'install' and not
                                        {'--no-index', '--no-deps'} & set(pip)):
            need.add('internet')
        if seg[0] == 'bash' and seg[1:2] and 'slurm' in seg[1]:
            need.add('Slurm')
    for target, args, cfg_pos, _ in invocations(cmd):
        if any(a.startswith('https://') or '=https://' in a for a in args):
            need.add('internet')
        cuda = any(a == '--device' and nxt.startswith('cuda') or a.startswith('--device=cuda')
                   for a, nxt in zip(args, args[1:] + ['']))
        if '--amp' in args or cuda or target.endswith('gpu_check.py') and not \
                {'--smoke', '--help'} & set(args):
            need.add('a GPU')
        config = args[cfg_pos] if cfg_pos is not None and len(args) > cfg_pos else ''
        if target in DATA_TOOLS and config.startswith('configs/') and \
                not config.startswith('configs/demo/') and '--help' not in args:
            need.add('ADE20K' if 'ade20k' in config else 'COCO')
    return need


def needs_problems(cmd):
    """A command that needs a dataset, a GPU, internet or Slurm and does not say so."""
    out = [f'{cmd.where}: unknown "# needs {w}" (say COCO, ADE20K, a GPU, N GPUs, internet '
           f'or Slurm, joined by commas)' for w in cmd.needs if not NEEDS_WORDS.match(w)]
    have = set(cmd.needs) | ({'a GPU'} if any(re.match(r'\d+ GPUs?', w) for w in cmd.needs)
                             else set())
    missing = _required_needs(cmd) - have
    if missing:
        out.append(f'{cmd.where}: {cmd.text!r} needs {", ".join(sorted(missing))}: say so '
                   f'with a "# needs ..." comment on its line')
    return out


@pytest.mark.parametrize('cmd', COMMANDS, ids=_ids)
def test_no_bare_python(cmd):
    assert not bare_python_problems(cmd)


@pytest.mark.parametrize('cmd', COMMANDS, ids=_ids)
def test_paths_and_flags_exist(cmd):
    assert not path_and_flag_problems(cmd)


@pytest.mark.parametrize('cmd', [c for c in COMMANDS if not c.inline], ids=_ids)
def test_what_a_command_needs_is_marked(cmd):
    assert not needs_problems(cmd)


def test_the_checks_catch_drift():
    """Each check fails on the kind of drift issue 21 found."""
    def c(text, inline=False):
        return Cmd('X.md', 1, text, inline)
    assert bare_python_problems(c('python tools/train.py configs/demo/fpn_lsnet_t_demo.py'))
    assert bare_python_problems(c('OMP_NUM_THREADS=1 pip install x'))
    assert not bare_python_problems(c(f'{PYTHON} tools/train.py CONFIG'))
    assert path_and_flag_problems(c(f'{PYTHON} tools/train.py CONFIG --no-such-flag'))
    assert path_and_flag_problems(c('bash tools/dist_train.sh CONFIG 8 --no-such-flag'))
    assert path_and_flag_problems(c(f'{PYTHON} tools/test.py configs/no_such.py CKPT'))
    assert path_and_flag_problems(c(f'{PYTHON} tools/no_such_tool.py --help'))
    assert path_and_flag_problems(c(f'{PYTHON} -m pytest tests/test_no_such_*.py'))
    assert path_and_flag_problems(c('tools/test.py CONFIG CKPT --no-such', inline=True))
    assert path_and_flag_problems(c(f'{PYTHON} -m lsnet_mm.datasets.demo.ade_scenes --nope'))
    assert not path_and_flag_problems(c(f'{PYTHON} tools/demo.py --work-dir W --models fpn'))
    assert needs_problems(c(f'{PYTHON} tools/train.py configs/retinanet_lsnet_t.py'))
    assert needs_problems(c(f'{PYTHON} tools/test.py configs/fpn_lsnet_t_ade20k.py C'
                            f'  # needs COCO'))
    assert needs_problems(c(f'{PYTHON} tools/infer.py x.png CONFIG --weights https://x/y.pth'))
    assert needs_problems(c(f'{PYTHON} tools/train.py CONFIG --amp  # needs a PGU'))
    assert not needs_problems(c(f'{PYTHON} tools/test.py configs/fpn_lsnet_t_ade20k.py '
                                f'https://x/y.pth  # needs ADE20K, internet'))
    assert not needs_problems(c('bash tools/dist_train.sh configs/mask_rcnn_lsnet_t.py 8  '
                                '# needs COCO, 8 GPUs'))


# ---------------------------------------------- sample inputs, checkpoints
@functools.lru_cache(maxsize=None)
def _generate(module, args, out):
    """Run a data generator in-process with its documented arguments into ``out``."""
    argv = list(args)
    for flag in ('--root', '--out'):
        if flag in argv:
            del argv[argv.index(flag):argv.index(flag) + 2]
    importlib.import_module(module).main(argv + ['--root', out])
    return out


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """The demo data sets as the demo generates them (default arguments)."""
    tmp = tmp_path_factory.mktemp('demo_data')
    return {prefix: _generate(module, (), str(tmp / prefix))
            for prefix, module in DEMO_DATA.items()}


GENERATORS = [c for c in COMMANDS if not c.needs and any(
    t in ['module:' + m for m in DEMO_DATA.values()] for t, *_ in invocations(c))]


@pytest.mark.parametrize('cmd', GENERATORS, ids=_ids)
def test_generator_commands_run(cmd, tmp_path):
    for target, args, _, _ in invocations(cmd):
        if '--help' in args:
            continue
        args = [a if not PLACEHOLDER.match(a) else 'X' for a in args]
        out = _generate(target[len('module:'):], tuple(args), str(tmp_path / 'data'))
        assert glob.glob(osp.join(out, '**', '*.png'), recursive=True), cmd


def _demo_path_ok(path, demo_data):
    for prefix, root in demo_data.items():
        if path == prefix or path.startswith(prefix + '/'):
            return bool(glob.glob(root + path[len(prefix):]))
    return None


def _python_literals(doc):
    """(line, string) of the string literals of the docs' Python blocks."""
    with open(osp.join(ROOT, doc)) as f:
        text = f.read()
    for lang, start, lines in _blocks(text):
        if lang == 'python':
            for n, line in enumerate(lines, start):
                for m in re.finditer(r'''(['"])([^'"\s]+)\1''', line):
                    yield n, m.group(2)


def _sample_inputs():
    out = []
    for cmd in COMMANDS:
        for target, args, _, _ in invocations(cmd):
            for a in args:
                value = a.split('=', 1)[-1]
                if IMAGE.search(value) or value.startswith('data/demo_'):
                    out.append((cmd.where, value))
    for doc in DOCS:
        out += [(f'{doc}:{n}', s) for n, s in _python_literals(doc)
                if IMAGE.search(s) or s.startswith('data/demo_')]
    return out


@pytest.mark.parametrize('where,path', _sample_inputs(), ids=lambda v: str(v)[:60])
def test_sample_inputs_exist_or_are_generated(where, path, demo_data):
    if PLACEHOLDER.search(path) or path.startswith(('work_dirs/', 'outputs/')):
        return
    ok = _demo_path_ok(path, demo_data)
    if ok is None:
        ok = bool(glob.glob(osp.join(ROOT, path)))
    assert ok, (f'{where}: {path} is neither a bundled file nor one the demo generates '
                f'(e.g. data/demo_coco/val/000000.png after bash tools/run_demo.sh)')


@functools.lru_cache(maxsize=None)
def _train_cfg(config):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, config))
    ckpt = cfg.default_hooks.get('checkpoint', {})
    return dict(max_epochs=cfg.train_cfg.get('max_epochs'),
                max_iters=cfg.train_cfg.get('max_iters'),
                interval=ckpt.get('interval', 1), keep=ckpt.get('max_keep_ckpts', -1))


def _demo_models():
    src = open(osp.join(ROOT, 'tools', 'demo.py')).read()
    return dict(re.findall(r"'(\w+)': dict\(config='([^']+)'", src))


def _checkpoint_paths():
    out = []
    for cmd in COMMANDS:
        for m in re.finditer(r'work_dirs/((demo/)?([\w.-]+))/(epoch|iter)_(\d+)\.pth',
                             cmd.text):
            out.append((cmd.where, m.group(0)))
    return out


@pytest.mark.parametrize('where,path', _checkpoint_paths(), ids=lambda v: str(v)[:60])
def test_checkpoint_paths_are_those_training_writes(where, path):
    m = re.match(r'work_dirs/(demo/)?([\w.-]+)/(epoch|iter)_(\d+)\.pth', path)
    demo, name, unit, n = m.group(1), m.group(2), m.group(3), int(m.group(4))
    if demo:
        models = _demo_models()
        assert name in models, f'{where}: tools/demo.py has no model {name} ({models})'
        config = models[name]
    else:
        found = glob.glob(osp.join(ROOT, 'configs', '**', name + '.py'), recursive=True)
        if not found:  # a --work-dir of the user's choice
            return
        config = osp.relpath(found[0], ROOT)
    t = _train_cfg(config)
    last = t['max_epochs'] if unit == 'epoch' else t['max_iters']
    assert last, f'{where}: {config} does not train by {unit}s'
    assert n <= last and n % t['interval'] == 0, \
        f'{where}: {config} writes no {unit}_{n}.pth (last {last}, every {t["interval"]})'
    if t['keep'] == 1:
        assert n == last, f'{where}: {config} keeps only its last checkpoint, {unit}_{last}'


# ------------------------------------------ files and Python names the prose names
PATH_REF = re.compile(r'(?<![\w./-])((?:tests|tools|lsnet_mm|configs|docs)/[\w/.*{},-]*?'
                      r'\.(?:py|sh|md|yml|json|png))(?![\w/])')
NAME_REF = re.compile(r'`(lsnet_mm(?:\.\w+)+)')


def _expand_braces(path):
    m = re.search(r'\{([^{}]*)\}', path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(',')
            for q in _expand_braces(path[:m.start()] + alt + path[m.end():])]


def _references(pattern):
    out = []
    for doc in DOCS:
        with open(osp.join(ROOT, doc)) as f:
            for n, line in enumerate(f, 1):
                out += [(f'{doc}:{n}', m.group(1)) for m in pattern.finditer(line)]
    return out


@pytest.mark.parametrize('where,path', _references(PATH_REF), ids=lambda v: str(v)[:70])
def test_every_file_the_docs_name_exists(where, path):
    if PLACEHOLDER.search(path) or 'NAME' in path or path.startswith('docs/benchmarks/gpu'):
        return  # a placeholder, or a file the docs say a command writes
    for p in _expand_braces(path):
        assert glob.glob(osp.join(ROOT, p)) or glob.glob(osp.join(ROOT, 'docs', p)), \
            f'{where}: {p} does not exist'


def _resolve(name):
    """Whether a dotted name is importable, or ``lsnet_mm.X`` names a registered X."""
    parts = name.split('.')
    if len(parts) == 2:
        from lsnet_mm import registry
        for reg in (registry.HOOKS, registry.MODEL_WRAPPERS, registry.TRANSFORMS,
                    registry.DATASETS):
            reg.import_from_location()
            if parts[1] in reg.module_dict:
                return True
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return False
        return True
    return False


@pytest.mark.parametrize('where,name', _references(NAME_REF), ids=lambda v: str(v)[:70])
def test_every_python_name_the_docs_name_exists(where, name):
    assert _resolve(name), f'{where}: {name} does not exist (moved or renamed?)'


LINK = re.compile(r'\]\(([\w./-]*\.md|)(#[\w-]+)?\)')


def _slug(heading):
    """GitHub's anchor of a heading."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


@functools.lru_cache(maxsize=None)
def _anchors(path):
    with open(path) as f:
        return {_slug(m.group(1)) for m in re.finditer(r'^#+\s+(.*)$', f.read(), re.M)}


def _links():
    out = []
    for doc in DOCS:
        with open(osp.join(ROOT, doc)) as f:
            for n, line in enumerate(f, 1):
                out += [(f'{doc}:{n}', doc, m.group(1), (m.group(2) or '')[1:])
                        for m in LINK.finditer(line) if m.group(1) or m.group(2)]
    return out


@pytest.mark.parametrize('where,doc,target,anchor', _links(), ids=lambda v: str(v)[:70])
def test_links_between_docs_resolve(where, doc, target, anchor):
    path = osp.normpath(osp.join(ROOT, osp.dirname(doc), target)) if target else \
        osp.join(ROOT, doc)
    assert osp.isfile(path), f'{where}: link to {target}, which does not exist'
    if anchor:
        assert anchor in _anchors(path), (f'{where}: {target}#{anchor}: no such section '
                                          f'(sections: {sorted(_anchors(path))})')
