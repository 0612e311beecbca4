"""The fairseq converter: renamed keys, shape-inferred config, weights_only first."""

from __future__ import annotations

import re

import pytest
import torch

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
        tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=model.config
    )
    assert load_config(out) == model.config
    loaded = OFAModel(load_config(out))
    check_and_load(loaded, read_state_dict(out))
    torch.testing.assert_close(
        loaded.decoder.layers[0].cross_attn.q_proj.weight,
        model.decoder.layers[0].cross_attn.q_proj.weight,
    )


def test_fairseq_file_with_pickled_config_needs_trust_pickle(tmp_path):
    import argparse

    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    ckpt = {"model": fairseq_state(model), "args": argparse.Namespace(arch="ofa_large")}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="--trust-pickle"):
        convert_fairseq(tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=model.config)
    convert_fairseq(
        tmp_path / "x.pt",
        tmp_path / "out",
        tmp_path / "tok",
        config=model.config,
        trust_pickle=True,
    )


def test_fairseq_file_with_unmapped_tensors_is_refused(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    state = fairseq_state(model)
    state["encoder.layers.0.w_resid"] = torch.ones(model.config.d_model)
    torch.save({"model": state}, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatch, match="encoder.layers.0.w_resid"):
        convert_fairseq(tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok", config=model.config)
