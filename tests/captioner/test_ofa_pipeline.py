"""``--captioner ofa:random-tiny`` through the real prepare pipeline (local runner)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_prepare_with_ofa_random_tiny_writes_ofa_captions_into_shards(tmp_path):
    from pipelines.config import PrepareConfig
    from pipelines.demo import build_corpus
    from pipelines.prepare import EngineOptions, prepare
    from shards import iter_samples

    manifest = build_corpus(str(tmp_path / "corpus"))
    cfg = PrepareConfig(out=str(tmp_path / "run"), shard_size=4, captioner="ofa:random-tiny")
    prepare(manifest, cfg, EngineOptions(runner="local"), progress=False)
    samples = list(iter_samples(str(tmp_path / "run")))
    assert samples
    for sample in samples:
        assert sample["json"]["caption_model"] == "ofa:random-tiny"
        words = sample["caption.txt"].split()
        assert 0 < len(words) <= 16
