"""Benchmarks measure like with like: the loader in its steady state, the baselines in the same
run, and both paths of an A/B giving the same output. No timings are asserted (they depend on
the machine); these check what is compared and that the lines are printed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from analysis.encoders import TfidfEncoder, embed
from benchmarks import gap, handoff, ofa, train


class _Numbers(torch.utils.data.IterableDataset):
    """Six samples per epoch, shared between the loader's workers; records the epochs read."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for i in range(worker, 6, workers):
            yield {"key": f"e{self.epoch}-{i}"}


def _factory(epoch: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        _Numbers(epoch),
        batch_size=4,
        num_workers=0,
        collate_fn=lambda rows: {"keys": [r["key"] for r in rows]},
    )


def test_loader_rate_skips_a_first_round_and_reads_on_across_epochs_in_one_iterator():
    figures, kept = train.loader_rate(_factory, batches=3)
    assert figures["warm_batches"] == 1 and figures["timed_batches"] == 3
    assert figures["timed_samples"] == sum(len(b["keys"]) for b in kept[1:]) == 12
    keys = [k for b in kept for k in b["keys"]]
    assert len(set(keys)) == len(keys) and {k.split("-")[0] for k in keys} >= {"e1", "e2"}
    assert "12 samples in 3 batches timed" in train.loader_line(figures)


def test_embed_in_input_order_gives_the_length_sorted_vectors():
    texts = ["a much longer sentence with many words", "short", "middle one here", "x y"]
    encoder = TfidfEncoder(dim=3)
    encoder.fit(texts)
    sorted_ = embed(encoder, texts, batch_size=2)
    plain = embed(encoder, texts, batch_size=2, sort_by_length=False)
    np.testing.assert_allclose(plain, sorted_, atol=1e-6)
    rates = gap.throughput(encoder, texts, batch_size=2, rounds=1)
    assert set(rates) == {"input_order", "length_sorted", "max_diff"}
    assert "input order (baseline)" in gap.ordering_line(rates, len(texts), 2, 1)


def test_handoff_check_fails_when_a_path_skipped_the_captioning():
    task = handoff.make_task(3, 8)
    captioned = handoff.T.caption(task, handoff.Instant(), handoff.PrepareConfig(out="unused"))
    good = pa.Table.from_pylist([{"task": captioned.to_bytes(), "cpu_node": "n"}])
    skipped = pa.Table.from_pylist([{"task": handoff.make_task(3, 8).to_bytes(), "cpu_node": "n"}])
    handoff.check_same({"whole task": good, "parcel": good})
    with pytest.raises(AssertionError):
        handoff.check_same({"whole task": good, "parcel": skipped})


def test_ofa_benchmark_times_the_pipeline_path_in_the_captioners_dtype(capsys):
    ofa.main(["--batches", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "dtype=float32 input=uint8 frames via caption_arrays" in out
    assert "encoder keys shared by the beams" in out and "caption worker, input" in out
