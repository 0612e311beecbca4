"""The CLIP-ViP training loop: read it top to bottom.

One process per device (``torchrun`` sets RANK/WORLD_SIZE; NCCL on GPU, gloo on CPU). Each rank
streams its share of the shards, encodes its micro-batch, and the loss gathers features from all
ranks, so the contrastive batch is global. DDP and autocast are set up here and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm
from transformers import CLIPTokenizer

from shards import load_index
from shards.store import absolute
from trainer.checkpoint import (
    MODEL_FILE,
    best_record,
    cuda_rng_state,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_best,
    save_checkpoint,
)
from trainer.config import TrainConfig, with_earlier_defaults
from trainer.data import make_loader, merge_partial_batches, normalize_pixels
from trainer.errors import TrainerError
from trainer.evaluate import encode_pairs, format_report, gather_pairs, retrieval_report, rsum
from trainer.loss import clamp_logit_scale, clip_id_tensor, omnisource_loss
from trainer.model import ClipViP, load_clipvip
from trainer.optim import build_optimizer, build_scheduler
from trainer.tiny import build_random_clip

log = logging.getLogger(__name__)
FRAME_VARIANTS = ("a", "c", "d")
# model.weights values that build a seeded random CLIP in the run folder instead of reading one
# a short rank's fresh pass r over its shards is seeded seed + r * this (epochs add seed + epoch)
RERUN_SEED_STRIDE = 1_000_003
RANDOM_WEIGHTS = {"tiny": "tiny_clip", "random-b32": "random_b32", "random-b16": "random_b16"}


@dataclass(slots=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Read torchrun's environment; start the process group (NCCL on GPU, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=device)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def resolve_weights(cfg: TrainConfig, out: Path, d: Dist) -> Path:
    """The local CLIP folder: the configured one, or a seeded random CLIP built in the run
    folder for ``tiny`` (CPU smoke runs) and ``random-b32``/``random-b16`` (speed checks)."""
    if cfg.model.weights not in RANDOM_WEIGHTS:
        path = Path(cfg.model.weights)
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"CLIP weights folder {path} has no config.json; pass --weights DIR with a local "
                "copy of the CLIP model (nothing is downloaded)"
            )
        return path
    folder = out / RANDOM_WEIGHTS[cfg.model.weights]
    if d.main:
        arch = cfg.model.weights.removeprefix("random-")
        size = cfg.data.image_size if arch == "tiny" else None
        build_random_clip(folder, arch, seed=cfg.seed, image_size=size)
    _barrier(d)
    return folder


def build_model(cfg: TrainConfig, weights: Path, device: torch.device) -> ClipViP:
    torch.manual_seed(cfg.seed)  # the new proxies are drawn identically on every rank
    model = load_clipvip(cfg.model, weights)
    check_text_length(cfg, model)
    model.check_image_size(cfg.data.image_size)
    model.train()  # from_pretrained returns eval mode: dropout would stay off until a validation
    return model.to(device)


def check_text_length(cfg: TrainConfig, model: ClipViP) -> None:
    """``data.max_text_len`` within the text tower's positions (77 for CLIP): checked before
    the first batch, which would otherwise fail inside the text encoder."""
    most = model.clipmodel.config.text_config.max_position_embeddings
    if cfg.data.max_text_len > most:
        raise TrainerError(
            f"data.max_text_len {cfg.data.max_text_len} is more than the {most} tokens the "
            "CLIP text encoder reads; set it to at most that"
        )


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; CPU runs fp32 (exact, and what the tests pin down)."""
    if device.type != "cuda" or cfg.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device, non_blocking=True)
        elif isinstance(value, dict):
            out[key] = {k: v.to(device, non_blocking=True) for k, v in value.items()}
        else:
            out[key] = value
    return out


def batch_loss(
    model: torch.nn.Module, batch: dict[str, Any], cfg: TrainConfig, device: torch.device
) -> torch.Tensor:
    """Forward one micro-batch and return the (globally gathered) omnisource loss."""
    batch = _to(batch, device)
    batch["video"] = normalize_pixels(batch["video"])
    batch["frame"] = normalize_pixels(batch["frame"])
    use_frame = cfg.loss in FRAME_VARIANTS
    use_caption = cfg.loss != "vs"
    if use_caption and batch.get("caption") is None:
        raise TrainerError(
            f"loss {cfg.loss!r} needs captions but the shards have no caption.txt; "
            "prepare them with a captioner or train with loss 'vs'"
        )
    with autocast(cfg, device):
        feats = model(
            batch["video"],
            batch["subtitle"],
            frame=batch["frame"] if use_frame else None,
            caption=batch["caption"] if use_caption else None,
        )
    core = model.module if isinstance(model, DDP) else model
    feats = {k: v.float() for k, v in feats.items()}
    return omnisource_loss(
        cfg.loss,
        core.logit_scale,
        feats["video"],
        feats["subtitle"],
        feats.get("frame"),
        feats.get("caption"),
        clip_ids=clip_id_tensor(batch.get("video_ids") or batch["keys"])
        if cfg.mask_same_clip
        else None,
    )


def train_step(
    model: torch.nn.Module,
    micro_batches: list[dict[str, Any]],
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns the loss, the grad norm
    and the lr this step's update used (read before the scheduler moves on to the next)."""
    core = model.module if isinstance(model, DDP) else model
    clamp_logit_scale(core.logit_scale)
    total = 0.0
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = model.no_sync() if isinstance(model, DDP) and not last else contextlib.nullcontext()
        with sync:
            loss = batch_loss(model, batch, cfg, device) / len(micro_batches)
            (scaler.scale(loss) if scaler else loss).backward()
        total += float(loss.detach())
    if scaler:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
    lr = optimizer.param_groups[0]["lr"]  # every group shares it (only weight decay differs)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": float(grad_norm), "lr": lr}


class BatchStream:
    """Endless micro-batches by (epoch, position), resumable at any position.

    An epoch is one pass over this rank's shards (shuffled with seed + epoch). The loader's
    workers each end their share with a partial batch; those are merged into full batches
    (``merge_partial_batches``), so a pass gives full batches and at most one partial, last.
    With several ranks an epoch is a fixed count of full batches per rank, so every rank takes
    the same number of steps and the collectives never wait on a rank that ran out of data; a
    rank whose shards give fewer goes on into a fresh pass (``make(epoch, rerun)`` with
    ``rerun`` 1, 2, ...: shuffled and sampled differently), never replaying the same batches.
    """

    def __init__(
        self,
        make: Callable[[int, int], Iterable[dict[str, Any]]],
        per_epoch: int | None,
        batch_size: int,
        full_batches: bool,
        epoch: int = 0,
        position: int = 0,
        rank: int = 0,
    ) -> None:
        self.make, self.per_epoch, self.batch_size = make, per_epoch, batch_size
        self.full_batches = full_batches
        self.epoch, self.position = epoch, position
        self.rank, self._warned = rank, False
        # errors of batches not trained on (all samples failed, or a partial batch left out
        # for equal ranks): they ride on the next batch, so the run's skipped count has them
        self._carried: list[tuple[str, str]] = []

    def _one_epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        count = 0
        rerun = 0
        while True:
            produced, skipped = 0, []
            for batch in merge_partial_batches(self.make(epoch, rerun), self.batch_size):
                skipped += batch["errors"]
                if not batch["keys"] or (
                    self.full_batches and len(batch["keys"]) < self.batch_size
                ):
                    self._carried += batch["errors"]
                    continue
                if self._carried:
                    batch = {**batch, "errors": self._carried + batch["errors"]}
                    self._carried = []
                produced += 1
                yield batch
                count += 1
                if self.per_epoch is not None and count >= self.per_epoch:
                    return
            if produced == 0:
                # without this, an epoch of nothing is followed by the next, for ever
                raise TrainerError(self._nothing_to_train(skipped))
            if self.per_epoch is None:
                return
            if not self._warned:
                self._warned = True
                log.warning(
                    "rank %d: its shards gave %d full batch(es) in epoch %d and the plan takes "
                    "%d per rank per epoch; it goes on into a fresh pass over them (shuffled "
                    "and sampled anew). Use more shards than ranks x workers, or shards of "
                    "equal size, so that every rank gets its share",
                    self.rank,
                    produced,
                    epoch,
                    self.per_epoch,
                )
            rerun += 1

    def _nothing_to_train(self, skipped: list[tuple[str, str]]) -> str:
        if skipped:
            key, reason = skipped[0]
            return (
                f"no sample of this rank's shards could be read: {len(skipped)} skipped, "
                f"e.g. {key}: {reason}"
            )
        if self.full_batches:
            return (
                "this rank's shards yield no full batch; use fewer ranks, a smaller "
                "batch_size or more shards"
            )
        return "this rank's shards hold no samples"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            skip = self.position
            for i, batch in enumerate(self._one_epoch(self.epoch)):
                if i < skip:
                    continue  # resuming: these batches were consumed before the checkpoint
                self.position = i + 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0


def _total_samples(shards: str) -> int | None:
    if shards.endswith(".tar"):
        return None
    return sum(s["nsamples"] for s in load_index(shards)["shardlist"])


def _saved_config(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    """The run folder's config.json; ``{}`` when unreadable (cut short by a crash)."""
    if not path.exists():
        return default
    try:
        saved = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return with_earlier_defaults(saved) if isinstance(saved, dict) else {}


def _changed_keys(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys (``data.num_workers``) whose values differ: what to put back as it was."""
    changed = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}: {old!r} then, {new!r} now")
    return changed


# what a start that died before its first checkpoint leaves behind, relative to the run folder
ABANDONED = ("checkpoints/best", "log.jsonl", "tb")
ABANDONED_BEST = "checkpoints/best.abandoned"


def clear_abandoned_attempt(out: Path, init_checkpoint: str | None = None) -> None:
    """Before training from step 0, set aside what an earlier attempt in this folder left
    without ever checkpointing: its ``best/`` would be the model to beat (and what ``evaluate``
    reads) though this run may train with other settings, and its log lines would precede this
    run's steps 1, 2, ... in log.jsonl and TensorBoard. The logs are removed; the weights are
    moved to ``checkpoints/best.abandoned/`` (validated weights are worth keeping), replacing
    an older one. Called only when ``latest_checkpoint`` finds no complete checkpoint.

    An ``--init`` inside ``best/`` stops the run instead: moving it would pull the file the
    new run is about to load from under it."""
    best = out / ABANDONED[0]
    if init_checkpoint and best.exists():
        init = Path(init_checkpoint).resolve()
        if init == best.resolve() or best.resolve() in init.parents:
            raise TrainerError(
                f"--init {init_checkpoint} lies in {best}, left by an earlier attempt in this "
                "folder that saved no checkpoint, which a fresh start sets aside: copy it out "
                "of the run folder first, or train into a new --out"
            )
    for name in ABANDONED:
        path = out / name
        if not path.exists():
            continue
        if name == ABANDONED[0]:
            aside = out / ABANDONED_BEST
            shutil.rmtree(aside, ignore_errors=True)
            path.rename(aside)
            log.info(
                "%s: left by an earlier attempt that saved no checkpoint; moved to %s", path, aside
            )
            continue
        log.info("%s: left by an earlier attempt that saved no checkpoint; removed", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def shards_source(value: str | os.PathLike | None) -> str | None:
    """A --shards value as ``data.json`` records it, ``shards.store.absolute`` (a resume or an
    ``evaluate`` may run from another working folder)."""
    return None if value is None else absolute(value)


def same_source(before: str | None, now: str | None) -> bool:
    """Whether two --shards values name the same data (local paths compared resolved; a
    relative path in a data.json from before they were recorded absolute resolves here)."""
    before, now = shards_source(before), shards_source(now)
    if before is None or now is None or "://" in before or "://" in now:
        return before == now
    return Path(before).resolve() == Path(now).resolve()


def check_resume_data(path: Path, data: dict[str, str | None], weights: Path) -> None:
    """Refuse to resume on other shards than the run trained and selected on: the saved data
    positions index this rank's shards, and an epoch-based step plan (the LR schedule) was
    computed from their sample count. A run folder from before data.json existed resumes.
    ``weights``: the latest checkpoint's model file, named in the message as a new run's --init."""
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return  # cut short by a crash: nothing to compare with
    for key, flag in (("shards", "--shards"), ("val_shards", "--val-shards")):
        if not same_source(saved.get(key), data[key]):
            raise TrainerError(
                f"{path} says this run trained with {flag} {saved.get(key)} and this command "
                f"gives {data[key]}; resume with the same {flag}, or start a new run from its "
                f"weights with --init {weights} --out NEW_RUN"
            )


def saved_world_size(meta: dict[str, Any]) -> int:
    """The number of processes a checkpoint's run had: ``world_size`` in its train state, or,
    for checkpoints saved before that was recorded, one data position per rank."""
    if "world_size" in meta:
        return int(meta["world_size"])
    return len(meta["positions"])


def check_resume_world(meta: dict[str, Any], world: int, folder: Path) -> None:
    """Refuse to resume on another number of processes than the checkpoint was saved with:
    each rank's data position and the step plan (per-rank epoch length, so the LR schedule)
    belong to that number, and there is no exact way to redistribute them."""
    saved = saved_world_size(meta)
    if saved != world:
        raise TrainerError(
            f"{folder} was saved by a run of {saved} process(es) and this one has {world}: "
            f"resume with {saved} (e.g. torchrun --nproc_per_node {saved}, or no torchrun for "
            "1), or start a new run from its weights with "
            f"--init {folder / MODEL_FILE} --out NEW_RUN (data positions and the LR schedule "
            "depend on the number of processes)"
        )


def global_count(count: int, d: Dist) -> int:
    """``count`` summed over all ranks (a collective: every rank calls it at the same point)."""
    if d.world == 1:
        return count
    total = torch.tensor([count], dtype=torch.int64, device=d.device)
    dist.all_reduce(total)
    return int(total.item())


def plan_steps(cfg: TrainConfig, total_samples: int | None, world: int) -> tuple[int, int | None]:
    """(optimizer steps, micro-batches per rank per epoch or None for 'until exhausted')."""
    per_epoch = None
    if total_samples is not None and world > 1:
        per_epoch = max(1, total_samples // (world * cfg.data.batch_size))
    if cfg.max_steps > 0:
        return cfg.max_steps, per_epoch
    if total_samples is None:
        raise TrainerError("set max_steps: the number of samples is unknown for a list of tars")
    batches = per_epoch or math.ceil(total_samples / cfg.data.batch_size)
    return max(1, math.ceil(cfg.epochs * batches / cfg.grad_accum)), per_epoch


class RunLog:
    """log.jsonl always; TensorBoard when available. Rank 0 only.

    ``resumed_at``: the step a resumed run starts after. Lines an interrupted run logged past its
    last checkpoint are dropped (from both logs), since the resumed run logs those steps again.
    """

    def __init__(self, out: Path, enabled: bool, resumed_at: int = 0) -> None:
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb = None
        if enabled and resumed_at and self.path.exists():
            kept = [
                line
                for line in self.path.read_text("utf-8").splitlines(keepends=True)
                if line.strip() and _logged_step(line) <= resumed_at
            ]
            self.path.write_text("".join(kept), "utf-8")
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(
                    str(out / "tb"), purge_step=resumed_at + 1 if resumed_at else None
                )
            except ImportError:
                log.info("tensorboard is not installed; logging to %s only", self.path)

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _logged_step(line: str) -> int:
    """A log.jsonl line's step; a line cut short by a crash counts as past any checkpoint."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 2**62


def validate(
    model: ClipViP, cfg: TrainConfig, val_shards: str, tokenizer: Any, d: Dist
) -> dict[str, dict[str, float]] | None:
    """Retrieval on the validation shards; the report on rank 0, ``None`` on the others.

    Every rank encodes its share of the shards (split by rank, as training data is), rank 0
    gathers the (text, video) pairs and scores them, so validation takes 1 / world of the time
    it would on rank 0 alone while the other ranks wait. Pairs are put in key order, so the
    report does not depend on how many ranks encoded them.
    """
    loader = make_loader(val_shards, cfg.data, tokenizer, train=False, split_by_node=d.world > 1)
    pairs = gather_pairs(encode_pairs(model, loader, d.device), source=val_shards)
    if pairs is None:
        return None
    return retrieval_report(pairs.text, pairs.video, pairs.text_video)


def train(
    cfg: TrainConfig,
    shards: str,
    out: str | Path,
    val_shards: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run in ``out``; return a summary. Rerunning resumes exactly from
    the latest checkpoint; with none yet, it starts afresh (``clear_abandoned_attempt``).

    ``stop_after`` ends the process after that step (checkpointed), as an interruption would:
    the schedule still follows the full ``max_steps``.
    """
    d = setup_distributed()
    out = Path(out)
    ckpt_root = out / "checkpoints"
    if d.main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        saved = out / "config.json"
        resolved = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as on disk
        changed = _changed_keys(_saved_config(saved, resolved), resolved)
        last = latest_checkpoint(ckpt_root) if changed else None
        if last is not None:
            # a longer run is not this one resumed: its schedule (warm-up, decay to max_steps)
            # differs from the first step, so it continues in a new folder from these weights
            raise TrainerError(
                f"{saved} holds a different config ({'; '.join(changed)}); rerun with the "
                "same settings, or go on from its weights in a new folder: --init "
                f"{last / 'model.safetensors'} --out NEW_FOLDER"
            )
        if changed:  # nothing trained with it yet (a start that failed): the new one replaces it
            log.info("%s: no checkpoint yet, so the new settings replace it", saved)
            for folder in RANDOM_WEIGHTS.values():  # built from the old config's seed and size
                shutil.rmtree(out / folder, ignore_errors=True)
        # what the run trained and selected on, so `evaluate` can warn about a leaked split
        data = {"shards": shards_source(shards), "val_shards": shards_source(val_shards or None)}
        latest = latest_checkpoint(ckpt_root)
        if latest is None:
            clear_abandoned_attempt(out, cfg.model.init_checkpoint)
        else:
            check_resume_data(out / "data.json", data, latest / MODEL_FILE)
        cfg.save(saved)
        (out / "data.json").write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    _barrier(d)
    weights = resolve_weights(cfg, out, d)
    tokenizer = CLIPTokenizer.from_pretrained(str(weights), local_files_only=True)
    model = build_model(cfg, weights, d.device)
    optimizer = build_optimizer(model, cfg.optim)
    steps, per_epoch = plan_steps(cfg, _total_samples(shards), d.world)
    scheduler = build_scheduler(optimizer, cfg.optim, steps)
    scaler = (
        torch.amp.GradScaler("cuda")
        if d.device.type == "cuda" and cfg.precision == "fp16"
        else None
    )
    step, epoch, position, best = 0, 0, 0, {"rsum": -1.0, "step": None}
    skipped_before = 0  # samples skipped by the run's earlier processes, all ranks
    resume = latest_checkpoint(ckpt_root)
    if resume is not None:
        meta = load_checkpoint(
            resume, model, optimizer, scheduler, scaler, rank=d.rank, device=d.device
        )
        check_resume_world(meta, d.world, resume)
        step, epoch, position = meta["step"], meta["epoch"], meta["positions"][d.rank]
        best = meta.get("best", best)
        skipped_before = int(meta.get("skipped_samples", 0))  # absent in older checkpoints
        log.info("resumed from %s (step %d, epoch %d)", resume, step, epoch)
    # best/ carries its own record and may be ahead of the latest checkpoint (a best found at a
    # validation between saves, then a crash): the model it holds is the one to beat
    best = best_record(ckpt_root) or best
    ddp = (
        DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        if d.world > 1
        else model
    )

    def loader_for(ep: int, rerun: int = 0) -> Iterable[dict[str, Any]]:
        # rerun > 0: a rank that ran short of its per-epoch batches, on a fresh pass
        seed = cfg.seed + RERUN_SEED_STRIDE * rerun
        return make_loader(shards, cfg.data, tokenizer, train=True, seed=seed, epoch=ep)

    stream = BatchStream(
        loader_for,
        per_epoch,
        cfg.data.batch_size,
        full_batches=d.world > 1,
        epoch=epoch,
        position=position,
        rank=d.rank,
    )
    run_log = RunLog(out, d.main, resumed_at=step)
    bar = tqdm(total=steps, initial=step, unit="step", disable=not (progress and d.main))
    batches = iter(stream)
    errors = 0  # samples this rank skipped since this process started
    t_last, samples_since = time.perf_counter(), 0
    log.info(
        "training %s for %d steps on %d rank(s), %s, loss %s; run folder %s",
        cfg.name,
        steps,
        d.world,
        d.device,
        cfg.loss,
        out,
    )
    while step < steps:
        micro = [next(batches) for _ in range(cfg.grad_accum)]
        errors += sum(len(b["errors"]) for b in micro)
        result = train_step(ddp, micro, cfg, optimizer, scheduler, d.device, scaler)
        step += 1
        samples_since += sum(len(b["keys"]) for b in micro) * d.world
        if step % cfg.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - t_last
            rate = samples_since / max(elapsed, 1e-9)
            t_last, samples_since = time.perf_counter(), 0
            values = {
                **result,
                "logit_scale": float(model.logit_scale.detach().exp()),
                "samples_per_s": rate,
                "epoch": stream.epoch,
                "skipped_samples": skipped_before + global_count(errors, d),
            }
            run_log.write(step, values)
            bar.set_postfix(loss=f"{result['loss']:.3f}", samples_s=f"{rate:.1f}")
        bar.update(1)
        save_now = step % cfg.save_every == 0 or step == steps
        eval_now = val_shards is not None and (
            save_now if cfg.eval_every == 0 else step % cfg.eval_every == 0 or step == steps
        )
        report = validate(model, cfg, val_shards, tokenizer, d) if eval_now else None
        if report is not None:  # rank 0
            score = rsum(report)
            run_log.write(
                step, {f"val/{k}/{m}": v for k, r in report.items() for m, v in r.items()}
            )
            log.info("validation at step %d (rsum %.1f):\n%s", step, score, format_report(report))
            if score > best["rsum"]:
                best = {"rsum": score, "step": step}
                # now, checkpoint step or not, and before the checkpoint that records it: a
                # crash in between leaves best/ ahead of latest, and resume reads best/'s record
                best_dir = save_best(ckpt_root, model, best)
                log.info("new best (rsum %.1f at step %d) saved in %s", score, step, best_dir)
        if save_now:
            # each rank's data position and CUDA RNG state, for an exact resume on every rank
            mine = (stream.position, cuda_rng_state(d.device))
            states = [mine]
            if d.world > 1:
                states = [None] * d.world
                dist.all_gather_object(states, mine)
            positions = [pos for pos, _ in states]
            cuda_rng = [rng for _, rng in states] if d.device.type == "cuda" else None
            skipped = skipped_before + global_count(errors, d)
            if d.main:
                saved_to = save_checkpoint(
                    ckpt_root,
                    step,
                    model,
                    optimizer,
                    scheduler,
                    {
                        "epoch": stream.epoch,
                        "positions": positions,
                        "world_size": d.world,
                        "best": best,
                        "skipped_samples": skipped,
                    },
                    scaler=scaler,
                    cuda_rng=cuda_rng,
                )
                log.info("step %d: checkpoint saved in %s", step, saved_to)
                _prune(ckpt_root, cfg.keep_checkpoints)
        if save_now or eval_now:
            _barrier(d)
        if stop_after is not None and step >= stop_after:
            if step % cfg.save_every != 0:
                raise ValueError("stop_after must fall on a checkpoint step (save_every)")
            break
    bar.close()
    run_log.close()
    summary = {
        "steps": step,
        "run": str(out),
        # None when nothing was validated (no --val-shards): not a score of -1
        "best": best if best.get("step") is not None else None,
        "skipped_samples": skipped_before + global_count(errors, d),
        "checkpoint": str(latest_checkpoint(ckpt_root) or ""),
    }
    if d.main:
        log.info("done: %d steps; %s", step, _where_outputs_are(out, ckpt_root, run_log))
    return summary


def _prune(ckpt_root: Path, keep: int) -> None:
    """Delete the step folders older than the newest ``keep`` (0: keep all), saying which."""
    removed = prune_checkpoints(ckpt_root, keep_last=keep, keep=set())
    if removed:
        names = ", ".join(path.name for path in removed)
        log.info("removed older checkpoint(s) %s (keep_checkpoints=%d)", names, keep)


def _where_outputs_are(out: Path, ckpt_root: Path, run_log: RunLog) -> str:
    """The closing line's list of outputs: only those this run has."""
    latest = latest_checkpoint(ckpt_root)
    parts = [f"latest checkpoint {latest}" if latest else f"checkpoints in {ckpt_root}"]
    if (ckpt_root / "best" / MODEL_FILE).exists():
        parts.append(f"best on validation {ckpt_root / 'best'}")
    parts.append(f"logs in {run_log.path}")
    if run_log.tb is not None:
        parts.append(f"TensorBoard in {out / 'tb'}")
    return "; ".join(parts)


CHECKPOINT_FILES = (".pt", ".pth", ".bin", ".safetensors")


def load_checkpoint_file(
    path: str | Path, weights: str | Path, config: str, device: torch.device | None = None
) -> tuple[ClipViP, Any, TrainConfig, Path]:
    """Model, tokenizer, config and file of a loose CLIP-ViP checkpoint: an official release
    (``pretrain_clipvip_base_32.pt``, keys ``clipmodel.*``, loaded strictly) or a run's
    ``model.safetensors``. ``weights`` is the CLIP folder of its size (the shapes, the
    tokenizer); ``config`` gives the frames, resolution and text length to evaluate with."""
    from trainer.config import load_config

    path = Path(path)
    if path.suffix not in CHECKPOINT_FILES:
        raise FileNotFoundError(
            f"{path} is neither a run folder nor a checkpoint file ({', '.join(CHECKPOINT_FILES)})"
        )
    cfg = load_config(config)
    cfg.model.weights, cfg.model.init_checkpoint = str(weights), str(path)
    model, tokenizer = _open_model(cfg, Path(weights), device)  # loads ``path`` strictly
    return model, tokenizer, cfg, path


def _open_model(
    cfg: TrainConfig, weights: Path, device: torch.device | None, folder: Path | None = None
) -> tuple[ClipViP, Any]:
    """The model of ``cfg`` on the CLIP folder ``weights`` (with a checkpoint ``folder`` of
    ours loaded), on ``device`` (default: the GPU when there is one), and its tokenizer."""
    from trainer.checkpoint import load_model_weights

    if not (weights / "config.json").exists():
        raise FileNotFoundError(f"CLIP weights folder {weights} has no config.json")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # a run's own checkpoint replaces every weight: its --init file is not read again (it
    # may not even be on this machine any more)
    model_cfg = cfg.model if folder is None else replace(cfg.model, init_checkpoint=None)
    model = load_clipvip(model_cfg, weights)
    check_text_length(cfg, model)
    model.check_image_size(cfg.data.image_size)
    if folder is not None:
        load_model_weights(model, folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(weights), local_files_only=True)
    return model.to(device), tokenizer


def load_trained(
    run: str | Path, device: torch.device | None = None, which: str = "best"
) -> tuple[ClipViP, Any, TrainConfig, Path]:
    """Model, tokenizer, config and checkpoint folder of a run (``best`` if it has one)."""
    from trainer.config import config_from_dict

    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run} has no config.json: is it the --out of `clipvip train`?")
    cfg = config_from_dict(with_earlier_defaults(json.loads(cfg_path.read_text("utf-8"))))
    folder = run / "checkpoints" / "best"
    if which != "best" or not (folder / MODEL_FILE).exists():
        folder = latest_checkpoint(run / "checkpoints")
    if folder is None:
        raise FileNotFoundError(f"{run} has no checkpoint yet")
    random = RANDOM_WEIGHTS.get(cfg.model.weights)
    weights = run / random if random else Path(cfg.model.weights)
    model, tokenizer = _open_model(cfg, weights, device, folder)
    return model, tokenizer, cfg, folder
