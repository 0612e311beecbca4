"""The OFA model's numerics: position buckets, cached decoding, checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from captioner.ofa.captioner import build_random_tiny, save_random_tiny
from captioner.ofa.checkpoint import CheckpointMismatch, check_and_load, read_state_dict
from captioner.ofa.config import load_config
from captioner.ofa.model import (
    OFAModel,
    image_position_ids,
    image_rel_buckets,
    init_random,
    token_rel_buckets,
)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_random_tiny(seed=0)
    return model, tokenizer


def test_text_buckets_are_exact_near_and_logarithmic_far():
    b = token_rel_buckets(400, 256)
    assert b[0, 0] == 255  # offset 0 -> middle row
    assert b[5, 2] - b[2, 5] == 6  # +3 and -3 get distinct exact rows
    assert b[300, 0] > b[200, 0] > b[130, 0]  # far offsets share log-spaced rows
    assert int(b.max()) <= 2 * 256 - 2 and int(b.min()) >= 0


def test_image_buckets_encode_two_dimensional_offsets():
    ids = image_position_ids(2, 3, bucket_size=8)
    assert ids.tolist() == [1, 2, 3, 9, 10, 11]
    rel = image_rel_buckets(ids, 8)
    span = 15
    centre = 7 * span + 7
    assert rel[0, 0] == centre
    assert rel[1, 0] == centre + 1  # one column right
    assert rel[3, 0] == centre + span  # one row down
    assert rel[0, 4] == centre - span - 1


def test_cached_step_by_step_decoding_equals_teacher_forcing(tiny):
    model, tok = tiny
    ids = torch.tensor([tok.encode(" what does the image describe?")] * 2)
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[0, 40, 41, 42, 43], [0, 50, 51, 52, 53]])
    with torch.no_grad():
        full = model(ids, pixels, target)
        state = model.decoder.start(model.encoder(ids, pixels), target.size(1))
        steps = [model.decoder.step(target[:, i : i + 1], state) for i in range(target.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def test_beams_sharing_one_image_encoder_rows_equal_beams_with_their_own_copies(tiny):
    """Cross-attention keys are kept once per image and shared by its beams; the logits must be
    those of every beam row holding its own copy, through a reorder and an image leaving."""
    model, tok = tiny
    prompt = tok.encode(" what does the image describe?")
    ids = torch.tensor([prompt, prompt[:4] + [tok.pad_token_id] * (len(prompt) - 4)])
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    beams = 3
    tokens = torch.tensor([[0], [0], [0], [0], [0], [0]])
    steps = torch.tensor([[40, 41, 42, 50, 51, 52], [43, 44, 45, 53, 54, 55]])
    reorder = torch.tensor([2, 2, 0, 4, 3, 3])  # beams swap parents within their image
    leave = torch.tensor([3, 5, 5])  # image 0 leaves; image 1's beams continue
    with torch.no_grad():
        out = model.encoder(ids, pixels)
        shared = model.decoder.start(out, 4, batch_size=2 * beams)
        copies = type(out)(
            out.hidden.repeat_interleave(beams, 0),
            out.padding.repeat_interleave(beams, 0),
            out.positions,
        )
        own = model.decoder.start(copies, 4)
        assert shared.cross_kv[0][0].size(0) == 2 and own.cross_kv[0][0].size(0) == 6
        for state in (shared, own):
            state.results = [model.decoder.step(tokens, state)]
            state.reorder(reorder)
            state.results.append(model.decoder.step(steps[0][reorder][:, None], state))
            state.reorder(leave)
            state.results.append(model.decoder.step(steps[1][leave][:, None], state))
    assert shared.cross_kv[0][0].size(0) == 1  # the image that left took its rows along
    for a, b in zip(shared.results, own.results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_padded_prompt_tokens_do_not_change_the_encoding_of_the_others(tiny):
    model, tok = tiny
    ids = torch.tensor([tok.encode(" a dog")])
    padded = torch.cat([ids, torch.full((1, 3), tok.pad_token_id)], dim=1)
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model.encoder(ids, pixels).hidden
        b = model.encoder(padded, pixels).hidden[:, : a.size(1)]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_saved_folder_loads_back_to_identical_weights(tmp_path):
    folder = save_random_tiny(tmp_path / "tiny", seed=3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "vocab.json",
    ]
    original, _ = build_random_tiny(seed=3)
    loaded = OFAModel(load_config(folder))
    check_and_load(loaded, read_state_dict(folder))
    for (name, a), b in zip(
        original.state_dict().items(), loaded.state_dict().values(), strict=True
    ):
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(a, b, msg=name)


def _official_style_bin(model: OFAModel, path, prefix: str = "") -> dict:
    """A ``pytorch_model.bin`` as the public port saves it: all three tied names, buffers."""
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    state[prefix + "decoder.output_projection.weight"] = model.encoder.embed_tokens.weight.clone()
    state[prefix + "encoder.token_rp_bucket"] = torch.zeros(4, 4, dtype=torch.long)
    state[prefix + "encoder.version"] = torch.tensor([3.0])
    torch.save(state, path / "pytorch_model.bin")
    return state


@pytest.mark.parametrize("prefix", ["", "model."])
def test_official_style_bin_with_tied_names_and_buffers_loads_weights_only(tmp_path, tiny, prefix):
    model, _ = tiny
    _official_style_bin(model, tmp_path, prefix)
    fresh = init_random(OFAModel(model.config), seed=9)
    check_and_load(fresh, read_state_dict(tmp_path))
    torch.testing.assert_close(
        fresh.decoder.layers[1].fc2.weight, model.decoder.layers[1].fc2.weight
    )


def test_checkpoint_with_missing_or_unexpected_keys_is_refused_naming_them(tmp_path, tiny):
    model, _ = tiny
    state = {k: v for k, v in model.state_dict().items() if "decoder.layers.1.fc1" not in k}
    state["encoder.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointMismatch) as err:
        check_and_load(OFAModel(model.config), state)
    message = str(err.value)
    assert "2 missing: decoder.layers.1.fc1.bias, decoder.layers.1.fc1.weight" in message
    assert "1 unexpected: encoder.extra_head.weight" in message


def test_checkpoint_with_a_wrong_shape_is_refused(tiny):
    model, _ = tiny
    state = dict(model.state_dict())
    state["encoder.image_proj.weight"] = torch.zeros(7, 1024)
    with pytest.raises(CheckpointMismatch, match="encoder.image_proj.weight"):
        check_and_load(OFAModel(model.config), state)


class Payload:
    """Any pickled object that is not a tensor: a full ``torch.load`` would construct it."""


def test_pickled_non_tensor_payload_is_refused_by_weights_only_load(tmp_path):
    torch.save({"encoder.x": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        read_state_dict(tmp_path)
