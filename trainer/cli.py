"""``clipvip train`` and ``clipvip evaluate``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clipvip.terminal import bars

log = logging.getLogger("clipvip")

TRAIN_EXAMPLES = """\
examples:
  # CPU smoke run: a random tiny CLIP, built on the spot, on the demo shards
  clipvip demo --out demo_out --runners local
  clipvip train --config tiny --shards demo_out/local --out runs/tiny --val-shards demo_out/local
  # post-pretraining from a local copy of openai/clip-vit-base-patch32, 8 GPUs
  torchrun --nproc_per_node 8 -m clipvip train --config pretrain_b32 \\
      --weights models/clip-vit-base-patch32 --shards data/hdvila --out runs/vip_b32 \\
      --val-shards data/msrvtt_val
  # MSR-VTT fine-tuning from a post-pretrained CLIP-ViP checkpoint (official or ours)
  clipvip train --config msrvtt_b32 --weights models/clip-vit-base-patch32 \\
      --init runs/vip_b32/checkpoints/best/model.safetensors --shards data/msrvtt_train \\
      --out runs/msrvtt_b32 --val-shards data/msrvtt_val
  # any config value: --set KEY=JSON (dotted keys)
  clipvip train --config tiny --shards demo_out/local --out runs/t2 --set optim.lr=1e-4 \\
      --set data.batch_size=4 --set loss='"b"'

named configs: tiny, pretrain_b32, pretrain_b16, msrvtt_b32, msrvtt_b16 (trainer/configs/*.json);
--config also takes a path to a JSON file of the same shape.
loss variants (Omnisource Cross-modal Learning): a = V-S + F-C, b = V-S + V-C,
c = V-S + V-C + F-C, d = V-S,C + F-C (default), vs = V-S only (fine-tuning).

outputs (in --out): config.json (resolved), data.json (the --shards and --val-shards it
trained and selected on: `evaluate` warns when asked to test on either),
checkpoints/step-NNNNNN/ (model.safetensors,
train_state.safetensors + .json: optimizer, scheduler, RNG, grad scaler, data position; only
the newest keep_checkpoints of them are kept, default 2, 0 = all: an older step-N is deleted),
checkpoints/best/ (weights of the best step on --val-shards, validated every eval_every steps,
0 = at each save), checkpoints/latest.txt (names the newest step folder), log.jsonl, tb/
(TensorBoard). Rerunning the same command resumes exactly from the latest checkpoint; other
settings, --shards or --val-shards are refused. A rerun in a folder with no checkpoint yet
starts afresh: that attempt's best/ moves to best.abandoned/, its log.jsonl and tb/ go.
"""

EVAL_EXAMPLES = """\
examples:
  # the best (on validation) checkpoint of a run, on a test split prepared by `clipvip prepare`
  clipvip evaluate --checkpoint runs/msrvtt_b32 --shards data/msrvtt_test
  # the latest checkpoint instead, results also written as JSON
  clipvip evaluate --checkpoint runs/tiny --which latest --shards demo_out/local \\
      --json runs/tiny/eval.json
  # a large split on 8 GPUs: each rank encodes its shards, rank 0 reports (leave out --device)
  torchrun --nproc_per_node 8 -m clipvip evaluate --checkpoint runs/vip_b32 --shards data/test
  # a released checkpoint of the official code, e.g. zero-shot after post-pretraining
  clipvip evaluate --checkpoint downloads/pretrain_clipvip_base_32.pt \\
      --weights models/clip-vit-base-patch32 --shards data/msrvtt_test
  # MSR-VTT with all 20 sentences per video (shards of `clipvip manifest msrvtt` JSON)
  clipvip evaluate --checkpoint runs/msrvtt_b32 --shards data/msrvtt_full_test --all-sentences

Each sample is one (video, text) pair with the text in KEY.txt; samples of one clip (same
source video and span) are one video with several texts, and so are the sentences of a
sample's JSON with --all-sentences. Prints text->video and video->text
R@1, R@5, R@10 (percent), median and mean rank, with and without Dual Softmax.
"""


def _parse_sets(items: list[str]) -> dict[str, Any]:
    from clipvip.cli import UserError

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare string such as loss=b
    return overrides


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int of at least ``minimum`` (``--steps 0`` would otherwise be
    ignored and ``--batch-size 0`` fail deep in torch)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _quiet_bars(no_progress: bool) -> None:
    """No bars (``--no-progress``, or not on a terminal) silences transformers' too (saving and
    loading the CLIP weights), which otherwise surround an ``error:`` line even for the tiny
    model, and fill a log file."""
    if not bars(no_progress):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def check_shards(option: str, source: str) -> None:
    """Fail now, with the option's name, on shards that cannot be read or hold no sample: not
    after the model is built, nor (``--val-shards``) hours later at the first validation.
    Remote runs (``s3://...``) are left to the reader."""
    from clipvip.cli import UserError
    from shards.index import shard_list

    if "://" in source:
        return
    path = Path(source)
    if not path.exists():
        raise UserError(f"{option} {source} does not exist")
    if path.is_file():
        if path.suffix != ".tar":
            raise UserError(
                f"{option} {source} is a file; give a run folder of `clipvip prepare` (with "
                "index.json) or a .tar shard"
            )
        return
    try:
        urls, counts = shard_list(source)
    except (FileNotFoundError, ValueError) as exc:  # no index.json; a damaged one
        raise UserError(f"{option}: {exc}") from exc
    if not sum(counts.values()):
        errors = path / "errors.jsonl"
        why = f"; the failed rows are in {errors}" if errors.exists() else ""
        raise UserError(
            f"{option} {source} holds no samples (every row failed in `clipvip prepare`?){why}"
        )
    missing = [url for url in urls if not Path(url).is_file()]
    if missing:
        raise UserError(
            f"{option} {source}: index.json lists {len(missing)} shard(s) that are not there, "
            f"e.g. {missing[0]}"
        )


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input met while running (shards, checkpoints, the run folder, a full disk) as one
    ``error:`` line; ``--debug`` still shows the traceback (the cause)."""
    from clipvip.cli import UserError, one_line
    from trainer.errors import TrainerError

    try:
        yield
    except TrainerError as exc:
        raise UserError(one_line(exc)) from exc
    except OSError as exc:
        raise UserError(one_line(exc)) from exc


def run_train(args: argparse.Namespace) -> int:
    from clipvip.cli import UserError
    from trainer.config import load_config
    from trainer.train import train

    _quiet_bars(args.no_progress)
    overrides = _parse_sets(args.set)
    for option, key, value in (
        ("--weights", "model.weights", args.weights),
        ("--init", "model.init_checkpoint", args.init),
        ("--steps", "max_steps", args.steps),
        ("--loss", "loss", args.loss),
    ):
        if not value:
            continue
        if key in overrides and overrides[key] != value:  # which one wins would be a guess
            raise UserError(
                f"{option} {value} and --set {key}={json.dumps(overrides[key])} disagree; "
                "give one of them"
            )
        overrides[key] = value
    if args.init and not Path(args.init).is_file():  # before a model is built or --out made
        raise UserError(f"--init {args.init}: no such checkpoint file")
    try:
        cfg = load_config(args.config, overrides)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from exc
    check_shards("--shards", args.shards)
    if args.val_shards is None:
        log.warning("no --val-shards: the best checkpoint is not selected, only the latest kept")
    else:
        check_shards("--val-shards", args.val_shards)
    if Path(args.out).is_file():
        raise UserError(f"--out {args.out} is a file; give a folder for the run")
    try:
        with _user_errors():
            summary = train(
                cfg,
                args.shards,
                args.out,
                val_shards=args.val_shards,
                progress=bars(args.no_progress),
            )
    finally:  # train() starts the process group under torchrun; end it cleanly, error or not
        _end_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # one summary per torchrun job
        print(json.dumps(summary, indent=2))
    return 0


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_evaluate(args: argparse.Namespace) -> int:
    """One process, or every rank of a ``torchrun`` job encoding its share of the shards (rank 0
    gathers the pairs, in key order, and reports: the same numbers as one process)."""
    from clipvip.cli import UserError
    from trainer.data import make_loader
    from trainer.evaluate import encode_pairs, format_report, gather_pairs, retrieval_report
    from trainer.train import load_checkpoint_file, load_trained, setup_distributed

    _quiet_bars(args.no_progress)
    if not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist")
    check_shards("--shards", args.shards)
    device = _device(args.device)
    if args.json:  # found unwritable after the whole split is encoded, the work would be lost
        if Path(args.json).is_dir():
            raise UserError(f"--json {args.json} is a folder; give a file name")
        with _user_errors():
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    loose = Path(args.checkpoint).is_file()
    if loose and not args.weights:
        raise UserError(
            f"--checkpoint {args.checkpoint} is a file: give --weights DIR, the local CLIP "
            "folder of its size (e.g. a copy of openai/clip-vit-base-patch32), for its shapes "
            "and tokenizer"
        )
    d = setup_distributed()
    try:
        with _user_errors():
            device = device or d.device
            if loose:
                model, tokenizer, cfg, folder = load_checkpoint_file(
                    args.checkpoint, args.weights, args.config, device
                )
            else:
                model, tokenizer, cfg, folder = load_trained(
                    args.checkpoint, device, which=args.which
                )
                if d.main:
                    _warn_if_seen(Path(args.checkpoint), args.shards)
            if args.batch_size:
                cfg.data.batch_size = args.batch_size
            if args.workers is not None:
                cfg.data.num_workers = args.workers
            if args.all_sentences:
                cfg.data.eval_all_sentences = True
            loader = make_loader(
                args.shards, cfg.data, tokenizer, train=False, split_by_node=d.world > 1
            )
            share = encode_pairs(model, loader, device, progress=d.main and bars(args.no_progress))
            pairs = gather_pairs(share, source=args.shards)
    finally:
        _end_process_group()
    if pairs is None:  # not rank 0
        return 0
    with _user_errors():  # a diverged model's NaN scores
        report = retrieval_report(pairs.text, pairs.video, pairs.text_video)
    log.info(
        "checkpoint %s on %s: %d texts over %d videos, %d of them with several texts "
        "(%d process%s)",
        folder,
        args.shards,
        len(pairs.keys),
        len(pairs.video),
        pairs.shared,
        d.world,
        "" if d.world == 1 else "es",
    )
    _warn_if_short(args.shards, pairs.keys)
    print(format_report(report))
    if args.json:
        with _user_errors():
            Path(args.json).write_text(
                json.dumps(
                    {
                        "checkpoint": str(folder),
                        "shards": args.shards,
                        "pairs": len(pairs.keys),
                        "videos": len(pairs.video),
                        **report,
                    },
                    indent=2,
                )
                + "\n"
            )
        log.info("metrics written to %s", args.json)
    return 0


def _device(name: str | None) -> Any:
    """``--device`` as a torch device (``None``: the rank's own), refused now when unusable."""
    import torch

    from clipvip.cli import UserError

    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name!r} is not a device: cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here")
    return device


def _warn_if_short(shards: str, keys: list[str]) -> None:
    """Figures on part of a split do not compare with anyone's: say so when fewer samples were
    scored than the index lists (clips that failed to decode; a tar cut short stops the reader,
    ``shards.ShortShardError``)."""
    from trainer.train import _total_samples

    listed = _total_samples(shards) if "://" not in shards else None
    scored = len({key.split("#")[0] for key in keys})  # KEY#000...: sentences of one sample
    if listed and scored < listed:
        log.warning(
            "scored %d of the %d samples %s/index.json lists: these are not the whole split's "
            "figures",
            scored,
            listed,
            shards,
        )


def _warn_if_seen(run: Path, shards: str) -> None:
    """Numbers on the run's own training or validation data are optimistic: say so."""
    from trainer.train import same_source

    data_json = run / "data.json"
    if not data_json.exists():
        return
    seen = json.loads(data_json.read_text("utf-8"))
    for role in ("shards", "val_shards"):
        if seen.get(role) and same_source(seen[role], shards):
            log.warning(
                "%s was this run's %s: the checkpoint was %s on it, so these numbers are "
                "optimistic; evaluate on a held-out test split",
                shards,
                "training set" if role == "shards" else "validation set",
                "trained" if role == "shards" else "selected",
            )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune CLIP-ViP on prepared shards",
        description="Post-pretrain or fine-tune CLIP-ViP (video proxies, proxy-guided attention, "
        "omnisource loss) on shards written by `clipvip prepare`. Runs under torchrun "
        "for DDP (NCCL on GPU, gloo on CPU).",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default="tiny", help="named config or path to a JSON config (default: tiny)"
    )
    p.add_argument(
        "--shards",
        required=True,
        help="training run folder of `clipvip prepare` (with index.json) or a .tar",
    )
    p.add_argument("--out", required=True, help="run folder: config, checkpoints, logs")
    p.add_argument(
        "--val-shards",
        default=None,
        help="validation split (never the test split) for choosing the best checkpoint",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="DIR",
        help="local CLIP folder (config.json, model weights, vocab.json, merges.txt); "
        "overrides the config's model.weights",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="FILE",
        help="start from a CLIP-ViP checkpoint: official .pt/.bin or our model.safetensors",
    )
    p.add_argument(
        "--steps",
        type=_count(1),
        default=None,
        help="optimizer steps, e.g. --steps 200 for a short run (overrides max_steps; default: "
        "the config's max_steps, or its epochs when that is 0)",
    )
    p.add_argument(
        "--loss",
        choices=("a", "b", "c", "d", "vs"),
        default=None,
        help="omnisource loss variant, e.g. --loss vs (video-text only, for fine-tuning on a "
        "captioned set); overrides the config's loss; the variants are listed below",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override any config value, e.g. --set optim.lr=1e-5 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate",
        help="text-video retrieval metrics of a trained run",
        description="Encode every (video, text) pair of prepared shards with a trained run and "
        "report retrieval metrics, with and without Dual Softmax.",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN|FILE",
        help="run folder of `clipvip train` (its config.json and checkpoints/), or a checkpoint "
        "file: an official CLIP-ViP release (.pt) or a model.safetensors, with --weights",
    )
    e.add_argument(
        "--weights",
        default=None,
        metavar="DIR",
        help="for a checkpoint file: the local CLIP folder of its size (shapes, tokenizer)",
    )
    e.add_argument(
        "--config",
        default="msrvtt_b32",
        help="for a checkpoint file: the config whose data settings (frames, resolution, "
        "text length) to evaluate with (default: msrvtt_b32; the size comes from --weights)",
    )
    e.add_argument(
        "--shards", required=True, help="evaluation split: a prepared run folder or .tar"
    )
    e.add_argument(
        "--which",
        choices=("best", "latest"),
        default="best",
        help="best-on-validation checkpoint, falling back to latest (default: best)",
    )
    e.add_argument(
        "--all-sentences",
        action="store_true",
        help="score every sentence a sample's JSON lists (`clipvip manifest msrvtt` keeps a "
        "video's 20 there) as a text of its video, not only its txt; the same figures as "
        "shards written --per-sentence (default: txt only, as MSR-VTT 1k-A is scored)",
    )
    e.add_argument(
        "--batch-size",
        type=_count(1),
        default=None,
        help="clips encoded at once per process, e.g. --batch-size 64 (the figures do not "
        "depend on it; default: the run's data.batch_size)",
    )
    e.add_argument(
        "--workers",
        type=_count(0),
        default=None,
        help="data-loader worker processes, e.g. --workers 0 to decode in this process "
        "(default: the run's data.num_workers)",
    )
    e.add_argument(
        "--device",
        default=None,
        help="where to encode, e.g. --device cpu or --device cuda:1 (default: the rank's own "
        "GPU under torchrun, else cuda if available, else cpu)",
    )
    e.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=run_evaluate)
