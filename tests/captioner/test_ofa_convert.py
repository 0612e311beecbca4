"""The fairseq converter: renamed keys, shape-inferred config, weights_only first, and
``disable_entangle`` from the training args or an explicit flag, never guessed."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace

import pytest
import torch

from captioner.cli import register
from captioner.ofa.captioner import build_random_tiny
from captioner.ofa.checkpoint import CheckpointMismatch, check_and_load, read_state_dict
from captioner.ofa.config import SIZES, load_config
from captioner.ofa.convert import convert_fairseq, infer_config, rename_fairseq_key
from captioner.ofa.model import OFAModel

# Public port name -> fairseq name, written from fairseq OFA's layer attributes.
TO_FAIRSEQ = (
    (r"^(encoder\.layers\.\d+)\.self_attn_mid_layer_norm\.", r"\1.attn_ln."),
    (r"^(decoder\.layers\.\d+)\.self_attn_mid_layer_norm\.", r"\1.self_attn_ln."),
    (r"^(decoder\.layers\.\d+)\.cross_attn_mid_layer_norm\.", r"\1.cross_attn_ln."),
    (r"^(decoder\.layers\.\d+)\.cross_attn_layer_norm\.", r"\1.encoder_attn_layer_norm."),
    (r"^(decoder\.layers\.\d+)\.cross_attn\.", r"\1.encoder_attn."),
    (r"^(.*)\.ffn_layer_norm\.", r"\1.ffn_layernorm."),
)


def fairseq_state(model: OFAModel) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.state_dict().items():
        for pattern, repl in TO_FAIRSEQ:
            key = re.sub(pattern, repl, key)
        out[key] = value.clone()
    out["decoder.output_projection.weight"] = model.encoder.embed_tokens.weight.clone()
    out["encoder.version"] = torch.tensor([3.0])
    return out


def test_fairseq_names_map_to_the_public_port_names():
    assert rename_fairseq_key("encoder.layers.3.attn_ln.weight") == (
        "encoder.layers.3.self_attn_mid_layer_norm.weight"
    )
    assert rename_fairseq_key("decoder.layers.0.encoder_attn.k_proj.bias") == (
        "decoder.layers.0.cross_attn.k_proj.bias"
    )
    assert rename_fairseq_key("decoder.layers.0.encoder_attn_layer_norm.bias") == (
        "decoder.layers.0.cross_attn_layer_norm.bias"
    )
    assert rename_fairseq_key("decoder.layers.11.ffn_layernorm.weight") == (
        "decoder.layers.11.ffn_layer_norm.weight"
    )


def test_config_is_inferred_from_the_tensor_shapes_of_ofa_large():
    with torch.device("meta"):
        state = fairseq_state(OFAModel(SIZES["large"]))
    state = {rename_fairseq_key(k): v for k, v in state.items()}
    cfg = infer_config(state, image_size=480)
    assert cfg == SIZES["large"]


def test_converted_fairseq_checkpoint_loads_to_the_same_weights(tmp_path):
    model, tokenizer = build_random_tiny(seed=5, folder=tmp_path / "tok")
    torch.save({"model": fairseq_state(model), "extra_state": {"epoch": 3}}, tmp_path / "x.pt")
    out = convert_fairseq(
        tmp_path / "x.pt",
        tmp_path / "out",
        tmp_path / "tok",
        config=model.config,
        disable_entangle=model.config.disable_entangle,
    )
    assert load_config(out) == model.config
    loaded = OFAModel(load_config(out))
    check_and_load(loaded, read_state_dict(out))
    torch.testing.assert_close(
        loaded.decoder.layers[0].cross_attn.q_proj.weight,
        model.decoder.layers[0].cross_attn.q_proj.weight,
    )


def test_fairseq_file_with_pickled_config_converts_without_trusting_its_pickle(tmp_path):
    """weights_only refuses the Namespace fairseq pickles; the stand-in read takes the weights,
    and a full unpickle (--trust-pickle) gives the same folder."""
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    ckpt = {"model": fairseq_state(model), "args": argparse.Namespace(arch="ofa_large")}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(tmp_path / "x.pt", weights_only=True)
    folders = []
    for trust in (False, True):
        folders.append(
            convert_fairseq(
                tmp_path / "x.pt",
                tmp_path / f"out-{trust}",
                tmp_path / "tok",
                config=model.config,
                trust_pickle=trust,
                disable_entangle=False,  # these args do not record it
            )
        )
    assert read_state_dict(folders[0]).keys() == read_state_dict(folders[1]).keys()
    for key, value in read_state_dict(folders[0]).items():
        assert torch.equal(value, read_state_dict(folders[1])[key]), key


def test_fairseq_file_with_unmapped_tensors_is_refused(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    state = fairseq_state(model)
    state["encoder.layers.0.w_resid"] = torch.ones(model.config.d_model)
    torch.save({"model": state}, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatch, match="encoder.layers.0.w_resid"):
        convert_fairseq(
            tmp_path / "x.pt",
            tmp_path / "out",
            tmp_path / "tok",
            config=model.config,
            disable_entangle=True,
        )


# The three places fairseq versions keep the training args: a Namespace under ``args`` (older
# fairseq, what OFA's checkpoints carry), or ``args=None`` and ``cfg["model"]`` as a Namespace
# (legacy args converted to a config) or a plain dict (omegaconf ``to_container``).
ARGS_LAYOUTS = {
    "args-namespace": lambda flag: {
        "args": argparse.Namespace(arch="ofa_large", disable_entangle=flag)
    },
    "cfg-model-namespace": lambda flag: {
        "args": None,
        "cfg": {"model": argparse.Namespace(arch="ofa_large", disable_entangle=flag)},
    },
    "cfg-model-dict": lambda flag: {
        "args": None,
        "cfg": {"model": {"_name": "ofa_large", "disable_entangle": flag}},
    },
    # newer fairseq keeps the omegaconf object itself: cfg a DictConfig, its model an AnyNode
    # holding the legacy Namespace (allow_objects), or a DictConfig of value nodes
    "omegaconf-any-node": lambda flag: {
        "args": None,
        "cfg": _omegaconf("DictConfig", {"model": _omegaconf("AnyNode", _args(flag))}),
    },
    "omegaconf-nodes": lambda flag: {
        "args": None,
        "cfg": _omegaconf(
            "DictConfig",
            {
                "model": _omegaconf(
                    "DictConfig",
                    {
                        "_name": _omegaconf("StringNode", "ofa_large"),
                        "disable_entangle": _omegaconf("BooleanNode", flag),
                    },
                )
            },
        ),
    },
}


def _args(flag: bool) -> argparse.Namespace:
    return argparse.Namespace(arch="ofa_large", disable_entangle=flag)


class _OmegaConfLike:
    """Pickles as omegaconf's containers and nodes do (class by module and name, state a dict
    with ``_content`` or ``_val`` and ``_metadata``), from modules this environment does not
    have: the converter must read the file without importing them."""

    def __init__(self, value: object) -> None:
        key = "_content" if type(self).__name__ == "DictConfig" else "_val"
        self.__dict__.update({key: value, "_metadata": {"ref_type": object}, "_parent": None})

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        raise AssertionError("the converter ran a pickled class's code")


_OMEGACONF_CLASSES = {
    name: type(name, (_OmegaConfLike,), {"__module__": module, "__qualname__": name})
    for name, module in {
        "DictConfig": "omegaconf.dictconfig",
        "AnyNode": "omegaconf.nodes",
        "StringNode": "omegaconf.nodes",
        "BooleanNode": "omegaconf.nodes",
    }.items()
}


def _omegaconf(name: str, value: object) -> _OmegaConfLike:
    return _OMEGACONF_CLASSES[name](value)


def _save_with_fake_modules(obj: object, path) -> None:
    """``torch.save`` with the omegaconf-like classes importable, then not importable again."""
    import sys
    import types

    names = {cls.__module__ for cls in _OMEGACONF_CLASSES.values()} | {"omegaconf"}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    for cls in _OMEGACONF_CLASSES.values():
        setattr(sys.modules[cls.__module__], cls.__name__, cls)
    try:
        torch.save(obj, path)
    finally:
        for name in names:
            del sys.modules[name]


def _decoder_embedding_input(model: OFAModel, tokens: torch.Tensor) -> torch.Tensor:
    """What the decoder feeds its ``layernorm_embedding`` for teacher-forced ``tokens``."""
    seen = []
    hook = model.decoder.layernorm_embedding.register_forward_pre_hook(
        lambda _mod, args: seen.append(args[0].detach().clone())
    )
    pixels = torch.zeros(1, 3, model.config.image_size, model.config.image_size)
    try:
        with torch.no_grad():
            model(torch.tensor([[0, 5, 6, 2]]), pixels, tokens)
    finally:
        hook.remove()
    return seen[-1]


@pytest.mark.parametrize("layout", sorted(ARGS_LAYOUTS))
def test_disable_entangle_from_pickled_args_lands_in_config_and_skips_decoder_positions(
    tmp_path, layout
):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    config = replace(model.config, disable_entangle=False)  # the args, not this, must decide
    ckpt = {"model": fairseq_state(model), **ARGS_LAYOUTS[layout](True)}
    _save_with_fake_modules(ckpt, tmp_path / "x.pt")
    out = convert_fairseq(tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=config)
    assert json.loads((out / "config.json").read_text())["disable_entangle"] is True
    loaded = OFAModel(load_config(out))
    check_and_load(loaded, read_state_dict(out))
    tokens = torch.tensor([[0, 40, 41, 42]])
    embedded = _decoder_embedding_input(loaded, tokens)
    torch.testing.assert_close(embedded, loaded.decoder.embed_tokens(tokens), rtol=0, atol=0)
    # ... whereas the same weights with entangle add the position rows: the check has teeth.
    entangled = OFAModel(replace(load_config(out), disable_entangle=False))
    check_and_load(entangled, read_state_dict(out))
    positions = entangled.decoder.embed_positions(torch.arange(tokens.size(1)))
    torch.testing.assert_close(
        _decoder_embedding_input(entangled, tokens), embedded + positions, rtol=0, atol=1e-6
    )


def test_args_recording_entangle_give_disable_entangle_false(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    config = replace(model.config, disable_entangle=True)
    ckpt = {"model": fairseq_state(model), **ARGS_LAYOUTS["args-namespace"](False)}
    torch.save(ckpt, tmp_path / "x.pt")
    out = convert_fairseq(
        tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=config, trust_pickle=True
    )
    assert load_config(out).disable_entangle is False


def test_without_readable_args_disable_entangle_must_be_given(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    torch.save({"model": fairseq_state(model)}, tmp_path / "x.pt")  # weights only: no args
    with pytest.raises(ValueError, match="--disable-entangle") as err:
        convert_fairseq(tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=model.config)
    assert "does not record disable_entangle" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written
    for flag in (True, False):
        out = convert_fairseq(
            tmp_path / "x.pt",
            tmp_path / f"out-{flag}",
            tmp_path / "tok",
            config=model.config,
            disable_entangle=flag,
        )
        assert load_config(out).disable_entangle is flag


def test_args_without_the_field_also_need_the_flag(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    ckpt = {"model": fairseq_state(model), "args": argparse.Namespace(arch="ofa_large")}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="does not record disable_entangle"):
        convert_fairseq(
            tmp_path / "x.pt",
            tmp_path / "out",
            tmp_path / "tok",
            config=model.config,
            trust_pickle=True,
        )


def test_a_flag_contradicting_the_recorded_args_is_refused(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    ckpt = {"model": fairseq_state(model), **ARGS_LAYOUTS["args-namespace"](True)}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="disable_entangle=True, which contradicts --entangle"):
        convert_fairseq(
            tmp_path / "x.pt",
            tmp_path / "out",
            tmp_path / "tok",
            config=model.config,
            trust_pickle=True,
            disable_entangle=False,
        )


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["ofa-convert", "x.pt", "--out", "o", "--tokenizer-from", "t", *argv])


def test_cli_entangle_flags_are_optional_and_exclusive(capsys):
    assert _parse().disable_entangle is None
    assert _parse("--disable-entangle").disable_entangle is True
    assert _parse("--entangle").disable_entangle is False
    with pytest.raises(SystemExit):
        _parse("--entangle", "--disable-entangle")
    assert "not allowed with" in capsys.readouterr().err


def test_the_resolution_comes_from_the_training_args_unless_given(tmp_path, caplog):
    """OFA-base was fine-tuned for captioning at 480 px though pretrained at 384: the size is
    the run's, so the converter reads patch_image_size where it reads disable_entangle."""
    from captioner.ofa.convert import read_fairseq_checkpoint, resolve_image_size

    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    layouts = {
        "args": {"args": argparse.Namespace(disable_entangle=True, patch_image_size=96)},
        "cfg-task": {"args": None, "cfg": {"model": {}, "task": {"patch_image_size": 96}}},
    }
    for name, layout in layouts.items():
        torch.save({"model": fairseq_state(model), **layout}, tmp_path / f"{name}.pt")
        recorded = read_fairseq_checkpoint(tmp_path / f"{name}.pt").patch_image_size
        assert recorded == 96, name
        assert resolve_image_size("x.pt", recorded, None) == 96
    assert resolve_image_size("x.pt", 96, 64) == 64
    assert "trained at 96 px; converting for 64 px" in caplog.text
    torch.save({"model": fairseq_state(model)}, tmp_path / "bare.pt")
    assert read_fairseq_checkpoint(tmp_path / "bare.pt").patch_image_size is None
    assert resolve_image_size("x.pt", None, None) == 480


def test_a_nonzero_final_logits_bias_is_refused_and_a_zero_one_dropped(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    state = {**model.state_dict(), "final_logits_bias": torch.zeros(1, 10)}
    check_and_load(OFAModel(model.config), dict(state))
    state["final_logits_bias"][0, 3] = 0.5
    with pytest.raises(CheckpointMismatch, match="final_logits_bias is not zero"):
        check_and_load(OFAModel(model.config), state)
