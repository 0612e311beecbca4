"""Text-video retrieval on a prepared downstream set: R@1/5/10, MdR, MnR, with and without DSL.

Each shard sample is one (video, text) pair; the text is the sample's ``txt`` (for a captioned
set such as MSR-VTT the pipeline writes the caption there). Samples that show the same clip
(same source video and span: MSR-VTT's 20 sentences written one sample each) are one video
with several texts: it is encoded once and is one candidate, so a text is never scored
against copies of its own video, and a video is ranked by its best text (``trainer.metrics``).
With ``data.eval_all_sentences`` (``evaluate --all-sentences``) a sample written once per video
with all its sentences in the JSON (``clipvip manifest msrvtt``'s default) is scored the same
way: each sentence a text of that video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from trainer.data import normalize_pixels
from trainer.errors import TrainerError
from trainer.metrics import dual_softmax, retrieval_metrics
from trainer.model import ClipViP

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """One rank's encodings: a feature per text and one per distinct video, on the CPU."""

    keys: list[str] = field(default_factory=list)  # the text's sample, one per text
    text: list[torch.Tensor] = field(default_factory=list)  # (E,) per text
    video_of: list[str] = field(default_factory=list)  # the text's video identity
    # the text's place in its sample's sentence list when it came from one, else None
    sentence_of: list[str | None] = field(default_factory=list)
    videos: dict[str, torch.Tensor] = field(default_factory=dict)  # identity -> (E,)


@dataclass
class Pairs:
    """A whole split, ready to score: texts in key order, videos in identity order."""

    keys: list[str]
    text: torch.Tensor  # (N, E)
    video: torch.Tensor  # (V, E)
    text_video: np.ndarray  # (N,) the row of ``video`` each text shows

    @property
    def shared(self) -> int:
        """Videos with more than one text."""
        return int((np.bincount(self.text_video, minlength=len(self.video)) > 1).sum())


@torch.no_grad()
def encode_pairs(
    model: ClipViP, batches: Iterable[dict[str, Any]], device: torch.device, progress: bool = False
) -> Encoded:
    """Every batch's texts, and each video the first time this rank meets it.

    No pairs (one rank's share of a split with fewer shards than ranks) is not an error here:
    ``gather_pairs`` decides whether the whole split is empty.
    """
    was_training = model.training
    model.eval()
    out = Encoded()
    for batch in tqdm(batches, desc="encode", unit="batch", disable=not progress):
        for key, error in batch.get("errors", []):
            log.warning("evaluation skips %s: %s", key, error)
        if not batch["keys"]:
            continue
        ids = batch.get("video_ids") or batch["keys"]  # one per text
        rows = batch.get("text_rows") or range(len(ids))  # each text's row of batch["video"]
        fresh: dict[str, int] = {}
        for row, video_id in zip(rows, ids, strict=True):
            if video_id not in out.videos:
                fresh.setdefault(video_id, row)
        if fresh:
            pixels = normalize_pixels(batch["video"][list(fresh.values())].to(device))
            features = model.encode_video(pixels).float().cpu()
            out.videos.update(zip(fresh, features, strict=True))
        tokens = {k: v.to(device) for k, v in batch["subtitle"].items()}
        out.text += list(model.encode_text(**tokens).float().cpu())
        out.keys += batch["keys"]
        out.video_of += ids
        out.sentence_of += batch.get("sentence_ids") or [None] * len(batch["keys"])
    model.train(was_training)
    return out


def gather_pairs(share: Encoded, source: str) -> Pairs | None:
    """Every rank's encodings on rank 0, texts in key order (``None`` on the other ranks).

    Why key order: the pairs then do not depend on how many ranks encoded them or in which
    order the loader met the shards, so one process and N ranks score exactly the same
    matrix. Raises on rank 0 when there is no pair at all, or a key twice (two samples would
    each be the other's positive and negative).
    """
    parts = [share]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        main = dist.get_rank() == 0
        gathered: list[Any] = [None] * dist.get_world_size() if main else []
        dist.gather_object(share, gathered if main else None, dst=0)
        if not main:
            return None
        parts = gathered
    texts = sorted(
        (
            item
            for part in parts
            for item in zip(part.keys, part.text, part.video_of, part.sentence_of, strict=True)
        ),
        key=lambda item: item[0],
    )
    if not texts:
        raise TrainerError(f"no decodable samples to evaluate in {source}")
    if len({key for key, _, _, _ in texts}) != len(texts):
        raise TrainerError(f"{source} holds a key twice")
    texts = _once_per_video(texts, source)
    videos: dict[str, torch.Tensor] = {}
    for part in parts:  # a video met by two ranks: either encoding (the same clip)
        for video_id, feature in part.videos.items():
            videos.setdefault(video_id, feature)
    order = sorted(videos)
    row = {video_id: i for i, video_id in enumerate(order)}
    return Pairs(
        keys=[key for key, _, _, _ in texts],
        text=torch.stack([feature for _, feature, _, _ in texts]),
        video=torch.stack([videos[video_id] for video_id in order]),
        text_video=np.array([row[video_id] for _, _, video_id, _ in texts], dtype=np.int64),
    )


def _once_per_video(texts: list[tuple[Any, ...]], source: str) -> list[tuple[Any, ...]]:
    """Texts with each place of a video's sentence list once (the first in key order).

    With ``--all-sentences``, every sample that lists a video's sentences expands to all of
    them; shards written one sample per sentence before ``sentence_index`` existed list all
    20 in each, so each sentence came 20 times and skewed every video-to-text rank. Keyed by
    place, not by words: two annotations of one video that happen to read the same are both
    scored, as they are in per-sentence shards.
    """
    seen: set[tuple[str, str]] = set()
    kept = []
    for item in texts:
        _, _, video_id, sentence = item
        if sentence is not None:
            if (video_id, sentence) in seen:
                continue
            seen.add((video_id, sentence))
        kept.append(item)
    if len(kept) < len(texts):
        log.warning(
            "%s: %d texts repeat a listed sentence their video already has (samples written "
            "one per sentence, each listing all of them); each listed sentence is scored once",
            source,
            len(texts) - len(kept),
        )
    return kept


def retrieval_report(
    text: torch.Tensor, video: torch.Tensor, text_video: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """All four tables: t2v and v2t, plain and with Dual Softmax (inference-time only).

    ``text_video[i]``: the row of ``video`` that text i shows (default: row i, one text per
    video). Dual Softmax rescales each video's column by a softmax over the texts; both
    directions rank that one matrix (v2t its transpose), as the official evaluation does
    (``sim * softmax(sim * 100, axis=0)`` in CLIP-ViP's ``run_video_retrieval.py``), so DSL
    figures compare with the paper's.
    """
    sim = text @ video.T  # (texts, videos)
    owner = np.arange(len(text)) if text_video is None else np.asarray(text_video)
    each = np.arange(len(video))
    dsl = dual_softmax(sim)
    return {
        "t2v": retrieval_metrics(sim, owner, each),
        "v2t": retrieval_metrics(sim.T, each, owner),
        "t2v_dsl": retrieval_metrics(dsl, owner, each),
        "v2t_dsl": retrieval_metrics(dsl.T, each, owner),
    }


def rsum(report: dict[str, dict[str, float]]) -> float:
    """R@1 + R@5 + R@10 of both directions (no DSL): the model-selection score."""
    return sum(report[d][r] for d in ("t2v", "v2t") for r in ("R1", "R5", "R10"))


def format_report(report: dict[str, dict[str, float]]) -> str:
    lines = [f"{'':9s} {'R@1':>6s} {'R@5':>6s} {'R@10':>6s} {'MdR':>6s} {'MnR':>7s}"]
    for name, m in report.items():
        lines.append(
            f"{name:9s} {m['R1']:6.1f} {m['R5']:6.1f} {m['R10']:6.1f} "
            f"{m['MdR']:6.1f} {m['MnR']:7.2f}"
        )
    return "\n".join(lines)
