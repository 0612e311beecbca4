"""Retrieval metrics and Dual Softmax, on numpy arrays or torch tensors.

``sim`` has one row per query and one column per candidate; the ground truth of row i is
column i (one text per video, in the same order), or, for sets with several texts per video
(MSR-VTT's 20 sentences written one sample each), every candidate with the query's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from trainer.errors import TrainerError

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def retrieval_metrics(
    sim: np.ndarray | torch.Tensor,
    query_ids: Sequence[int] | np.ndarray | None = None,
    candidate_ids: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """R@1/5/10 in percent, median and mean rank (1-based) of each row's ground truth.

    Query i and candidate j are a ground-truth pair when ``query_ids[i] == candidate_ids[j]``;
    without ids, when i == j (a square matrix). A query with several ground-truth candidates
    (a video and its 20 sentences, video to text) is ranked by its best one, as is usual for
    multi-sentence retrieval: its rank is 1 + the number of other candidates scoring at least
    as high. Ties count against the query, so a collapsed model (all scores equal) gets rank N,
    not a perfect 1.
    """
    s = sim.detach().float().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim)
    if (query_ids is None) != (candidate_ids is None):
        raise ValueError("retrieval_metrics wants both query_ids and candidate_ids, or neither")
    if query_ids is None:
        if s.ndim != 2 or s.shape[0] != s.shape[1]:
            raise ValueError(f"retrieval_metrics wants a square matrix, got shape {s.shape}")
        truth = np.eye(len(s), dtype=bool)
    else:
        rows, cols = np.asarray(query_ids), np.asarray(candidate_ids)
        if s.ndim != 2 or s.shape != (len(rows), len(cols)):
            raise ValueError(f"ids for {len(rows)} x {len(cols)}, scores of shape {s.shape}")
        truth = rows[:, None] == cols[None, :]
        if not truth.any(axis=1).all():
            missing = int(np.flatnonzero(~truth.any(axis=1))[0])
            raise ValueError(f"query {missing} has no ground-truth candidate")
    if not np.isfinite(s).all():  # NaN compares false everywhere: it would rank first
        raise TrainerError("scores are not all finite (a diverged model?)")
    best = np.where(truth, s, -np.inf).max(axis=1, keepdims=True)
    ranks = 1 + ((s >= best) & ~truth).sum(axis=1)  # (queries,) 1-based, pessimistic on ties
    return {
        "R1": float(np.mean(ranks <= 1) * 100),
        "R5": float(np.mean(ranks <= 5) * 100),
        "R10": float(np.mean(ranks <= 10) * 100),
        "MdR": float(np.median(ranks)),
        "MnR": float(np.mean(ranks)),
    }


def dual_softmax(sim: Array, temperature: float = 100.0) -> Array:
    """sim * softmax(temperature * sim) over the queries of each candidate (inference only).

    With rows = queries (texts) and columns = videos this is a softmax over the texts of each
    video: a video that every text finds close gets its scores damped (a "hub").

    The result is floating point: a float input keeps its dtype; integer (or bool) scores come
    back as float64 for numpy and as torch's default float dtype (float32) for a tensor, since
    cast back to integers the products of scores and probabilities would round to zero.
    """
    if isinstance(sim, torch.Tensor):
        if not sim.is_floating_point():
            sim = sim.to(torch.get_default_dtype())
        return sim * torch.softmax(temperature * sim, dim=0)
    given = np.asarray(sim)
    s = given.astype(np.float64)
    z = temperature * s
    z = np.exp(z - z.max(axis=0, keepdims=True))
    out = s * z / z.sum(axis=0, keepdims=True)
    return out.astype(given.dtype) if np.issubdtype(given.dtype, np.floating) else out
