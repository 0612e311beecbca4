"""Stage 4, caption: a short caption of each clip's middle frame, batched across clips."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from captioner import Captioner, load_captioner
from captioner.registry import input_prep
from pipelines.config import PrepareConfig
from pipelines.record import Clip, split_twins
from pipelines.stages.base import StageError

# A decoded middle frame, or the array ``caption_input`` made from it for the captioner.
CaptionInput = Image.Image | np.ndarray

log = logging.getLogger(__name__)


def run_captioner(cfg: PrepareConfig) -> Captioner | None:
    """The ``Captioner`` this run's caption workers load (``None`` for ``--captioner none``);
    one function, so every engine loads the same model the same way."""
    return load_captioner(cfg.captioner, cfg.caption_max_words, precision=cfg.caption_precision)


def caption_input(clip: Clip, cfg: PrepareConfig) -> Clip:
    """The CPU half of captioning, on the CPU workers: the middle frame as the model's input.

    Only for captioners with an ``ImagePrep`` (OFA: a square uint8 frame at its resolution);
    the caption worker then only normalises and captions (see ``captioner.base.ImagePrep``).
    """
    prep = input_prep(cfg.captioner)
    if prep is None:
        return clip
    try:
        clip.caption_input = prep(clip.jpg or b"")
    except (OSError, ValueError) as exc:
        raise StageError(f"middle frame is not a readable image: {exc}") from exc
    return clip


def caption_clips(clips: Sequence[Clip], captioner: Captioner | None, batch_size: int) -> None:
    """Caption every clip still ok, ``batch_size`` images per model call, in place.

    Images that fail to decode fail only their clip. A batch the captioner fails on is retried
    in halves (see ``caption_batch``), so nothing is lost to one bad image or one GPU out of
    memory, and nothing is lost silently: what still fails alone is recorded with its reason.
    """
    if captioner is None:
        return
    todo: list[tuple[Clip, CaptionInput]] = []
    leads, twins = split_twins(clips)  # rows of one clip: one caption, made once
    for clip in leads:
        if clip.caption_input is not None:  # made by ``caption_input`` on a CPU worker
            todo.append((clip, clip.caption_input))
            continue
        try:
            todo.append((clip, Image.open(io.BytesIO(clip.jpg or b"")).convert("RGB")))
        except OSError as exc:
            clip.fail("caption", f"middle frame is not a readable image: {exc}")
    for i in range(0, len(todo), batch_size):
        caption_batch(captioner, todo[i : i + batch_size])
    for twin, lead in twins:
        if not lead.ok:
            twin.share(lead)  # its failure, stage and reason
            continue
        twin.caption, twin.caption_model = lead.caption, lead.caption_model
        twin.caption_input = None


def caption_batch(
    captioner: Captioner, batch: list[tuple[Clip, CaptionInput]], depth: int = 0
) -> None:
    """Caption ``batch`` in one call; if the captioner raises, halve the batch and retry each half.

    Why halves: a model error on a batch is either the batch's size (CUDA out of memory on a
    large batch, the common case on a shared GPU) or one image that breaks the model. Halving
    retries the first at a size that fits and isolates the second in log2(batch) rounds, so only
    the image at fault fails (stage ``caption``, the error as reason). Captions do not depend on
    the batch (the captioner contract), so a retried clip gets the caption it would have got.
    The first split of a batch is logged as a warning.
    """
    t0 = time.perf_counter()
    try:
        texts = _caption(captioner, [item for _, item in batch])
    except (RuntimeError, ValueError) as exc:
        if len(batch) == 1:
            batch[0][0].fail("caption", f"captioner failed: {type(exc).__name__}: {exc}")
            return
        log.log(
            logging.WARNING if depth == 0 else logging.DEBUG,
            "captioner failed on a batch of %d images (%s: %s); retrying in halves",
            len(batch),
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )
        release_accelerator_memory()
        half = len(batch) // 2
        caption_batch(captioner, batch[:half], depth + 1)
        caption_batch(captioner, batch[half:], depth + 1)
        return
    share = (time.perf_counter() - t0) / len(batch)
    for (clip, _), text in zip(batch, texts, strict=True):
        clip.caption = text
        clip.caption_model = captioner.name
        clip.timings["caption"] = share
        clip.caption_input = None  # done with it: the writer need not carry it


def _caption(captioner: Captioner, items: list[CaptionInput]) -> list[str]:
    """Arrays when the CPU workers made them (then every clip has one: a clip whose
    ``caption_input`` failed is out of the run), decoded images otherwise."""
    if isinstance(items[0], np.ndarray):
        return captioner.caption_arrays(items)
    return captioner.caption(items)


def release_accelerator_memory() -> None:
    """Return cached CUDA blocks after a failed call, so the retry sees the memory it freed."""
    torch = sys.modules.get("torch")  # never import torch for a captioner that does not use it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
