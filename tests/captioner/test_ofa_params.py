"""A model built from each official size has exactly the public checkpoints' tensor names/shapes.

The expected names are written down here as data, from the public OFA port's module tree
(``OFAModel`` -> ``encoder``/``decoder``, ``embed_images`` ResNet, NormFormer layers); shapes are
functions of each size's published hyper-parameters. Nothing is derived from our model.
"""

from __future__ import annotations

import pytest
import torch

from captioner.ofa.config import SIZES
from captioner.ofa.model import OFAModel

# Published sizes: (d_model, enc layers, dec layers, heads, ffn, resnet depths).
OFFICIAL = {
    "tiny": (256, 4, 4, 4, 1024, (3, 4, 6)),
    "medium": (512, 4, 4, 8, 2048, (3, 4, 23)),
    "base": (768, 6, 6, 12, 3072, (3, 4, 23)),
    "large": (1024, 12, 12, 16, 4096, (3, 8, 36)),
    "huge": (1280, 24, 12, 16, 5120, (3, 8, 36)),
    "large-caption": (1024, 12, 12, 16, 4096, (3, 8, 36)),
}
VOCAB = 59457  # 50265 BART + 8192 codes + 1000 bins
POSITIONS = 1026  # max_position_embeddings + 2
IMAGE_POSITIONS = 42 * 42 + 1
TOKEN_REL = 2 * 256 - 1
IMAGE_REL = (2 * 42 - 1) ** 2 + 3

# (name, shape) templates; D model width, F ffn, H heads, V vocab.
TOP = """
encoder.embed_tokens.weight V D
encoder.type_embedding.weight 2 D
encoder.image_proj.weight D 1024
encoder.image_proj.bias D
encoder.patch_layernorm_embedding.weight D
encoder.patch_layernorm_embedding.bias D
encoder.embed_positions.weight P D
encoder.embed_image_positions.weight IP D
encoder.pos_ln.weight D
encoder.pos_ln.bias D
encoder.image_pos_ln.weight D
encoder.image_pos_ln.bias D
encoder.pos_q_linear.weight D D
encoder.pos_q_linear.bias D
encoder.pos_k_linear.weight D D
encoder.pos_k_linear.bias D
encoder.layer_norm.weight D
encoder.layer_norm.bias D
encoder.layernorm_embedding.weight D
encoder.layernorm_embedding.bias D
decoder.layernorm_embedding.weight D
decoder.layernorm_embedding.bias D
decoder.code_layernorm_embedding.weight D
decoder.code_layernorm_embedding.bias D
decoder.embed_positions.weight P D
decoder.embed_image_positions.weight IP D
decoder.pos_ln.weight D
decoder.pos_ln.bias D
decoder.image_pos_ln.weight D
decoder.image_pos_ln.bias D
decoder.self_pos_q_linear.weight D D
decoder.self_pos_q_linear.bias D
decoder.self_pos_k_linear.weight D D
decoder.self_pos_k_linear.bias D
decoder.cross_pos_q_linear.weight D D
decoder.cross_pos_q_linear.bias D
decoder.cross_pos_k_linear.weight D D
decoder.cross_pos_k_linear.bias D
decoder.layer_norm.weight D
decoder.layer_norm.bias D
"""
ATTENTION = """
{p}.k_proj.weight D D
{p}.k_proj.bias D
{p}.v_proj.weight D D
{p}.v_proj.bias D
{p}.q_proj.weight D D
{p}.q_proj.bias D
{p}.out_proj.weight D D
{p}.out_proj.bias D
{p}.c_attn H
"""
LAYER_NORMS = "self_attn_layer_norm self_attn_mid_layer_norm final_layer_norm"
DECODER_NORMS = "cross_attn_layer_norm cross_attn_mid_layer_norm"
FFN = """
{p}.fc1.weight F D
{p}.fc1.bias F
{p}.fc2.weight D F
{p}.fc2.bias D
{p}.ffn_layer_norm.weight F
{p}.ffn_layer_norm.bias F
"""


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{k}", (c,)) for k in ("weight", "bias", "running_mean", "running_var")]


def resnet_names(depths: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """torchvision-style Bottleneck names of OFA's ``embed_images`` (stages 1-3)."""
    p = "encoder.embed_images"
    out = [(f"{p}.conv1.weight", (64, 3, 7, 7)), *_bn(f"{p}.bn1", 64)]
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256), depths, strict=True), start=1):
        for i in range(blocks):
            b = f"{p}.layer{stage}.{i}"
            out += [(f"{b}.conv1.weight", (planes, inplanes, 1, 1)), *_bn(f"{b}.bn1", planes)]
            out += [(f"{b}.conv2.weight", (planes, planes, 3, 3)), *_bn(f"{b}.bn2", planes)]
            out += [(f"{b}.conv3.weight", (planes * 4, planes, 1, 1)), *_bn(f"{b}.bn3", planes * 4)]
            if i == 0:
                out += [(f"{b}.downsample.0.weight", (planes * 4, inplanes, 1, 1))]
                out += _bn(f"{b}.downsample.1", planes * 4)
            inplanes = planes * 4
    return dict(out)


def expected(size: str) -> dict[str, tuple[int, ...]]:
    d, enc, dec, heads, ffn, depths = OFFICIAL[size]
    dims = {"D": d, "F": ffn, "H": heads, "V": VOCAB, "P": POSITIONS, "IP": IMAGE_POSITIONS}

    def parse(block: str, p: str = "") -> dict[str, tuple[int, ...]]:
        rows = [line.split() for line in block.format(p=p).strip().splitlines()]
        return {r[0]: tuple(dims[t] if t in dims else int(t) for t in r[1:]) for r in rows}

    names = parse(TOP) | resnet_names(depths)
    for side, layers in (("encoder", enc), ("decoder", dec)):
        norms = LAYER_NORMS + (" " + DECODER_NORMS if side == "decoder" else "")
        for i in range(layers):
            p = f"{side}.layers.{i}"
            names |= parse(ATTENTION, f"{p}.self_attn") | parse(FFN, p)
            if side == "decoder":
                names |= parse(ATTENTION, f"{p}.cross_attn")
            for norm in norms.split():
                names |= {f"{p}.{norm}.weight": (d,), f"{p}.{norm}.bias": (d,)}
            names[f"{side}.token_rel_pos_table_list.{i}.weight"] = (TOKEN_REL, heads)
            names[f"{side}.image_rel_pos_table_list.{i}.weight"] = (IMAGE_REL, heads)
    return names


@pytest.mark.parametrize("size", sorted(OFFICIAL))
def test_model_from_official_size_has_exactly_the_public_tensor_names_and_shapes(size):
    with torch.device("meta"):  # shapes only: no memory for OFA-huge's 930M parameters
        model = OFAModel(SIZES[size])
    state = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
        and k not in ("decoder.embed_tokens.weight", "decoder.output_projection.weight")
    }
    want = expected(size)
    assert sorted(set(want) - set(state)) == []
    assert sorted(set(state) - set(want)) == []
    assert {k: v for k, v in state.items() if want[k] != v} == {}


def test_official_sizes_have_the_published_parameter_counts():
    """OFA's model card: tiny 33M, medium 93M, base 180M, large 470M, huge 930M."""
    published = {"tiny": 33e6, "medium": 93e6, "base": 180e6, "large": 470e6, "huge": 930e6}
    for size, count in published.items():
        with torch.device("meta"):
            model = OFAModel(SIZES[size])
        n = sum(p.numel() for p in model.parameters())
        assert abs(n - count) / count < 0.05, (size, n)


def test_config_json_without_disable_entangle_reads_as_the_releases_were_trained(caplog):
    """Every official OFA release was trained with --disable-entangle; a config.json that does
    not say (the Hugging Face port has no such field) must not silently add decoder positions
    the weights never saw."""
    from captioner.ofa.config import config_from_dict

    with caplog.at_level("WARNING"):
        assert config_from_dict({"d_model": 1024}).disable_entangle is True
    assert "disable_entangle=true" in caplog.text
    caplog.clear()
    assert config_from_dict({"d_model": 1024, "disable_entangle": False}).disable_entangle is False
    assert caplog.text == ""
