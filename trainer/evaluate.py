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
from tqdm import tqdm

from trainer.data import normalize_pixels
from trainer.metrics import dual_softmax, retrieval_metrics
from trainer.model import ClipViP

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_pairs(
    model: ClipViP, batches: Iterable[dict[str, Any]], device: torch.device, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(text features (N, E), video features (N, E), keys) over every batch, on the CPU."""
    was_training = model.training
    model.eval()
    texts, videos, keys = [], [], []
    for batch in tqdm(batches, desc="encode", unit="batch", disable=not progress):
        if not batch["keys"]:
            continue
        pixels = normalize_pixels(batch["video"].to(device))
        videos.append(model.encode_video(pixels).float().cpu())
        tokens = {k: v.to(device) for k, v in batch["subtitle"].items()}
        texts.append(model.encode_text(**tokens).float().cpu())
        keys += batch["keys"]
        for key, error in batch.get("errors", []):
            log.warning("evaluation skips %s: %s", key, error)
    model.train(was_training)
    if not keys:
        raise ValueError("no decodable samples to evaluate")
    return torch.cat(texts), torch.cat(videos), keys


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
