"""Shared fixtures: a random tiny CLIP folder and small shards made by the real pipeline.

The clips are short lavfi test sources (distinct scenes and colours, so retrieval is
learnable); the captions come from a deterministic test captioner that names the frame's mean
colour, registered for the session only, so every sample has a caption.txt.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (key, lavfi source, subtitle)
CLIPS = [
    ("red", "color=c=red", "a plain red screen"),
    ("blue", "color=c=blue", "the whole picture is blue"),
    ("green", "color=c=green", "green everywhere you look"),
    ("bars", "smptebars", "television colour bars"),
    ("testsrc", "testsrc", "a moving test pattern with numbers"),
    ("rgb", "rgbtestsrc", "red green and blue stripes"),
    ("mandel", "mandelbrot", "zooming into a fractal"),
    ("life", "life=ratio=0.3:mold=5", "the game of life on a grid"),
    ("yellow", "color=c=yellow", "bright yellow all over"),
    ("noise", "cellauto=rule=30", "a cellular automaton growing"),
]


class MeanColourCaptioner:
    """Test captioner: 'mean colour RRGGBB' of the frame, quantised (deterministic, distinct)."""

    name = "mean-colour"
    max_words = 16

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        out = []
        for img in images:
            mean = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
            out.append("mean colour " + "".join(f"{int(v) // 16:x}" for v in mean))
        return out


def _make_clip(path: Path, source: str) -> None:
    name, _, opts = source.partition("=")
    spec = f"{name}=size=64x48:rate=10" + (f":{opts}" if opts else "")
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        spec,
        "-t",
        "1.6",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "8",
        str(path),
    ]
    subprocess.run(cmd, check=True, timeout=60)


def build_shards(
    folder: Path, clips: list[tuple[str, str, str]], shard_size: int, texts_per_video: int = 1
) -> Path:
    """Videos -> manifest -> `pipelines.prepare` (local runner) -> RUN folder with index.json.
    ``texts_per_video`` > 1 writes each video that many times (keys KEY-0, KEY-1, ...), with
    its one text, as a set with several sentences per video is written one sample each."""
    from captioner import registry
    from pipelines.config import PrepareConfig
    from pipelines.manifest import write_manifest
    from pipelines.prepare import EngineOptions, prepare

    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for key, source, text in clips:
        path = videos / f"{key}.mp4"
        if not path.exists():
            _make_clip(path, source)
        for k in range(texts_per_video):
            name = key if texts_per_video == 1 else f"{key}-{k}"
            rows.append({"key": name, "video": str(path), "text": text, "dataset": "trainer-test"})
    manifest = folder / "manifest.jsonl"
    write_manifest(rows, str(manifest))
    registry.BACKENDS["mean-colour"] = lambda arg, max_words, device, precision: (
        MeanColourCaptioner()
    )
    try:
        cfg = PrepareConfig(
            out=str(folder / "run"),
            name="t",
            shard_size=shard_size,
            captioner="mean-colour",
            frame_short_side=None,
        )
        prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    finally:
        registry.BACKENDS.pop("mean-colour", None)
    return folder / "run"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture(scope="session")
def train_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 clips in 2 shards of 4 (so 2 ranks get one shard each)."""
    return build_shards(tmp_path_factory.mktemp("shards8"), CLIPS[:8], shard_size=4)
