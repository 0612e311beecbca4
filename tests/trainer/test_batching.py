"""Partial batches from loader workers merged into full ones; a short rank's fresh pass."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from trainer.config import load_config
from trainer.data import concat_batches, merge_partial_batches, split_batch
from trainer.train import BatchStream, plan_steps


def _batch(keys: list[str], caption: bool = True, errors: int = 0) -> dict[str, Any]:
    n = len(keys)
    codes = torch.tensor([int(k[1:]) for k in keys], dtype=torch.long)
    tokens = {"input_ids": codes[:, None].repeat(1, 3), "attention_mask": torch.ones(n, 3)}
    return {
        "keys": list(keys),
        "video_ids": [f"v{k}" for k in keys],
        "errors": [(f"bad{i}", "DecodeError") for i in range(errors)],
        "video": codes.float()[:, None, None].repeat(1, 2, 3),
        "frame": codes.float()[:, None],
        "subtitle": tokens,
        "caption": {k: v.clone() for k, v in tokens.items()} if caption else None,
    }


def _worker_batches(sizes: list[int], start: int = 0) -> list[dict[str, Any]]:
    out, i = [], start
    for n in sizes:
        out.append(_batch([f"k{j}" for j in range(i, i + n)]))
        i += n
    return out


def test_worker_partials_are_merged_into_full_batches() -> None:
    """The review's case: 10 clips, batch 4, 3 workers gave [4, 3, 1, 2]; merged, [4, 4, 2],
    every sample once, and each row's fields still belong together."""
    merged = list(merge_partial_batches(_worker_batches([4, 3, 1, 2]), 4))
    assert [len(b["keys"]) for b in merged] == [4, 4, 2]
    keys = [k for b in merged for k in b["keys"]]
    assert sorted(keys, key=lambda k: int(k[1:])) == [f"k{i}" for i in range(10)]
    for b in merged:
        codes = [int(k[1:]) for k in b["keys"]]
        assert b["video_ids"] == [f"vk{c}" for c in codes]
        assert b["video"][:, 0, 0].tolist() == codes and b["frame"][:, 0].tolist() == codes
        assert b["subtitle"]["input_ids"][:, 0].tolist() == codes
        assert b["caption"]["input_ids"][:, 0].tolist() == codes


def test_merge_joins_captions_errors_and_splits_the_excess() -> None:
    a, b = _batch(["k0", "k1", "k2"], errors=1), _batch(["k3", "k4"], caption=False, errors=2)
    both = concat_batches(a, b)
    assert both["keys"] == ["k0", "k1", "k2", "k3", "k4"] and len(both["errors"]) == 3
    assert both["caption"] is None and both["video"].shape[0] == 5
    head, rest = split_batch(both, 4)
    assert head["keys"] == ["k0", "k1", "k2", "k3"] and rest["keys"] == ["k4"]
    assert len(head["errors"]) == 3 and rest["errors"] == []
    assert rest["subtitle"]["input_ids"].shape == (1, 3)
    merged = list(merge_partial_batches([a, b], 4))
    assert [len(x["keys"]) for x in merged] == [4, 1]
    assert sum(len(x["errors"]) for x in merged) == 3


def test_merge_passes_full_and_empty_batches_and_refuses_text_rows() -> None:
    empty = {"keys": [], "video_ids": [], "errors": [("bad", "DecodeError")]}
    batches = [*_worker_batches([2]), empty, *_worker_batches([4], start=2)]
    merged = list(merge_partial_batches(batches, 4))
    assert [len(b["keys"]) for b in merged] == [0, 4, 2]
    with pytest.raises(ValueError, match="text_rows"):
        concat_batches({**_batch(["k0"]), "text_rows": [0]}, _batch(["k1"]))


def test_one_rank_epoch_matches_the_plan() -> None:
    """plan_steps counts ceil(total / batch_size) micro-batches per epoch for one rank; the
    stream over a loader whose workers end with partial batches gives exactly that many, and
    no batch of one (a batch without negatives)."""
    cfg = load_config("tiny", {"data.batch_size": 4, "epochs": 1, "max_steps": 0, "grad_accum": 1})
    steps, per_epoch = plan_steps(cfg, 10, world=1)
    stream = BatchStream(lambda ep, rerun=0: _worker_batches([4, 3, 1, 2]), per_epoch, 4, False)
    it = iter(stream)
    epoch = [next(it) for _ in range(steps)]
    assert [len(b["keys"]) for b in epoch] == [4, 4, 2]
    assert stream.epoch == 0 and stream.position == steps
    assert len(next(it)["keys"]) == 4 and stream.epoch == 1  # the next epoch starts afresh


def test_short_rank_goes_on_into_a_fresh_pass_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With several ranks every rank takes per_epoch full batches; a rank whose shards give
    fewer goes on into a pass made differently (rerun 1, 2, ...), not the same batches again,
    and says so once, by rank."""
    calls: list[tuple[int, int]] = []

    def make(epoch: int, rerun: int = 0) -> list[dict[str, Any]]:
        calls.append((epoch, rerun))
        base = 1000 * epoch + 100 * rerun  # a different pass gives different samples
        return _worker_batches([4, 3, 1], start=base)  # 2 full batches after merging

    stream = BatchStream(make, per_epoch=5, batch_size=4, full_batches=True, rank=1)
    it = iter(stream)
    with caplog.at_level(logging.WARNING, logger="trainer.train"):
        first = [next(it) for _ in range(5)]
        second = [next(it) for _ in range(5)]
    keys = [tuple(b["keys"]) for b in first]
    assert len(set(keys)) == 5, "a short rank replayed batches of the same epoch"
    assert all(len(b["keys"]) == 4 for b in first + second)
    assert calls[:3] == [(0, 0), (0, 1), (0, 2)] and (1, 0) in calls
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "rank 1" in warnings[0] and "2 full batch(es)" in warnings[0] and " 5 " in warnings[0]
    assert "more shards than ranks x workers" in warnings[0]
    # resuming mid-epoch, inside a fresh pass, replays to the same batch
    again = BatchStream(make, per_epoch=5, batch_size=4, full_batches=True, epoch=0, position=3)
    assert tuple(next(iter(again))["keys"]) == keys[3]


def test_errors_of_batches_not_trained_on_ride_on_the_next_batch() -> None:
    """A batch whose every sample failed is not trained on, nor (with several ranks) a partial
    one; their skipped samples still reach the run's skipped_samples count, which sums the
    errors of the batches trained on."""
    failed = {**_batch([]), "errors": [("bad0", "DecodeError"), ("bad1", "DecodeError")]}

    def make(epoch: int, rerun: int = 0) -> list[dict[str, Any]]:
        start = 100 * (epoch + rerun)
        partial = {**_batch([f"k{start + 9}"]), "errors": [("bad2", "DecodeError")]}
        return [failed, _batch([f"k{start + j}" for j in range(4)]), partial]

    stream = BatchStream(make, per_epoch=2, batch_size=4, full_batches=True)
    it = iter(stream)
    first, second = next(it), next(it)
    assert [len(b["keys"]) for b in (first, second)] == [4, 4]
    assert [k for k, _ in first["errors"]] == ["bad0", "bad1"]
    # the partial batch left out at the end of the first pass, then the next pass's failed one
    assert [k for k, _ in second["errors"]] == ["bad2", "bad0", "bad1"]
