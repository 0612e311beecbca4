"""Benchmark of the trainer: data-loader samples/s against training samples/s.

    python -m benchmarks.train                                   # demo shards, tiny CPU model
    python -m benchmarks.train --shards RUN --workers 4 --batches 20
    python -m benchmarks.train --config pretrain_b32 --weights models/clip-vit-base-patch32 \\
        --shards RUN --batch-size 32 --workers 8                 # on a GPU

The loader is measured alone (decode, frame sampling, resize, normalise, tokenise, collate, with
``--workers`` processes), the model alone on batches already in memory (forward, omnisource
loss, backward, AdamW step). The loader is timed in its steady state: one iterator over as many
epochs as it takes (the workers start once, no restart inside the timed window), the clock
started only once each worker has delivered its first batch (all start together and make their
first batches in parallel, so counting those would flatter the loader by up to a round); the
output says how many batches and samples were timed. The ratio loader/model says whether the loader can feed the model:
it must stay above 1 and the goal is >= 3x. Without ``--shards`` the demo corpus is prepared
into a temporary folder first (``clipvip demo``'s shards: 7 clips up to 720p).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

from benchmarks.scratch import scratch_folder  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.data import make_loader  # noqa: E402
from trainer.optim import build_optimizer, build_scheduler  # noqa: E402
from trainer.train import Dist, build_model, resolve_weights, train_step  # noqa: E402


def demo_shards(folder: Path) -> str:
    from pipelines.config import PrepareConfig
    from pipelines.demo import build_corpus
    from pipelines.prepare import EngineOptions, prepare

    manifest = build_corpus(str(folder / "corpus"))
    cfg = PrepareConfig(out=str(folder / "run"), name="demo", shard_size=4)
    prepare(manifest, cfg, EngineOptions(runner="local"), progress=False)
    return str(folder / "run")


class Epochs(torch.utils.data.IterableDataset):
    """The datasets of epoch 0, 1, 2, ... one after the other, so one loader iterator (workers
    started once) runs as long as the benchmark needs: ``make_loader`` builds a loader per
    epoch, and a new loader's worker start-up inside the timed window is not the loader's
    steady rate. Each worker reads its own share of every epoch, as in ``make_loader``."""

    def __init__(self, dataset_of_epoch) -> None:
        self.dataset_of_epoch = dataset_of_epoch

    def __iter__(self):
        for epoch in itertools.count():
            empty = True
            for sample in self.dataset_of_epoch(epoch):
                empty = False
                yield sample
            if empty:  # nothing for this worker: stop rather than spin
                return


def long_lived(loader_factory) -> torch.utils.data.DataLoader:
    """A loader with the settings of ``loader_factory(0)`` (batch size, collate, workers,
    pinning, prefetch) over ``Epochs`` of its datasets."""
    first = loader_factory(0)
    return torch.utils.data.DataLoader(
        Epochs(lambda epoch: first.dataset if epoch == 0 else loader_factory(epoch).dataset),
        batch_size=first.batch_size,
        num_workers=first.num_workers,
        collate_fn=first.collate_fn,
        pin_memory=first.pin_memory,
        prefetch_factor=first.prefetch_factor,
    )


def loader_rate(loader_factory, batches: int) -> tuple[dict, list[dict]]:
    """Samples/s over ``batches`` batches after a first round (one batch per worker, at least
    one) that is not timed; returns the figures and the first round's last batch + the timed
    ones (the model's warm-up and timed batches)."""
    loader = long_lived(loader_factory)
    warm = max(1, loader.num_workers)
    kept: list[dict] = []
    seen, n, start = 0, 0, time.perf_counter()
    t0 = start
    for batch in loader:
        if not batch["keys"]:
            continue
        seen += 1
        if seen <= warm:  # the first round: made while the workers started, in parallel
            kept = [batch]
            t0 = time.perf_counter()
            continue
        kept.append(batch)
        n += len(batch["keys"])
        if len(kept) == batches + 1:
            break
    seconds = time.perf_counter() - t0
    if len(kept) < batches + 1:
        raise SystemExit(
            f"the loader gave {seen} batches with samples, fewer than {warm + batches}"
        )
    first_round_s = t0 - start
    figures = {
        "samples_per_s": n / seconds,
        "timed_batches": len(kept) - 1,
        "timed_samples": n,
        "warm_batches": warm,
        "first_round_s": first_round_s,
    }
    return figures, kept


def loader_line(figures: dict) -> str:
    """How the loader rate was measured, for the output."""
    return (
        f"{figures['timed_samples']} samples in {figures['timed_batches']} batches timed, after "
        f"an untimed first round of {figures['warm_batches']} batches "
        f"({figures['first_round_s']:.1f} s with worker start-up); one iterator, no restarts"
    )


def model_rate(cfg, weights: Path, batches: list[dict], device: torch.device) -> float:
    model = build_model(cfg, weights, device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, 10 * len(batches))
    train_step(model, [batches[0]], cfg, optimizer, scheduler, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, n = time.perf_counter(), 0
    for batch in batches[1:]:
        train_step(model, [batch], cfg, optimizer, scheduler, device)
        n += len(batch["keys"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shards", default=None, help="prepared run folder (default: demo shards)")
    p.add_argument("--config", default="tiny", help="training config (default: tiny)")
    p.add_argument("--weights", default=None, help="local CLIP folder for non-tiny configs")
    p.add_argument("--batch-size", type=int, default=None, help="(default: the config's)")
    p.add_argument("--workers", type=int, default=2, help="loader processes (default: 2)")
    p.add_argument("--batches", type=int, default=8, help="timed batches (default: 8)")
    p.add_argument(
        "--out", default=None, help="scratch folder, kept (default: a temporary one, removed)"
    )
    p.add_argument("--loader-only", action="store_true", help="measure the loader alone")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the model trains; auto: cuda when available (default: auto)",
    )
    args = p.parse_args()

    overrides: dict = {"data.num_workers": args.workers}
    if args.batch_size:
        overrides["data.batch_size"] = args.batch_size
    if args.weights:
        overrides["model.weights"] = args.weights
    cfg = load_config(args.config, overrides)
    with scratch_folder(args.out, "clipvip_train_bench_") as scratch:
        run(args, cfg, scratch)


def pick_device(name: str) -> torch.device:
    """``--device``: ``auto`` is cuda when available; ``cuda`` without a GPU is an error, not a
    silent CPU run whose figures would be read as the GPU's."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return torch.device(name)


def run(args: argparse.Namespace, cfg, scratch: Path) -> None:
    """Time the loader (and, unless ``--loader-only``, the model) with work files in ``scratch``."""
    shards = args.shards or demo_shards(scratch)
    device = pick_device(args.device)
    weights = resolve_weights(cfg, scratch, Dist(device=device))
    tokenizer = CLIPTokenizer.from_pretrained(str(weights), local_files_only=True)

    def factory(epoch: int):
        return make_loader(shards, cfg.data, tokenizer, train=True, seed=0, epoch=epoch)

    figures, batches = loader_rate(factory, args.batches)
    load_sps = figures["samples_per_s"]
    if args.loader_only:
        print(
            f"data loader ({cfg.data.num_frames} frames at {cfg.data.image_size} px, "
            f"{args.workers} workers): {load_sps:.1f} samples/s"
        )
        print(f"  {loader_line(figures)}")
        return
    train_sps = model_rate(cfg, weights, batches, device)
    print(
        f"config {cfg.name}: {cfg.data.num_frames} frames at {cfg.data.image_size} px, "
        f"batch {cfg.data.batch_size}, loss {cfg.loss}, device {device}, "
        f"{args.workers} loader workers, shards {args.shards or 'the demo corpus (temporary)'}"
    )
    print(f"data loader : {load_sps:8.1f} samples/s  ({loader_line(figures)})")
    print(f"training    : {train_sps:8.1f} samples/s")
    verdict = "ok" if load_sps >= 3 * train_sps else "LOADER IS THE BOTTLENECK (goal >= 3x)"
    print(f"loader/model: {load_sps / train_sps:8.2f}x  {verdict}")


if __name__ == "__main__":
    main()
