"""One walker over nested config dicts and lists, for every search through a config.

:func:`walk_config` visits each entry of a (nested) config and tells where it is, as
the ``--cfg-options`` path that sets it (``model.backbone.init_cfg.checkpoint``,
``train_dataloader.dataset.pipeline[2].scale``); the callers filter what they need:

    >>> [path for path, key, value, parent in walk_config(cfg.model, 'model')
    ...  if key == 'num_classes']
    ['model.bbox_head.num_classes']
"""
from typing import Any, Callable, Iterator, Optional, Tuple

Entry = Tuple[str, Any, Any, Any]


def walk_config(node: Any, path: str = '',
                skip: Optional[Callable[[str, Any], bool]] = None) -> Iterator[Entry]:
    """Visit every entry of nested dicts and lists, depth first, parents first.

    Args:
        node (dict | list | Any): A config (``Config``, ``ConfigDict``, dict or list).
        path (str): The path of ``node`` itself, e.g. ``'model'``. Defaults to ''.
        skip (Callable[[str, Any], bool], optional): ``skip(key, value)`` True: yield
            the entry but do not descend into its value.

    Yields:
        tuple[str, Any, Any, Any]: ``(path, key, value, parent)``: the entry's path,
        its key (an int index inside lists), its value and the dict or list holding it
        (so a caller may replace ``parent[key]``).
    """
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, (list, tuple)):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        if isinstance(key, int):
            sub = f'{path}[{key}]'
        else:
            sub = f'{path}.{key}' if path else str(key)
        yield sub, key, value, node
        if skip is None or not skip(key, value):
            yield from walk_config(value, sub, skip)


def type_name(value: Any) -> str:
    """The registry name of a config's ``type`` value (a string, or a class given directly).

    Args:
        value (Any): The value of a ``type`` key.

    Returns:
        str: ``value`` itself for a string, else its ``__name__`` ('' when it has none).
    """
    return value if isinstance(value, str) else getattr(value, '__name__', '')
