"""The embedding cache: reused across runs; a file that cannot be read is only recomputed."""

from __future__ import annotations

import numpy as np

from analysis.cache import EmbeddingCache


class CountingEncoder:
    """Deterministic vectors per text; counts what it was asked to embed."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def test_a_second_lookup_embeds_nothing(tmp_path):
    enc = CountingEncoder()
    EmbeddingCache(tmp_path, "enc1").lookup("s", ["a cat", "a dog"], enc)
    again = EmbeddingCache(tmp_path, "enc1")
    vecs = again.lookup("s", ["a dog", "a cat"], enc)
    assert enc.asked == ["a cat", "a dog"] and again.hits == 2
    assert vecs.tolist() == [[5, 1, 1], [5, 2, 1]]


def test_a_truncated_cache_file_is_recomputed_with_a_warning_naming_it(tmp_path, caplog):
    enc = CountingEncoder()
    EmbeddingCache(tmp_path, "enc1").lookup("s", ["a cat", "the dog"], enc)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])  # cut short, as a full disk or a half copy leaves
    with caplog.at_level("WARNING", logger="clipvip"):
        cache = EmbeddingCache(tmp_path, "enc1")
        vecs = cache.lookup("s", ["a cat", "the dog"], enc)
    assert str(path) in caplog.text and "cannot be read" in caplog.text
    assert cache.misses == 2 and vecs.tolist() == [[5, 2, 1], [7, 0, 1]]
    assert EmbeddingCache(tmp_path, "enc1").lookup("s", ["the dog"], enc).tolist() == [[7, 0, 1]]
    assert enc.asked == ["a cat", "the dog"] * 2  # rewritten whole: the third lookup was a hit
