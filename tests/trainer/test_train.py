"""The trainer end to end on CPU: overfitting, exact resume, DDP equivalence, the decay rule."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from trainer.config import load_config
from trainer.model import ModelConfig, load_clipvip
from trainer.optim import no_decay_names
from trainer.train import train

HERE = Path(__file__).resolve().parent


def _load_ddp_step():
    spec = importlib.util.spec_from_file_location("ddp_step", HERE / "ddp_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


@pytest.fixture(scope="module")
def overfit_run(train_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained 100 steps on the 8 clips, validated on them."""
    from clipvip.cli import main

    run = tmp_path_factory.mktemp("overfit") / "run"
    code = main(
        [
            "train",
            "--config",
            "tiny",
            "--shards",
            str(train_shards),
            "--out",
            str(run),
            "--val-shards",
            str(train_shards),
            "--steps",
            "100",
            "--no-progress",
            "--set",
            "optim.lr=2e-3",
            "--set",
            "data.num_workers=0",
            "--set",
            "save_every=25",
        ]
    )
    assert code == 0
    return run


def test_tiny_model_overfits_eight_clips_and_evaluate_reports_r1_100(
    train_shards: Path,
    overfit_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from clipvip.cli import main

    run = overfit_run
    losses = _losses(run)
    assert losses[-1] < 0.1 * losses[0]
    assert (run / "checkpoints" / "best" / "model.safetensors").exists()
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    # eval_every 0 (tiny's default): validation with each checkpoint, every save_every steps
    assert [x["step"] for x in logged if "val/t2v/R1" in x] == [25, 50, 75, 100]
    assert (run / "tb").is_dir()
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(run),
            "--shards",
            str(train_shards),
            "--workers",
            "0",
            "--no-progress",
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["pairs"] == 8
    assert report["t2v"]["R1"] == 100.0 and report["v2t"]["R1"] == 100.0
    assert "t2v_dsl" in capsys.readouterr().out
    # evaluating on the split the run trained and selected on is flagged
    assert "optimistic" in caplog.text


def test_a_video_with_several_texts_is_one_candidate_decoded_once(
    overfit_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of the 8 clips written twice (two samples, one clip, as MSR-VTT's 20 sentences are):
    8 videos, 16 texts, and R@1 stays 100 both ways. Scored as 16 separate pairs, every text
    would meet its clip's copy as a negative scoring as high as its own video."""
    from clipvip.cli import main
    from trainer import data

    from .conftest import CLIPS, build_shards

    shards = build_shards(tmp_path / "twice", CLIPS[:8], shard_size=16, texts_per_video=2)
    decoded = []
    real = data.decode_frames
    monkeypatch.setattr(data, "decode_frames", lambda *a, **k: decoded.append(1) or real(*a, **k))
    out = tmp_path / "eval.json"
    command = ["evaluate", "--checkpoint", str(overfit_run), "--shards", str(shards)]
    assert main([*command, "--workers", "0", "--no-progress", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["pairs"], report["videos"]) == (16, 8)
    assert report["t2v"]["R1"] == 100.0 and report["v2t"]["R1"] == 100.0
    assert len(decoded) == 8, "the second sample of a clip reuses the first one's pixels"


def test_all_sentences_scores_a_videos_json_sentences_as_per_sentence_shards_do(
    overfit_run: Path, tmp_path: Path
) -> None:
    """MSR-VTT as `clipvip manifest msrvtt` writes it by default (one sample per video, its
    sentences in the JSON) evaluated with --all-sentences gives the figures of the same
    sentences written one sample each: same texts, same videos, same ranks. So do samples
    written one per sentence that each list all of them (``manifest msrvtt --per-sentence``,
    with its ``sentence_index`` and as written before it existed): each listed sentence counts
    once. A sentence an annotator wrote twice for one video counts twice in every layout, and
    per-sentence shards give the same figures with and without --all-sentences."""
    from clipvip.cli import main
    from pipelines.config import PrepareConfig
    from pipelines.manifest import write_manifest
    from pipelines.prepare import EngineOptions, prepare

    from .conftest import CLIPS, _make_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    variants: dict[str, list[dict]] = {"once": [], "each": [], "listed": [], "indexed": []}
    for key, source, text in CLIPS[:4]:
        _make_clip(videos / f"{key}.mp4", source)
        # an annotator wrote the last sentence twice: both annotations are scored
        sentences = [text, f"{text} again", "a short video", "a short video"]
        row = {"video": str(videos / f"{key}.mp4"), "dataset": "msrvtt"}
        variants["once"].append({**row, "key": key, "text": text, "sentences": sentences})
        for j, t in enumerate(sentences):
            each = {**row, "key": f"{key}-{j}", "text": t}
            variants["each"].append(each)
            variants["listed"].append({**each, "sentences": sentences})
            variants["indexed"].append({**each, "sentences": sentences, "sentence_index": j})
    for name, rows in variants.items():
        write_manifest(rows, str(tmp_path / f"{name}.jsonl"))
        cfg = PrepareConfig(out=str(tmp_path / name), name="t", captioner="none")
        prepare(str(tmp_path / f"{name}.jsonl"), cfg, EngineOptions(runner="local"), progress=False)
    reports = {}
    runs = [("once", True), ("each", False), ("listed", True), ("indexed", True)]
    for name, all_sentences in [*runs, ("indexed", False)]:
        out = tmp_path / f"{name}-{all_sentences}.json"
        flags = ["--all-sentences"] if all_sentences else []
        command = ["evaluate", "--checkpoint", str(overfit_run), "--shards", str(tmp_path / name)]
        assert main([*command, *flags, "--workers", "0", "--no-progress", "--json", str(out)]) == 0
        report = {k: v for k, v in json.loads(out.read_text()).items() if k != "shards"}
        reports[name, all_sentences] = report
    assert (reports["once", True]["pairs"], reports["once", True]["videos"]) == (16, 4)
    for run, report in reports.items():
        assert report == reports["once", True], run


def test_evaluate_takes_a_checkpoint_file_as_the_official_code_saves_it(
    train_shards: Path, overfit_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The run's best weights as a loose file, as ours (model.safetensors) and as the official
    code's torch.save of a DDP model (.pt, ``module.clipmodel.*``): the same numbers as the
    run folder; a file without --weights is a one-line error naming the flag."""
    from clipvip.cli import main

    best = overfit_run / "checkpoints" / "best" / "model.safetensors"
    official = tmp_path / "pretrain_clipvip_tiny.pt"
    torch.save({"model": {f"module.{k}": v for k, v in load_file(str(best)).items()}}, official)
    common = ["--shards", str(train_shards), "--workers", "0", "--no-progress", "--json"]
    weights = ["--weights", str(overfit_run / "tiny_clip"), "--config", "tiny"]
    reports = []
    for n, checkpoint in enumerate([overfit_run, best, official]):
        out = tmp_path / f"{n}.json"
        extra = [] if n == 0 else weights
        assert main(["evaluate", "--checkpoint", str(checkpoint), *extra, *common, str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    for report in reports[1:]:
        for direction in ("t2v", "v2t", "t2v_dsl", "v2t_dsl"):
            assert report[direction] == pytest.approx(reports[0][direction]), direction
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(official), *common, str(tmp_path / "x")]) == 2
    assert "give --weights DIR" in capsys.readouterr().err


def test_evaluate_does_not_read_the_runs_init_checkpoint_again(
    train_shards: Path, overfit_run: Path, tmp_path: Path
) -> None:
    """A fine-tuned run's own checkpoint replaces every weight: evaluating it works after the
    --init file it started from is gone (moved off the machine, a deleted download)."""
    import shutil

    from clipvip.cli import main

    init = tmp_path / "init.safetensors"
    shutil.copy(overfit_run / "checkpoints" / "best" / "model.safetensors", init)
    run = tmp_path / "finetuned"
    common = ["--shards", str(train_shards), "--no-progress"]
    train = ["train", "--config", "tiny", "--out", str(run), "--init", str(init), "--steps", "1"]
    assert main([*train, *common, "--set", "data.num_workers=0"]) == 0
    init.unlink()
    out = tmp_path / "eval.json"
    evaluate = ["evaluate", "--checkpoint", str(run), "--which", "latest", "--workers", "0"]
    assert main([*evaluate, *common, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["pairs"] == 8


def test_resume_continues_bit_identically(train_shards: Path, tmp_path: Path) -> None:
    overrides = {
        "max_steps": 4,
        "save_every": 2,
        "log_every": 1,
        "data.num_workers": 0,
        "data.batch_size": 3,
    }
    cfg = load_config("tiny", overrides)
    whole = tmp_path / "whole"
    train(cfg, str(train_shards), whole, progress=False)
    # the interrupted run: stop after step 2 (its checkpoint), then rerun the same command
    part = tmp_path / "part"
    train(cfg, str(train_shards), part, progress=False, stop_after=2)
    assert not (part / "checkpoints" / "step-000004").exists()
    train(cfg, str(train_shards), part, progress=False)
    a = load_file(str(whole / "checkpoints" / "step-000004" / "model.safetensors"))
    b = load_file(str(part / "checkpoints" / "step-000004" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _losses(whole) == _losses(part)


def test_run_saved_before_a_setting_existed_resumes_as_it_trained(
    train_shards: Path, tmp_path: Path
) -> None:
    """A run folder whose config.json predates ``data.resize`` was trained on centre crops:
    the same command resumes it only as crop (evaluation too), and the new default (squash)
    is refused naming the key and both values, not "None then"."""
    from trainer.errors import TrainerError
    from trainer.train import load_trained

    overrides = {"max_steps": 2, "save_every": 1, "data.num_workers": 0, "data.batch_size": 4}
    run = tmp_path / "old"
    train(
        load_config("tiny", {**overrides, "data.resize": "crop"}),
        str(train_shards),
        run,
        progress=False,
        stop_after=1,
    )
    saved = json.loads((run / "config.json").read_text())
    del saved["data"]["resize"]  # as written before the setting existed
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(TrainerError, match="data.resize: 'crop' then, 'squash' now") as refused:
        train(load_config("tiny", overrides), str(train_shards), run, progress=False)
    # the way on with other settings: this run's weights, in a new folder
    weights = run / "checkpoints" / "step-000001" / "model.safetensors"
    assert f"--init {weights} --out NEW_FOLDER" in str(refused.value) and weights.exists()
    assert load_trained(run, torch.device("cpu"), "last")[2].data.resize == "crop"
    train(
        load_config("tiny", {**overrides, "data.resize": "crop"}),
        str(train_shards),
        run,
        progress=False,
    )
    assert (run / "checkpoints" / "step-000002").exists()


def test_eval_every_validates_between_saves_and_keeps_best_across_a_crash(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval_every=1`` with checkpoints every 2 steps validates at each step. The rsum is
    scripted (real validation runs; the score is ours) so the best lands on step 3, between
    saves, and the run then dies in step 4's validation. best/ holds step 3's weights and says
    so; the resumed run replays step 3, scoring lower (as a GPU's non-deterministic replay
    may), and still keeps step 3 as its best: best/ and the run's record never disagree."""
    from trainer import train as train_module
    from trainer.checkpoint import best_record

    common = {"max_steps": 4, "log_every": 1, "data.num_workers": 0, "data.batch_size": 3}
    cfg = load_config("tiny", {**common, "save_every": 2, "eval_every": 1})
    scores = iter([1.0, 2.0, 5.0, None, 1.0, 1.5])

    def scripted(report: dict) -> float:
        assert report["t2v"]["R1"] >= 0  # a real report
        score = next(scores)
        if score is None:
            raise RuntimeError("killed in step 4's validation")
        return score

    monkeypatch.setattr(train_module, "rsum", scripted)
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, str(train_shards), run, val_shards=str(train_shards), progress=False)
    assert (ckpts / "latest.txt").read_text().strip() == "step-000002"
    assert best_record(ckpts) == {"rsum": 5.0, "step": 3}  # written at a step with no save
    summary = train(cfg, str(train_shards), run, val_shards=str(train_shards), progress=False)
    assert summary["best"] == best_record(ckpts) == {"rsum": 5.0, "step": 3}
    state = json.loads((ckpts / "step-000004" / "train_state.json").read_text())
    assert state["best"] == {"rsum": 5.0, "step": 3}
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    # the crashed run's step 3 (past its last checkpoint) is dropped: the resumed run logs it
    assert [x["step"] for x in logged if "val/t2v/R1" in x] == [1, 2, 3, 4]

    # the same 3 steps with a checkpoint at each: best/ holds exactly step 3's weights
    reference = tmp_path / "reference"
    cfg_ref = load_config("tiny", {**common, "save_every": 1})
    train(cfg_ref, str(train_shards), reference, progress=False, stop_after=3)
    a = load_file(str(ckpts / "best" / "model.safetensors"))
    b = load_file(str(reference / "checkpoints" / "step-000003" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_ddp_matches_one_process_on_the_same_global_batch(
    tiny_weights: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(HERE / "ddp_step.py"),
        str(tiny_weights),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_file(str(out))
    single = _load_ddp_step().one_step(tiny_weights, rank=0, world=1)
    assert float(ddp["loss"]) == pytest.approx(float(single["loss"]), rel=1e-5)
    before = load_clipvip(ModelConfig(), tiny_weights).state_dict()
    moved = 0
    for key, value in single.items():
        if key == "loss":
            continue
        # AdamW divides by sqrt(v) + 1e-6: a gradient that is ~0 in exact arithmetic (key biases:
        # softmax ignores a shift) turns float noise into ~1e-6 moves; 2e-5 is 2% of the lr.
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=2e-5, msg=key)
        moved += int(not torch.equal(value, before[key]))
    assert moved > 10  # the step really changed the weights


def test_no_weight_decay_on_biases_logit_scale_and_layernorm_weights(tiny_weights: Path) -> None:
    model = load_clipvip(ModelConfig(), tiny_weights)
    exempt = no_decay_names(model)
    assert "clipmodel.logit_scale" in exempt
    assert "clipmodel.vision_model.encoder.layers.0.self_attn.q_proj.bias" in exempt
    assert "clipmodel.vision_model.pre_layrnorm.weight" in exempt
    assert "clipmodel.text_model.final_layer_norm.weight" in exempt
    assert "clipmodel.vision_model.encoder.layers.1.layer_norm2.weight" in exempt
    decayed = {n for n, _ in model.named_parameters()} - exempt
    assert "clipmodel.vision_model.encoder.layers.0.self_attn.q_proj.weight" in decayed
    assert "clipmodel.vision_model.embeddings.temporal_embedding" in decayed
    assert "clipmodel.visual_projection.weight" in decayed
    layer_norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert all(
        name in exempt
        for name, p in model.named_parameters()
        if any(p is ln.weight for ln in layer_norms)
    )


def test_gradient_accumulation_averages_micro_batches(tiny_weights: Path) -> None:
    """Two identical micro-batches accumulate to exactly the step of one: the loss is divided
    by grad_accum, not summed."""
    from transformers import CLIPTokenizer

    from trainer.optim import build_optimizer, build_scheduler
    from trainer.train import build_model, train_step

    helper = _load_ddp_step()
    tok = CLIPTokenizer.from_pretrained(str(tiny_weights), local_files_only=True)
    batch = helper.global_batch(tok)
    results = []
    for micro in ([batch], [batch, batch]):
        cfg = load_config("tiny", {"grad_accum": len(micro), "optim.warmup_ratio": 0.0})
        model = build_model(cfg, tiny_weights, torch.device("cpu"))
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, 10)
        out = train_step(model, micro, cfg, optimizer, scheduler, torch.device("cpu"))
        results.append((out, model.state_dict()))
    (one, a), (two, b) = results
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=2e-5, msg=key)


def test_torchrun_two_ranks_run_the_whole_loop_in_step(train_shards: Path, tmp_path: Path) -> None:
    """`clipvip train` under torchrun with gloo: every rank takes the same number of full-batch
    steps from its own shard, and the checkpoint records each rank's data position. Validation
    is split over the ranks too (one shard each) and scores what one process scores."""
    run = tmp_path / "ddp_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "clipvip",
        "train",
        "--config",
        "tiny",
        "--shards",
        str(train_shards),
        "--out",
        str(run),
        "--val-shards",
        str(train_shards),
        "--steps",
        "3",
        "--no-progress",
        "--set",
        "save_every=3",
        "--set",
        "data.batch_size=3",
        "--set",
        "data.num_workers=0",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"steps": 3') == 1  # one summary, from rank 0
    state = json.loads((run / "checkpoints" / "step-000003" / "train_state.json").read_text())
    # 4 clips per rank, batches of 3: one full batch per epoch, the partial one dropped
    assert state["positions"] == [1, 1] and state["epoch"] == 2
    assert len(_losses(run)) >= 1
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    val = next(x for x in logged if "val/t2v/R1" in x)
    from trainer.train import Dist, load_trained, validate

    model, tokenizer, cfg, _ = load_trained(run, torch.device("cpu"), which="last")
    cfg.data.num_workers = 0
    alone = validate(model, cfg, str(train_shards), tokenizer, Dist())
    for direction, metrics in alone.items():
        for name, value in metrics.items():
            assert val[f"val/{direction}/{name}"] == pytest.approx(value), (direction, name)

    # `clipvip evaluate` under torchrun: each rank encodes its shard, rank 0 reports what one
    # process reports (the pairs are scored in key order either way)
    evaluate = ["evaluate", "--checkpoint", str(run), "--which", "latest", "--shards"]
    evaluate += [str(train_shards), "--workers", "0", "--no-progress", "--json"]
    launcher = cmd[: cmd.index("--master_port") + 1] + [str(_free_port()), "-m", "clipvip"]
    proc = subprocess.run(
        [*launcher, *evaluate, str(tmp_path / "two.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("t2v_dsl") == 1  # one report, from rank 0
    assert "(2 processes)" in proc.stderr
    from clipvip.cli import main

    assert main([*evaluate, str(tmp_path / "one.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert two["pairs"] == one["pairs"] == 8
    for direction in ("t2v", "v2t", "t2v_dsl", "v2t_dsl"):
        assert two[direction] == pytest.approx(one[direction]), direction


def test_resume_drops_the_log_lines_an_interrupted_run_wrote_past_its_checkpoint(
    train_shards: Path, tmp_path: Path
) -> None:
    """Ctrl-C after step 3 with the checkpoint at step 2: the resumed run logs step 3 again,
    so log.jsonl holds each step once (a line cut short by the kill goes too)."""
    overrides = {"max_steps": 4, "save_every": 2, "log_every": 1, "data.num_workers": 0}
    cfg = load_config("tiny", overrides)
    run = tmp_path / "run"
    train(cfg, str(train_shards), run, progress=False, stop_after=2)
    with (run / "log.jsonl").open("a") as fh:  # what the killed run had logged after step 2
        fh.write(json.dumps({"step": 3, "loss": 123.0}) + "\n" + '{"step": 4, "lo')
    train(cfg, str(train_shards), run, progress=False)
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [1, 2, 3, 4]
    assert 123.0 not in [x["loss"] for x in logged]


@pytest.mark.parametrize(("warmup_ratio", "total"), [(0.1, 20), (0.0, 10), (0.25, 7), (0.5, 1)])
def test_update_n_runs_at_the_official_lr_of_step_n(warmup_ratio: float, total: int) -> None:
    """The n-th update (n from 1) runs at the official ``get_lr_sched(n)``: the multiplier of
    get_cosine_schedule_with_warmup at index n, as the official loop increments global_step
    before computing the lr. So the first update is at peak / W, not 0 (an update that trains
    nothing), the peak is reached at update W and the last update runs at 0."""
    from transformers import get_cosine_schedule_with_warmup

    from trainer.optim import build_scheduler

    cfg = load_config("tiny", {"optim.warmup_ratio": warmup_ratio}).optim
    ours_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    hf_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    ours = build_scheduler(ours_opt, cfg, total)
    hf = get_cosine_schedule_with_warmup(hf_opt, round(warmup_ratio * total), total)
    got, want = [], []
    for _ in range(total):
        got.append(ours_opt.param_groups[0]["lr"])  # what this update uses
        ours_opt.step(), ours.step(), hf_opt.step(), hf.step()
        want.append(hf.get_last_lr()[0])  # index n after n steps
    assert got == pytest.approx(want, abs=1e-12)
    assert got[-1] == pytest.approx(0.0, abs=1e-12)
    if (warmup_ratio, total) == (0.1, 20):
        assert got[:3] == pytest.approx([0.5, 1.0, want[2]]) and got[2] < 1.0


def test_built_model_is_in_training_mode(tiny_weights: Path) -> None:
    """CLIPModel.from_pretrained returns eval mode; the training model must train (dropout)."""
    from trainer.train import build_model

    model = build_model(load_config("tiny"), tiny_weights, torch.device("cpu"))
    assert model.training and model.clipmodel.training
    assert all(m.training for m in model.modules())
