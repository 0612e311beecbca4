"""What a run folder holds across restarts: a fresh start forgets an abandoned attempt, a
resume keeps its data and counts, checkpoints are pruned as configured and said so, the
logged lr is the one each update used."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainer import train as train_module
from trainer.checkpoint import best_record, prune_checkpoints
from trainer.config import load_config
from trainer.errors import TrainerError
from trainer.train import train

QUICK = {"log_every": 1, "data.num_workers": 0, "data.batch_size": 3}


def _logged(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def _scripted_rsum(monkeypatch: pytest.MonkeyPatch, scores: list[float | None]) -> None:
    """Validation runs for real; its rsum is taken from ``scores`` (None: the process dies)."""
    it = iter(scores)

    def scripted(report: dict) -> float:
        score = next(it)
        if score is None:
            raise RuntimeError("killed")
        return score

    monkeypatch.setattr(train_module, "rsum", scripted)


def test_a_restart_before_the_first_checkpoint_forgets_the_dead_attempts_best_and_logs(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 validates every step, saves nothing before dying at step 3's validation; its
    best/ (rsum 50 at step 2) and log lines stay behind. Attempt 2, with another lr (allowed:
    nothing trained with the first), scores lower: its best is its own, and log.jsonl holds
    its steps only, each once."""
    run, val = tmp_path / "run", str(train_shards)
    common = {**QUICK, "max_steps": 3, "save_every": 1000, "eval_every": 1}
    _scripted_rsum(monkeypatch, [10.0, 50.0, None, 1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match="killed"):
        train(load_config("tiny", common), str(train_shards), run, val_shards=val, progress=False)
    assert best_record(run / "checkpoints") == {"rsum": 50.0, "step": 2}
    assert [x["step"] for x in _logged(run) if "loss" in x] == [1, 2, 3]

    cfg = load_config("tiny", {**common, "optim.lr": 1e-9})
    summary = train(cfg, str(train_shards), run, val_shards=val, progress=False)
    assert summary["best"] == best_record(run / "checkpoints") == {"rsum": 3.0, "step": 3}
    # the dead attempt's validated weights are set aside, not lost
    assert best_record(run / "checkpoints", "best.abandoned") == {"rsum": 50.0, "step": 2}
    assert [x["step"] for x in _logged(run) if "loss" in x] == [1, 2, 3]
    assert [x["step"] for x in _logged(run) if "val/t2v/R1" in x] == [1, 2, 3]


@pytest.fixture(scope="module")
def interrupted(train_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped at its step-2 checkpoint (of 4), validated on the training shards."""
    run = tmp_path_factory.mktemp("interrupted") / "run"
    cfg = load_config("tiny", {**QUICK, "max_steps": 4, "save_every": 2})
    train(cfg, str(train_shards), run, val_shards=str(train_shards), progress=False, stop_after=2)
    return run


@pytest.mark.parametrize("option", ["shards", "val_shards"])
def test_resuming_on_other_shards_is_refused_naming_both(
    interrupted: Path, train_shards: Path, tmp_path: Path, option: str
) -> None:
    """The saved data positions index the run's own shards and an epoch-based plan counted
    their samples: other --shards (or --val-shards) are refused, data.json left as it was."""
    other = shutil.copytree(train_shards, tmp_path / "other")
    run = shutil.copytree(interrupted, tmp_path / "run")
    before = (run / "data.json").read_text()
    paths = {"shards": str(train_shards), "val_shards": str(train_shards), option: str(other)}
    cfg = load_config("tiny", {**QUICK, "max_steps": 4, "save_every": 2})
    flag = "--" + option.replace("_", "-")
    said = re.escape(f"{flag} {train_shards} and this command gives {other}")
    with pytest.raises(TrainerError, match=said):
        train(cfg, paths["shards"], run, val_shards=paths["val_shards"], progress=False)
    assert (run / "data.json").read_text() == before


def test_the_logged_lr_is_the_one_each_update_used(train_shards: Path, tmp_path: Path) -> None:
    """4 steps with a 2-step warmup: the updates run at peak x 1/2, 1, 1/2 (the cosine half
    way), 0; the first is no longer a no-op at lr 0."""
    cfg = load_config("tiny", {**QUICK, "max_steps": 4, "optim.warmup_ratio": 0.5})
    run = tmp_path / "run"
    train(cfg, str(train_shards), run, progress=False)
    peak = cfg.optim.lr
    assert [x["lr"] for x in _logged(run)] == pytest.approx([peak / 2, peak, peak / 2, 0.0])


def test_keep_checkpoints_prunes_older_steps_and_says_so(
    train_shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config("tiny", {**QUICK, "max_steps": 3, "save_every": 1, "keep_checkpoints": 1})
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        train(cfg, str(train_shards), run, progress=False)
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000003"]
    assert "removed older checkpoint(s) step-000001 (keep_checkpoints=1)" in caplog.text
    assert "removed older checkpoint(s) step-000002 (keep_checkpoints=1)" in caplog.text
    assert f"checkpoint saved in {run / 'checkpoints' / 'step-000003'}" in caplog.text


def test_keep_checkpoints_zero_keeps_every_step(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        (tmp_path / f"step-{step:06d}").mkdir()
    assert prune_checkpoints(tmp_path, keep_last=0, keep=set()) == []
    assert len(list(tmp_path.glob("step-*"))) == 3
    assert prune_checkpoints(tmp_path, keep_last=2, keep=set()) == [tmp_path / "step-000001"]


def _with_a_broken_clip(src: Path, dst: Path) -> Path:
    """A copy of the shards whose first shard's first mp4 is not a video."""
    import io
    import tarfile

    index = json.loads((src / "index.json").read_text())
    broken = False
    for shard in index["shardlist"]:
        (dst / shard["url"]).parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(src / shard["url"]) as tin, tarfile.open(dst / shard["url"], "w") as out:
            for member in tin.getmembers():
                data = tin.extractfile(member).read()
                if member.name.endswith(".mp4") and not broken:
                    data, broken = b"not a video", True
                    member.size = len(data)
                out.addfile(member, io.BytesIO(data))
    (dst / "index.json").write_text(json.dumps(index))
    return dst


def test_skipped_samples_count_on_across_a_resume(train_shards: Path, tmp_path: Path) -> None:
    """One clip that does not decode, met once per epoch: an epoch of 7 good clips is 3
    steps of batch 3 (3, 3, 1), so the checkpoint at step 3 has met it once and step 6 twice.
    The resumed run ends with the unbroken run's count, not with what it met since its
    restart."""
    shards = str(_with_a_broken_clip(train_shards, tmp_path / "broken"))
    cfg = load_config("tiny", {**QUICK, "max_steps": 6, "save_every": 3})
    whole = train(cfg, shards, tmp_path / "whole", progress=False)
    train(cfg, shards, tmp_path / "part", progress=False, stop_after=3)
    resumed = train(cfg, shards, tmp_path / "part", progress=False)
    assert whole["skipped_samples"] == resumed["skipped_samples"] == 2
    logged = [x["skipped_samples"] for x in _logged(tmp_path / "part")]
    assert logged == [x["skipped_samples"] for x in _logged(tmp_path / "whole")]


def test_resume_with_gradient_accumulation_and_two_workers_is_bit_identical(
    train_shards: Path, tmp_path: Path
) -> None:
    """grad_accum 2 and 2 loader workers (one shard each, their partial batches merged in the
    main process): the resumed run re-reads the epoch up to its position and ends with the
    unbroken run's weights and losses."""
    overrides = {**QUICK, "max_steps": 4, "save_every": 2, "grad_accum": 2}
    cfg = load_config("tiny", {**overrides, "data.num_workers": 2})
    train(cfg, str(train_shards), tmp_path / "whole", progress=False)
    train(cfg, str(train_shards), tmp_path / "part", progress=False, stop_after=2)
    train(cfg, str(train_shards), tmp_path / "part", progress=False)
    final = Path("checkpoints") / "step-000004" / "model.safetensors"
    a = load_file(str(tmp_path / "whole" / final))
    b = load_file(str(tmp_path / "part" / final))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = [[x["loss"] for x in _logged(tmp_path / r)] for r in ("whole", "part")]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_a_lost_latest_marker_resumes_from_the_newest_step_folder_not_afresh(
    interrupted: Path, train_shards: Path, tmp_path: Path
) -> None:
    """A crash between save_checkpoint's rename and its latest.txt write leaves a complete
    step folder nobody names: that is still a checkpoint, so the rerun resumes from it and
    nothing of the run is set aside or removed."""
    run = shutil.copytree(interrupted, tmp_path / "run")
    (run / "checkpoints" / "latest.txt").unlink()
    logged_before = _logged(run)
    cfg = load_config("tiny", {**QUICK, "max_steps": 4, "save_every": 2})
    train(cfg, str(train_shards), run, val_shards=str(train_shards), progress=False)
    steps = [x["step"] for x in _logged(run) if "loss" in x]
    assert steps == [1, 2, 3, 4]
    assert _logged(run)[: len(logged_before)] == logged_before
    assert not (run / "checkpoints" / "best.abandoned").exists()


def test_an_init_inside_the_abandoned_best_stops_instead_of_moving_it(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, val = tmp_path / "run", str(train_shards)
    common = {**QUICK, "max_steps": 3, "save_every": 1000, "eval_every": 1}
    _scripted_rsum(monkeypatch, [10.0, None])
    with pytest.raises(RuntimeError, match="killed"):
        train(load_config("tiny", common), str(train_shards), run, val_shards=val, progress=False)
    init = run / "checkpoints" / "best" / "model.safetensors"
    cfg = load_config("tiny", {**common, "model.init_checkpoint": str(init)})
    with pytest.raises(TrainerError, match="copy it out of the run folder first"):
        train(cfg, str(train_shards), run, val_shards=val, progress=False)
    assert init.is_file()


def test_shards_are_recorded_absolute_so_a_resume_from_another_folder_matches(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = shutil.copytree(train_shards, tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "a")
    run = tmp_path / "run"
    cfg = load_config("tiny", {**QUICK, "max_steps": 4, "save_every": 2})
    train(cfg, "data", run, progress=False, stop_after=2)
    assert json.loads((run / "data.json").read_text())["shards"] == str(here)
    monkeypatch.chdir(tmp_path)
    train(cfg, f"file://{here}/", run, progress=False)  # the same data, spelled otherwise
    assert [x["step"] for x in _logged(run) if "loss" in x] == [1, 2, 3, 4]
