"""What a file that torch's weights-only loading could not read actually is.

:func:`inspect_checkpoint_file` is consulted only after ``torch.load(weights_only=True)``
failed, to tell the two cases apart without parsing torch's error texts:

* a complete pickle (torch's zip archive, its legacy format or a plain pickle) that asks
  for Python objects outside the allow-list: a file that could run code when loaded;
* anything else: a truncated, corrupted or foreign file.

The pickle opcodes are read statically (:func:`pickletools.genops`, nothing is
executed); each object the file names is then put to torch's own weights-only
unpickler alone, so "refused" means exactly what ``torch.load`` refuses, with the
allow-list of :func:`~lsnet_mm.checkpoint.allow_checkpoint_globals`.
"""
import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from typing import BinaryIO, List, NamedTuple, Optional, Tuple

import torch

#: Pickles at the start of torch's legacy (non-zip) format: magic number, protocol,
#: system info, the object, the storage keys (raw tensor bytes follow).
LEGACY_PICKLES = 5

_DOTTED_NAME = re.compile(r'[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$')
_PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}  # protocol <= 2 names
_STRING_OPS = {'STRING', 'BINSTRING', 'SHORT_BINSTRING', 'UNICODE', 'BINUNICODE',
               'SHORT_BINUNICODE', 'BINUNICODE8'}
_GET_OPS = {'GET', 'BINGET', 'LONG_BINGET'}
_PUT_OPS = {'PUT', 'BINPUT', 'LONG_BINPUT'}
_FRAMING_OPS = {'PROTO', 'FRAME'}  # push nothing


class FileContent(NamedTuple):
    """The verdict on a file that weights-only loading failed to read.

    Attributes:
        refused (list[str]): ``module.name`` of each object the file asks for that the
            weights-only unpickler refuses (empty for a damaged file).
        problem (str | None): Why the file is no complete pickle or torch archive; None
            when it is one.
    """

    refused: List[str]
    problem: Optional[str]


def _names_in_pickle(f: BinaryIO) -> List[Tuple[str, str]]:
    """``(module, name)`` of every global one pickle names, read statically."""
    names, memo, recent = [], {}, [None, None]  # recent: the two values pushed last
    for op, arg, _ in pickletools.genops(f):
        pushed = None
        if op.name in ('GLOBAL', 'INST'):
            names.append(tuple(arg.split(' ', 1)))
        elif op.name == 'STACK_GLOBAL':
            names.append((recent[0], recent[1]))
        elif op.name in _STRING_OPS:
            pushed = arg
        elif op.name in _GET_OPS:
            pushed = memo.get(arg)
        if op.name == 'MEMOIZE':
            memo[len(memo)] = recent[1]
        elif op.name in _PUT_OPS:
            memo[arg] = recent[1]
        elif op.name not in _FRAMING_OPS:
            recent = [recent[1], pushed]
    for module, name in names:
        if not (isinstance(module, str) and isinstance(name, str)
                and _DOTTED_NAME.match(module) and _DOTTED_NAME.match(name)):
            raise ValueError(f'a global that names no Python object ({module!r}, {name!r})')
    return names


def _names_in_pickles(f: BinaryIO, count: int) -> Tuple[List[Tuple[str, str]], Optional[str]]:
    """The globals of up to ``count`` consecutive pickles, or why the first is none."""
    names = []
    for index in range(count):
        start = f.tell()
        if not f.read(1):
            break
        f.seek(start)
        try:
            with warnings.catch_warnings():  # string opcodes of foreign bytes
                warnings.simplefilter('ignore', DeprecationWarning)
                names += _names_in_pickle(f)
        except Exception as e:  # genops raises ValueError, EOFError, ... on foreign bytes
            if index == 0:
                return [], f'no pickle at byte {start} ({type(e).__name__}: {e})'
            break  # the raw tensor bytes after the pickles of torch's legacy format
    return names, None


def refused_by_weights_only(module: str, name: str) -> bool:
    """Whether torch's weights-only unpickler refuses the global ``module.name``.

    A one-opcode pickle naming it is given to ``torch.load(weights_only=True)``, which
    then either refuses the global (``UnpicklingError``) or reads it and stops at the
    missing checkpoint structure. Nothing is imported or called.

    Args:
        module (str): The global's module, as the pickle names it.
        name (str): The global's name.

    Returns:
        bool: True when loading a file that names it fails for that reason.
    """
    probe = b'\x80\x02c' + f'{module}\n{name}\n'.encode() + b'.'
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.load(io.BytesIO(probe), weights_only=True)
    except pickle.UnpicklingError:
        return True
    except Exception:  # read the global, then found no checkpoint: allowed
        return False
    return False


def _archive_pickle(path: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The ``data.pkl`` record of a torch zip archive, or why there is none."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = [n for n in archive.namelist() if n.endswith('/data.pkl')]
            if not records:
                return None, 'a zip archive without the data.pkl record torch.save writes'
            return archive.read(records[0]), None
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # damaged record
        return None, f'a damaged zip archive ({e})'


def inspect_checkpoint_file(path: str) -> FileContent:
    """Read a file statically: a pickle asking for refused objects, or damaged.

    Args:
        path (str): A local file that ``torch.load(weights_only=True)`` failed to read.

    Returns:
        FileContent: The refused objects (the file is a complete pickle or torch
        archive), or the problem that makes it no checkpoint at all.
    """
    if os.path.getsize(path) == 0:
        return FileContent([], 'the file is empty')
    if zipfile.is_zipfile(path):
        data, problem = _archive_pickle(path)
        if problem:
            return FileContent([], problem)
        names, problem = _names_in_pickles(io.BytesIO(data), 1)
    else:
        with open(path, 'rb') as f:
            if f.read(4) == b'PK\x03\x04':
                return FileContent([], 'a zip archive without its central directory '
                                       '(truncated)')
            f.seek(0)
            names, problem = _names_in_pickles(f, LEGACY_PICKLES)
    if problem:
        return FileContent([], problem)
    refused = [f'{_PY2_MODULES.get(m, m)}.{n}' for m, n in dict.fromkeys(names)
               if refused_by_weights_only(m, n)]
    return FileContent(refused, None)
