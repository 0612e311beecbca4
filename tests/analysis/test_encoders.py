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
