"""Text-video retrieval on a prepared downstream set: R@1/5/10, MdR, MnR, with and without DSL.

Each shard sample is one (video, text) pair; the text is the sample's ``txt`` (for a captioned
set such as MSR-VTT the pipeline writes the caption there). Rows of ``sim`` are texts, columns
videos, in the same order, so the ground truth is the diagonal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from trainer.data import normalize_pixels
from trainer.metrics import dual_softmax, retrieval_metrics
from trainer.model import ClipViP

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_pairs(
    model: ClipViP, batches: Iterable[dict[str, Any]], device: torch.device, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(text features (N, E), video features (N, E), keys) over every batch, on the CPU.

    No pairs (one rank's share of a split with fewer shards than ranks) is not an error here:
    ``gather_pairs`` decides whether the whole split is empty.
    """
    was_training = model.training
    model.eval()
    texts, videos, keys = [], [], []
    for batch in tqdm(batches, desc="encode", unit="batch", disable=not progress):
        for key, error in batch.get("errors", []):
            log.warning("evaluation skips %s: %s", key, error)
        if not batch["keys"]:
            continue
        pixels = normalize_pixels(batch["video"].to(device))
        videos.append(model.encode_video(pixels).float().cpu())
        tokens = {k: v.to(device) for k, v in batch["subtitle"].items()}
        texts.append(model.encode_text(**tokens).float().cpu())
        keys += batch["keys"]
    model.train(was_training)
    if not keys:
        return torch.empty(0), torch.empty(0), []
    return torch.cat(texts), torch.cat(videos), keys


def gather_pairs(
    text: torch.Tensor, video: torch.Tensor, keys: list[str], source: str
) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """Every rank's encoded pairs on rank 0, in key order (``None`` on the other ranks).

    Why key order: the pairs then do not depend on how many ranks encoded them or in which
    order the loader met the shards, so one process and N ranks score exactly the same
    matrix. Raises on rank 0 when there is no pair at all, or a key twice (two samples would
    each be the other's positive and negative).
    """
    parts = [(text, video, keys)]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        main = dist.get_rank() == 0
        gathered: list[Any] = [None] * dist.get_world_size() if main else []
        dist.gather_object(parts[0], gathered if main else None, dst=0)
        if not main:
            return None
        parts = gathered
    pairs = sorted(
        ((key, t, v) for text, video, keys in parts for key, t, v in zip(keys, text, video)),
        key=lambda pair: pair[0],
    )
    if not pairs:
        raise ValueError(f"no decodable samples to evaluate in {source}")
    if len({key for key, _, _ in pairs}) != len(pairs):
        raise ValueError(f"{source} holds a key twice")
    return (
        torch.stack([t for _, t, _ in pairs]),
        torch.stack([v for _, _, v in pairs]),
        [key for key, _, _ in pairs],
    )


def retrieval_report(text: torch.Tensor, video: torch.Tensor) -> dict[str, dict[str, float]]:
    """All four tables: t2v and v2t, plain and with Dual Softmax (inference-time only).

    DSL for t2v rescales each video's column by a softmax over the texts; for v2t each text's
    column by a softmax over the videos: the same prior, seen from the other side.
    """
    sim = text @ video.T  # (texts, videos)
    return {
        "t2v": retrieval_metrics(sim),
        "v2t": retrieval_metrics(sim.T),
        "t2v_dsl": retrieval_metrics(dual_softmax(sim)),
        "v2t_dsl": retrieval_metrics(dual_softmax(sim.T)),
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
