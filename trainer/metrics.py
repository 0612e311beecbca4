"""Retrieval metrics and Dual Softmax, on numpy arrays or torch tensors.

``sim`` has one row per query and one column per candidate; the ground truth of row i is
column i (evaluation sets are one text per video, in the same order).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def retrieval_metrics(sim: np.ndarray | torch.Tensor) -> dict[str, float]:
    """R@1/5/10 in percent, median and mean rank (1-based) of the diagonal in each row.

    Ties count against the query: the rank is the number of candidates scoring at least as high
    as the ground truth, so a collapsed model (all scores equal) gets rank N, not a perfect 1.
    """
    s = sim.detach().float().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"retrieval_metrics wants a square matrix, got shape {s.shape}")
    truth = np.diag(s)[:, None]
    ranks = (s >= truth).sum(axis=1)  # (N,) 1-based, pessimistic on ties
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
    """
    if isinstance(sim, torch.Tensor):
        return sim * torch.softmax(temperature * sim, dim=0)
    s = np.asarray(sim, dtype=np.float64)
    z = temperature * s
    z = np.exp(z - z.max(axis=0, keepdims=True))
    return (s * z / z.sum(axis=0, keepdims=True)).astype(np.asarray(sim).dtype)
