"""``--captioner ofa:random-tiny`` through the real prepare pipeline, on the loop and on Ray."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    from pipelines.demo import build_corpus

    return build_corpus(str(tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="module")
def loop_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loop") / "run"
    _prepare(corpus, out, "local")
    return out


def _prepare(manifest: str, out: Path, runner: str) -> None:
    from pipelines.config import PrepareConfig
    from pipelines.prepare import EngineOptions, prepare

    cfg = PrepareConfig(out=str(out), shard_size=4, captioner="ofa:random-tiny")
    prepare(manifest, cfg, EngineOptions(runner=runner), progress=False)


def test_prepare_with_ofa_random_tiny_writes_ofa_captions_into_shards(loop_run):
    from captioner import load_captioner
    from shards import iter_samples

    samples = list(iter_samples(str(loop_run)))
    assert samples
    captioner = load_captioner("ofa:random-tiny")
    for sample in samples:
        assert sample["json"]["caption_model"] == "ofa:random-tiny"
        words = sample["caption.txt"].split()
        assert 0 < len(words) <= 16
        # made from the CPU worker's uint8 frame: the caption the shard's own JPEG gets
        frame = Image.open(io.BytesIO(sample["jpg"]))
        assert sample["caption.txt"] == captioner.caption([frame])[0]
    stats = json.loads((loop_run / "stats.json").read_text())
    assert stats["seconds_by_stage"]["caption_input"] > 0  # the resize ran with the CPU stages


def test_ray_caption_actors_get_cpu_prepared_frames_and_write_the_same_samples(
    corpus, loop_run, tmp_path
):
    _prepare(corpus, tmp_path / "ray", "ray")
    tars = {p.name: p.read_bytes() for p in (loop_run / "shards").glob("*.tar")}
    assert tars
    assert {p.name: p.read_bytes() for p in (tmp_path / "ray" / "shards").glob("*.tar")} == tars
    stats = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert stats["seconds_by_stage"]["caption_input"] > 0
