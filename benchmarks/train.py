"""Benchmark of the trainer: data-loader samples/s against training samples/s.

    python -m benchmarks.train                                   # demo shards, tiny CPU model
    python -m benchmarks.train --shards RUN --workers 4 --batches 20
    python -m benchmarks.train --config pretrain_b32 --weights models/clip-vit-base-patch32 \\
        --shards RUN --batch-size 32 --workers 8                 # on a GPU

The loader is measured alone (decode, frame sampling, resize, normalise, tokenise, collate, with
``--workers`` processes), the model alone on batches already in memory (forward, omnisource
loss, backward, AdamW step). The ratio loader/model says whether the loader can feed the model:
it must stay above 1 and the goal is >= 3x. Without ``--shards`` the demo corpus is prepared
into a temporary folder first (``clipvip demo``'s shards: 7 clips up to 720p).
"""

from __future__ import annotations

import argparse
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


def loader_rate(loader_factory, batches: int) -> tuple[float, list[dict]]:
    """Samples/s over ``batches`` batches after the first (worker start-up excluded)."""
    kept: list[dict] = []
    n, t0, epoch = 0, 0.0, 0
    while len(kept) < batches + 1:
        for batch in loader_factory(epoch):
            if not batch["keys"]:
                continue
            if not kept:
                t0 = time.perf_counter()
            else:
                n += len(batch["keys"])
            kept.append(batch)
            if len(kept) >= batches + 1:
                break
        epoch += 1
    return n / (time.perf_counter() - t0), kept


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
    args = p.parse_args()

    overrides: dict = {"data.num_workers": args.workers}
    if args.batch_size:
        overrides["data.batch_size"] = args.batch_size
    if args.weights:
        overrides["model.weights"] = args.weights
    cfg = load_config(args.config, overrides)
    with scratch_folder(args.out, "clipvip_train_bench_") as scratch:
        run(args, cfg, scratch)


def run(args: argparse.Namespace, cfg, scratch: Path) -> None:
    """Time the loader (and, unless ``--loader-only``, the model) with work files in ``scratch``."""
    shards = args.shards or demo_shards(scratch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weights = resolve_weights(cfg, scratch, Dist(device=device))
    tokenizer = CLIPTokenizer.from_pretrained(str(weights), local_files_only=True)

    def factory(epoch: int):
        return make_loader(shards, cfg.data, tokenizer, train=True, seed=0, epoch=epoch)

    load_sps, batches = loader_rate(factory, args.batches)
    if args.loader_only:
        print(
            f"data loader ({cfg.data.num_frames} frames at {cfg.data.image_size} px, "
            f"{args.workers} workers): {load_sps:.1f} samples/s"
        )
        return
    train_sps = model_rate(cfg, weights, batches, device)
    print(
        f"config {cfg.name}: {cfg.data.num_frames} frames at {cfg.data.image_size} px, "
        f"batch {cfg.data.batch_size}, loss {cfg.loss}, device {device}, "
        f"{args.workers} loader workers, shards {args.shards or 'the demo corpus (temporary)'}"
    )
    print(f"data loader : {load_sps:8.1f} samples/s")
    print(f"training    : {train_sps:8.1f} samples/s")
    verdict = "ok" if load_sps >= 3 * train_sps else "LOADER IS THE BOTTLENECK (goal >= 3x)"
    print(f"loader/model: {load_sps / train_sps:8.2f}x  {verdict}")


if __name__ == "__main__":
    main()
