"""Unpickle a checkpoint without running any code it names: the ``pickle_module`` for
``torch.load`` that reads fairseq's ``.pt`` files.

A pickle names functions and classes by module and name, and calls them while it loads: that is
how a file runs code (``os.system``, a class whose ``__setstate__`` does anything). torch's
``weights_only`` loader refuses any name outside its allowlist, and fairseq pickles its training
config beside the weights (an ``argparse.Namespace``; omegaconf containers in newer versions),
so the official OFA checkpoints are refused whole. Here, a name outside a short allowlist
(tensors, ``OrderedDict``, ``Namespace``: constructors with no side effects) loads as an
``Inert`` stand-in instead: calling it, or setting its state, records the arguments and does
nothing else. The weights come out as tensors, the config as stand-ins whose recorded fields
can be read (``field``), and nothing the file names ever runs.
"""

from __future__ import annotations

import argparse
import collections
import pickle
from collections.abc import Mapping
from typing import IO, Any

import torch

# Constructors that only build data. torch's own tensor and storage names go through its
# unpickler wrapper first (``StorageType``); these are what its pickle of a state dict calls.
ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
}


class Inert:
    """What a name outside the allowlist loads as. A class (the pickled name) whose calls and
    state are recorded: ``args``, ``kwargs``, ``state``, ``items`` (list-like appends) and
    ``entries`` (dict-like sets); no method of the real class ever runs."""

    module = ""
    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = super().__new__(cls)
        obj.args, obj.kwargs = args, kwargs
        obj.state, obj.items, obj.entries = None, [], {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.name}>"


def _inert_class(module: str, name: str) -> type[Inert]:
    return type(name, (Inert,), {"module": module, "name": name})


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose names resolve to the allowlist or to ``Inert`` stand-ins;
    ``replaced`` lists the names it stood in for (to log what the file carried)."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.replaced: set[str] = set()
        self._classes: dict[tuple[str, str], type[Inert]] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        self.replaced.add(f"{module}.{name}")
        key = (module, name)
        if key not in self._classes:
            self._classes[key] = _inert_class(module, name)
        return self._classes[key]


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``pickle.load`` with stand-ins (torch's legacy format reads its header with this)."""
    return Unpickler(file, **kwargs).load()


def field(obj: object, key: str) -> object:
    """``obj[key]`` or ``obj.key``, looking through stand-ins: an omegaconf ``DictConfig``
    pickles its items under ``state["_content"]``, each value node its value under ``_val``."""
    if obj is None:
        return None
    if isinstance(obj, Inert):
        return _unwrap(_inert_field(obj, key))
    if isinstance(obj, Mapping):
        return _unwrap(obj.get(key))
    return _unwrap(getattr(obj, key, None))


def _inert_field(obj: Inert, key: str) -> object:
    state = obj.state if isinstance(obj.state, Mapping) else {}
    content = state.get("_content")
    for source in (content, state, obj.entries, obj.kwargs):
        if isinstance(source, Mapping) and key in source:
            return source[key]
    return None


def _unwrap(value: object) -> object:
    """A value node's value (omegaconf keeps a plain value in a node with ``_val``)."""
    if isinstance(value, Inert) and isinstance(value.state, Mapping) and "_val" in value.state:
        return value.state["_val"]
    return value
