"""Stage 4, caption: a short caption of each clip's middle frame, batched across clips."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

from PIL import Image

from captioner import Captioner
from pipelines.record import Clip


def caption_clips(clips: Sequence[Clip], captioner: Captioner | None, batch_size: int) -> None:
    """Caption every clip still ok, ``batch_size`` images per model call, in place.

    Images that fail to decode fail only their clip. A captioner error fails the whole batch's
    clips with its reason (the model, not the input, is at fault), so nothing is lost silently.
    """
    if captioner is None:
        return
    todo: list[tuple[Clip, Image.Image]] = []
    for clip in clips:
        if not clip.ok:
            continue
        try:
            todo.append((clip, Image.open(io.BytesIO(clip.jpg or b"")).convert("RGB")))
        except OSError as exc:
            clip.fail("caption", f"middle frame is not a readable image: {exc}")
    for i in range(0, len(todo), batch_size):
        batch = todo[i : i + batch_size]
        t0 = time.perf_counter()
        try:
            texts = captioner.caption([image for _, image in batch])
        except (RuntimeError, ValueError) as exc:
            for clip, _ in batch:
                clip.fail("caption", f"captioner failed: {type(exc).__name__}: {exc}")
            continue
        share = (time.perf_counter() - t0) / len(batch)
        for (clip, _), text in zip(batch, texts, strict=True):
            clip.caption = text
            clip.caption_model = captioner.name
            clip.timings["caption"] = share
