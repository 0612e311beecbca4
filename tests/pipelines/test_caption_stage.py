"""The caption stage: a captioner error costs a retry in halves, not the batch's clips."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import Captioner, load_captioner
from pipelines.record import Clip
from pipelines.stages.caption import caption_clips


class Faulty(Captioner):
    """The real tiny OFA captioner behind two injected faults: a batch larger than
    ``fits`` raises CUDA's out-of-memory error, and any batch holding an all-black image raises
    as a model that breaks on one input would."""

    def __init__(self, inner: Captioner, fits: int = 1_000) -> None:
        self.inner, self.fits, self.name = inner, fits, inner.name
        self.calls: list[int] = []

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        self.calls.append(len(images))
        if len(images) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if any(np.asarray(im).max() == 0 for im in images):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.inner.caption(images)


@pytest.fixture(scope="module")
def tiny() -> Captioner:
    return load_captioner("ofa:random-tiny")


def _clips(n: int, black: set[int] = frozenset()) -> list[Clip]:
    rng = np.random.default_rng(7)
    clips = []
    for i in range(n):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        if i in black:
            pixels[:] = 0
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        clips.append(Clip(key=f"c{i}", row=i, video=f"v{i}.mp4", jpg=buf.getvalue()))
    return clips


def test_out_of_memory_batch_is_retried_in_halves_with_the_same_captions(tiny, caplog):
    clean = _clips(8)
    caption_clips(clean, tiny, batch_size=8)
    faulty = Faulty(tiny, fits=2)
    clips = _clips(8)
    with caplog.at_level(logging.WARNING, logger="pipelines.stages.caption"):
        caption_clips(clips, faulty, batch_size=8)
    assert all(c.ok for c in clips)
    assert [c.caption for c in clips] == [c.caption for c in clean]
    assert faulty.calls == [8, 4, 2, 2, 4, 2, 2]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "OutOfMemoryError" in warnings[0].getMessage()


def test_image_that_breaks_the_model_fails_alone_with_the_reason(tiny):
    clean = _clips(8, black={5})
    caption_clips(clean, tiny, batch_size=8)
    clips = _clips(8, black={5})
    caption_clips(clips, Faulty(tiny), batch_size=8)
    assert [c.key for c in clips if not c.ok] == ["c5"]
    assert clips[5].error.stage == "caption"
    assert "device-side assert" in clips[5].error.reason
    assert [c.caption for c in clips if c.ok] == [c.caption for c in clean if c.key != "c5"]


def test_captioner_that_always_fails_fails_every_clip_with_its_reason():
    class Broken(Captioner):
        name = "broken"

        def caption(self, images):
            raise ValueError("weights are NaN")

    clips = _clips(5)
    caption_clips(clips, Broken(), batch_size=4)
    assert all(
        c.error and c.error.reason == "captioner failed: ValueError: weights are NaN" for c in clips
    )
