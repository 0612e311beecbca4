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


def test_dual_softmax_of_integer_scores_is_float_not_all_zeros() -> None:
    """Integer scores (counts, votes) come back as floats: cast back to int they were all 0."""
    sim = np.array([[2, 0, 1], [1, 3, 0], [0, 1, 2]])
    s = sim.astype(np.float64)
    e = np.exp(0.5 * (s - s.max(axis=0)))
    expected = s * e / e.sum(axis=0, keepdims=True)
    out = dual_softmax(sim, temperature=0.5)
    assert out.dtype == np.float64 and out.any()
    np.testing.assert_allclose(out, expected)
    assert dual_softmax(sim > 0).dtype == np.float64
    tensor = dual_softmax(torch.tensor(sim), temperature=0.5)
    assert tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6)
    assert retrieval_metrics(out)["R1"] == 100.0  # the diagonal wins, as in the integer scores


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dual_softmax_keeps_a_float_dtype(dtype: type) -> None:
    sim = np.array([[0.5, 0.1], [0.4, 0.3]], dtype=dtype)
    assert dual_softmax(sim).dtype == dtype
    for tdtype in (torch.float32, torch.float64):
        assert dual_softmax(torch.tensor([[0.5, 0.1], [0.4, 0.3]], dtype=tdtype)).dtype == tdtype


def test_dual_softmax_demotes_a_hub_video() -> None:
    # video 0 is close to every text (a hub); text 1 still prefers it before DSL
    sim = np.array([[0.90, 0.10], [0.80, 0.78]])
    assert retrieval_metrics(sim)["R1"] == 50.0
    assert retrieval_metrics(dual_softmax(sim, temperature=100))["R1"] == 100.0


def test_the_report_ranks_one_dual_softmax_matrix_both_ways_as_the_official_evaluation() -> None:
    from trainer.evaluate import retrieval_report

    # text i is the unit vector e_i, so sim = video.T; video 0 is a hub both texts rank first
    sim = np.array([[0.64, 0.27], [0.04, 0.02]], dtype=np.float32)
    report = retrieval_report(torch.eye(2), torch.tensor(sim.T))
    assert report["t2v"]["R1"] == 50.0 and report["t2v_dsl"]["R1"] == 100.0
    # v2t ranks the columns of sim * softmax(100 sim, axis=0): within a column the factor only
    # grows with sim, so v2t with DSL ranks the texts as plain v2t does (the official rule; a
    # softmax over the videos of each text instead would score 100 here)
    assert report["v2t_dsl"] == retrieval_metrics(dual_softmax(sim).T)
    assert report["v2t_dsl"]["R1"] == report["v2t"]["R1"]


def test_several_texts_per_video_rank_each_text_against_the_videos_once() -> None:
    # texts 0, 1 show video 0; text 2 shows video 1 (rows texts, columns videos)
    sim = np.array([[0.9, 0.2], [0.1, 0.3], [0.4, 0.8]])
    owner = np.array([0, 0, 1])
    t2v = retrieval_metrics(sim, owner, np.arange(2))
    assert t2v["MnR"] == pytest.approx((1 + 2 + 1) / 3)  # text 1 is beaten by video 1
    assert t2v["R1"] == pytest.approx(200 / 3)


def test_a_video_with_several_texts_is_ranked_by_its_best_text() -> None:
    # videos as queries over texts 0..3; video 0 owns texts 0 and 1, video 1 owns 2 and 3
    sim_t2v = np.array([[0.2, 0.5], [0.7, 0.1], [0.6, 0.9], [0.3, 0.4]])
    owner = np.array([0, 0, 1, 1])
    v2t = retrieval_metrics(sim_t2v.T, np.arange(2), owner)
    # video 0: best own text 0.7, no other text as high -> rank 1; video 1: best own 0.9 -> 1
    assert v2t["R1"] == 100.0
    # its other own text never counts against it: lower the best one below a stranger
    sim_t2v[2, 1] = 0.45  # video 1: own texts 0.45 and 0.4, stranger text 0 scores 0.5
    assert retrieval_metrics(sim_t2v.T, np.arange(2), owner)["MnR"] == pytest.approx(1.5)


def test_ids_reproduce_the_diagonal_and_bad_ids_or_scores_are_refused() -> None:
    sim = np.random.default_rng(1).normal(size=(7, 7))
    assert retrieval_metrics(sim, np.arange(7), np.arange(7)) == retrieval_metrics(sim)
    with pytest.raises(ValueError, match="no ground-truth"):
        retrieval_metrics(sim[:, :3], np.arange(7), np.arange(3))
    with pytest.raises(ValueError, match="both"):
        retrieval_metrics(sim, np.arange(7))
    sim[2, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        retrieval_metrics(sim)
