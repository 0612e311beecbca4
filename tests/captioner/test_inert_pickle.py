"""The stand-in unpickler: what a pickle names never runs, and what it holds can be read."""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle

import torch

from captioner.ofa import inert_pickle


class _Calls:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _Listish(list):
    pass


class _Dictish(dict):
    pass


def _load(obj: object) -> object:
    data = pickle.dumps(obj, protocol=2)
    return inert_pickle.Unpickler(io.BytesIO(data)).load()


def test_named_functions_load_as_stand_ins_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    loaded = _load(
        {
            "mkdir": _Calls(os.mkdir, str(marker)),
            "system": _Calls(os.system, f"touch {marker}"),
            "eval": _Calls(eval, "__import__('os').mkdir('x')"),
        }
    )
    assert not marker.exists() and not os.path.exists("x")
    assert all(isinstance(v, inert_pickle.Inert) for v in loaded.values())
    assert loaded["mkdir"].args == (str(marker),) and loaded["mkdir"].name == "mkdir"


def test_containers_of_unknown_classes_keep_their_items_and_state():
    listish, dictish = _Listish([1, 2]), _Dictish(a=1)
    listish.note = "state"
    loaded = _load({"l": listish, "d": dictish})
    assert loaded["l"].items == [1, 2] and loaded["l"].state == {"note": "state"}
    assert loaded["d"].entries == {"a": 1}


def test_allowed_constructors_build_real_objects():
    ns = argparse.Namespace(arch="ofa_large", disable_entangle=True)
    loaded = _load({"args": ns, "od": collections.OrderedDict(a=1), "s": {1, 2}})
    assert loaded["args"] == ns and isinstance(loaded["od"], collections.OrderedDict)
    assert inert_pickle.field(loaded["args"], "disable_entangle") is True


def test_torch_load_with_stand_ins_returns_real_tensors(tmp_path):
    weights = {"w": torch.arange(6.0).reshape(2, 3), "h": torch.ones(2, dtype=torch.float16)}
    torch.save({"model": weights, "args": _Calls(os.getcwd)}, tmp_path / "x.pt")
    ckpt = torch.load(tmp_path / "x.pt", weights_only=False, pickle_module=inert_pickle)
    assert isinstance(ckpt["args"], inert_pickle.Inert)
    for key, value in weights.items():
        assert torch.equal(ckpt["model"][key], value) and ckpt["model"][key].dtype == value.dtype
