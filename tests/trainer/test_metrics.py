"""Retrieval metrics and Dual Softmax against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.metrics import dual_softmax, retrieval_metrics


def test_perfect_diagonal_scores_rank_one_everywhere() -> None:
    m = retrieval_metrics(np.eye(4))
    assert m == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "MdR": 1.0, "MnR": 1.0}


def test_hand_computed_ranks() -> None:
    # ranks of the diagonal: row0 -> 1, row1 -> 3, row2 -> 2
    sim = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.5], [0.1, 0.7, 0.4]])
    m = retrieval_metrics(sim)
    assert m["R1"] == pytest.approx(100 / 3)
    assert m["R5"] == 100.0
    assert m["MdR"] == 2.0
    assert m["MnR"] == pytest.approx(2.0)


def test_recall_at_5_and_10_with_twelve_candidates() -> None:
    n = 12
    sim = np.zeros((n, n))
    for i in range(n):  # ground truth of row i is beaten by exactly i candidates -> rank i + 1
        sim[i, i] = 1.0
        for j in range(i):
            sim[i, (i + 1 + j) % n] = 2.0
    m = retrieval_metrics(sim)
    assert m["R1"] == pytest.approx(100 / 12)
    assert m["R5"] == pytest.approx(500 / 12)
    assert m["R10"] == pytest.approx(1000 / 12)
    assert m["MdR"] == 6.5 and m["MnR"] == 6.5


def test_ties_count_against_the_query() -> None:
    m = retrieval_metrics(np.ones((5, 5)))
    assert m["R1"] == 0.0 and m["MdR"] == 5.0


def test_torch_input_gives_same_metrics_and_non_square_is_refused() -> None:
    sim = np.random.default_rng(0).normal(size=(6, 6))
    assert retrieval_metrics(torch.from_numpy(sim)) == retrieval_metrics(sim)
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))


def test_dual_softmax_is_sim_times_softmax_over_queries_per_candidate() -> None:
    sim = np.array([[0.5, 0.1], [0.4, 0.3]])
    e = np.exp(100 * sim)
    expected = sim * e / e.sum(axis=0, keepdims=True)
    np.testing.assert_allclose(dual_softmax(sim), expected)
    out = dual_softmax(torch.tensor(sim))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), expected)


def test_dual_softmax_demotes_a_hub_video() -> None:
    # video 0 is close to every text (a hub); text 1 still prefers it before DSL
    sim = np.array([[0.90, 0.10], [0.80, 0.78]])
    assert retrieval_metrics(sim)["R1"] == 50.0
    assert retrieval_metrics(dual_softmax(sim, temperature=100))["R1"] == 100.0
