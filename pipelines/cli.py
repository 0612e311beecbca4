"""``clipvip prepare`` and ``clipvip demo``."""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from clipvip.argtypes import int_in_range, positive_int, whole
from pipelines.config import ENGINES, INT_RANGES, RETRYABLE, PrepareConfig

if TYPE_CHECKING:
    from shards.store import Store

log = logging.getLogger("clipvip")

PREPARE_EXAMPLES = """\
examples:
  # a CSV/JSONL/Parquet manifest with columns video,start,end,text[,key,dataset]
  clipvip prepare clips.csv --out data/hdvila --fps 3 --max-short-side 320
  # a dataset in its release format (see `clipvip manifest --help`), e.g. MSR-VTT 1k-A
  clipvip prepare MSRVTT_JSFUSION_test.csv --format msrvtt --videos msrvtt/videos --out data/msrvtt
  # a folder of videos with same-stem .txt/.srt/.vtt files, captions from a local BLIP
  clipvip prepare videos/ --out data/mine --captioner hf:/models/blip-base
  # on a Ray cluster, 4 caption actors (one GPU each when the cluster has GPUs)
  clipvip prepare s3://bucket/clips.parquet --out s3://bucket/shards --runner ray \\
      --ray-address auto --caption-pool 4 --caption-batch-size 64
  # captioning only on nodes started with: ray start --address HEAD:6379 --resources '{"captioner": 1}'
  clipvip prepare clips.parquet --out s3://bucket/shards --runner ray --ray-address HEAD:6379 \\
      --caption-resource captioner=1 --caption-gpus 0
  # Beam options pass through: e.g. 2 local worker processes, or another runner
  clipvip prepare clips.jsonl --out out --runner beam --direct_num_workers=2 \\
      --direct_running_mode=multi_processing
  # after copying in the videos errors.jsonl said were missing: run their tasks again
  clipvip prepare clips.csv --out data/hdvila --fps 3 --max-short-side 320 --retry-stages probe

outputs (in --out): shards/NAME-000000.tar ... (KEY.mp4, KEY.jpg, KEY.txt, KEY.caption.txt,
KEY.json), index.json (wids), stats.json, errors.jsonl (one line per failed row), stats/ (one
file per finished task), inputs/rows/ (the manifest as staged: tasks read their rows there);
with --format also inputs/manifest.parquet and, for video2dataset, inputs/videos/.
Rerunning the same command resumes: finished tasks are skipped (--retry-failed runs the ones
with failed rows again).
"""


def add_prepare_options(p: argparse.ArgumentParser) -> None:
    from captioner.base import PRECISIONS
    from captioner.registry import default_spec

    d = PrepareConfig()
    g = p.add_argument_group("shards")
    g.add_argument(
        "--out", required=True, help="output folder or fsspec URI (e.g. s3://bucket/run)"
    )
    g.add_argument(
        "--name",
        type=_shard_name,
        default=d.name,
        help=f"shard name prefix, letters, digits, _ and - (default: {d.name})",
    )
    g.add_argument(
        "--shard-size",
        type=setting_int("shard_size"),
        default=d.shard_size,
        metavar="N",
        help=f"manifest rows per task and so at most N samples per shard (default: {d.shard_size})",
    )
    g.add_argument(
        "--shard-bytes",
        type=setting_int("shard_bytes"),
        default=d.shard_bytes,
        metavar="BYTES",
        help="cap on a shard file's size in bytes, tar headers and padding counted; a task "
        "past it continues in parts -1, -2, ... (default: 1e9)",
    )
    g = p.add_argument_group("clips and frames")
    g.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help="re-encode clips at this frame rate (CLIP-ViP pretraining used 3); default: keep",
    )
    g.add_argument(
        "--max-short-side",
        type=setting_int("max_short_side"),
        default=None,
        metavar="PX",
        help="downscale clips so the short side is at most PX; default: keep",
    )
    g.add_argument(
        "--frame-short-side",
        type=int_in_range(0),  # 0 keeps: config_from_args turns it into None
        default=d.frame_short_side,
        metavar="PX",
        help=f"downscale the middle-frame JPEG to this short side (default: {d.frame_short_side}; 0 keeps)",
    )
    g.add_argument(
        "--jpeg-quality",
        type=setting_int("jpeg_quality"),
        default=d.jpeg_quality,
        help=f"Pillow's JPEG quality of the middle frame, 0-100 (default: {d.jpeg_quality})",
    )
    g.add_argument(
        "--allow-empty-text",
        action="store_true",
        help="keep rows whose text is empty (default: record them as failed)",
    )
    g.add_argument(
        "--input-root",
        default=None,
        metavar="DIR",
        help="refuse video paths outside DIR, after resolving '..' and symlinks (for manifests "
        "you did not write); DIR may be a bucket prefix (s3://bucket/videos). "
        "Example: --input-root /data/hdvila/videos",
    )
    g.add_argument(
        "--crf",
        type=_crf,
        default=d.crf,
        metavar="N",
        help=f"libx264 quality of re-encoded clips, lower is better and bigger (default: {d.crf})",
    )
    g.add_argument(
        "--fast-decode",
        action=argparse.BooleanOptionalAction,
        default=d.fast_decode,
        help="encode re-encoded clips for fast decoding (x264 --tune fastdecode): the trainer's "
        "loader decodes each clip every epoch and spends 1.6x less CPU on them, for 6-9%% more "
        "bytes; stream-copied clips are untouched (default: on)",
    )
    g.add_argument(
        "--ffmpeg-threads",
        type=setting_int("ffmpeg_threads"),
        default=d.ffmpeg_threads,
        metavar="N",
        help="threads per ffmpeg call; 1 scales best with one worker per core and gives the same "
        f"bytes on every machine; 0 = ffmpeg's choice (default: {d.ffmpeg_threads})",
    )
    g.add_argument(
        "--tool-timeout",
        type=positive_float,
        default=d.tool_timeout_s,
        metavar="S",
        help=f"wall-clock limit per ffmpeg/ffprobe call (default: {d.tool_timeout_s:g})",
    )
    g.add_argument(
        "--tool-memory-mb",
        type=setting_int("tool_memory_mb"),
        default=d.tool_memory_mb,
        metavar="MiB",
        help="address-space cap for each ffmpeg/ffprobe call and for the child that decodes "
        f"isolated rows (--isolate), 0 = none (default: {d.tool_memory_mb})",
    )
    g.add_argument(
        "--fetch-timeout",
        type=positive_float,
        default=d.fetch_timeout_s,
        metavar="S",
        help="wall-clock limit for copying one remote video (s3://, gs://, https://) to the "
        f"worker; past it the row fails (default: {d.fetch_timeout_s:g})",
    )
    g.add_argument(
        "--fetch-max-mb",
        type=setting_int("fetch_max_mb"),
        default=d.fetch_max_mb,
        metavar="MiB",
        help="largest remote video copied to the worker, checked before and while copying; a "
        f"larger one fails its row, 0 = no cap (default: {d.fetch_max_mb})",
    )
    g.add_argument(
        "--isolate",
        choices=["retry", "always"],
        default=d.isolate,
        help="where a task's probe/clip/middle-frame stages run. retry: in the worker, and in a "
        "child process only when the task is retried after its worker died, so a video that "
        "crashes the decoder fails alone; always: in a child process every time (a pipe's cost; "
        "set for Beam's DirectRunner with --workers, which hangs when a worker dies) "
        f"(default: {d.isolate})",
    )
    g = p.add_argument_group("captions")
    g.add_argument(
        "--captioner",
        type=captioner_arg,
        default=default_spec(),
        metavar="SPEC",
        help="ofa:PATH (CLIP-ViP's OFA-Caption, converted: docs/ofa.md) | hf:PATH (a local Hugging "
        "Face image-to-text model: BLIP, GIT, VisionEncoderDecoder) | ofa:random-tiny | "
        "random-tiny (tiny random models, for tests) | none (default: ofa:$CLIPVIP_OFA_DIR or "
        f"ofa:~/.cache/clipvip/ofa-caption-large when present, else random-tiny; now {default_spec()})",
    )
    g.add_argument(
        "--caption-max-words",
        type=setting_int("caption_max_words"),
        default=d.caption_max_words,
        help=f"captions are cut to this many words (default: {d.caption_max_words})",
    )
    g.add_argument(
        "--caption-precision",
        choices=PRECISIONS,
        default=d.caption_precision,
        help="GPU autocast of the captioner: auto = fp16 for ofa: (OFA was trained and evaluated "
        "in fp16), and for hf: bf16 where the GPU computes it natively (A100, H100), else fp16 "
        "(V100, T4); fp32 = none. Captions may differ by a word between precisions; CPU always "
        "runs fp32 "
        f"(default: {d.caption_precision})",
    )
    g.add_argument(
        "--caption-batch-size",
        type=setting_int("caption_batch_size"),
        default=d.caption_batch_size,
        help=f"images per captioner call (default: {d.caption_batch_size})",
    )
    g = p.add_argument_group("engine")
    g.add_argument(
        "--runner",
        type=runner_arg,
        default="beam",
        metavar="RUNNER",
        help="beam (Beam's DirectRunner), ray, local (plain loop in this process), or a Beam "
        "runner by name, which runs the Beam engine there: DataflowRunner, FlinkRunner, "
        "SparkRunner, PortableRunner, PrismRunner, DirectRunner (default: beam)",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="local parallelism: Beam worker processes or Ray CPUs (default: engine's choice)",
    )
    g.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: start a local Ray)"
    )
    g.add_argument(
        "--caption-pool",
        type=positive_int,
        default=1,
        metavar="N",
        help="Ray: caption actors, one model each; with GPUs at most one per GPU (default: 1)",
    )
    g.add_argument(
        "--caption-gpus",
        type=non_negative_float,
        default=None,
        metavar="G",
        help="Ray: GPUs per caption actor (default: 1 when the cluster has GPUs, else none)",
    )
    g.add_argument(
        "--caption-accelerator",
        default=None,
        metavar="SPEC",
        help="Beam: accelerator resource hint on the caption step only, e.g. "
        "'type:nvidia-l4;count:1;install-nvidia-driver' (Dataflow gives that step GPU workers)",
    )
    g.add_argument(
        "--caption-resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="Ray: a custom resource each caption actor asks for, so actors land only on nodes "
        "started with it (ray start --resources '{\"captioner\": 1}'); repeatable",
    )
    g.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun finished tasks whose rows failed, once the cause is fixed (a missing video "
        "copied in, a flaky bucket, a timeout on a loaded node): only the failed rows run, the "
        "samples written before are copied from the earlier tars; rows that work now become "
        "samples, nothing is written twice. Failures in any stage but 'manifest' (a bad row "
        "fails again); see --retry-stages",
    )
    g.add_argument(
        "--retry-stages",
        type=retry_stages_arg,
        default=None,
        metavar="STAGES",
        help=f"with --retry-failed, only failures in these stages: a comma list of "
        f"{', '.join(RETRYABLE)} (e.g. --retry-stages probe,caption; implies --retry-failed)",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars on a terminal, and no 'progress:' log lines (one every 30 s when "
        "stderr is a file or pipe, as on a cluster)",
    )


def retry_stages_arg(value: str) -> frozenset[str]:
    stages = frozenset(v.strip() for v in value.split(",") if v.strip())
    unknown = sorted(stages - set(RETRYABLE))
    if not stages or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown stage {', '.join(unknown) or value!r}; choose from {', '.join(RETRYABLE)}"
        )
    return stages


def setting_int(key: str):
    """The argparse type of ``PrepareConfig.<key>``: the range the config itself enforces."""
    return int_in_range(*INT_RANGES[key])


def _finite(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{value!r}: expected a finite number")
    return x


def positive_float(value: str) -> float:
    """A rate or a duration (``--fps``, ``--tool-timeout``): ffmpeg fails every row on 0 or less."""
    x = _finite(value)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be above 0")
    return x


def non_negative_float(value: str) -> float:
    """An amount where 0 means none (``--caption-gpus 0``: caption actors on CPU)."""
    x = _finite(value)
    if x < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 0 or more")
    return x


def captioner_arg(value: str) -> str:
    """``--captioner``: a spec of a known form, checked at parsing; a typo found later surfaced
    as a traceback after the manifest was staged (the folder a spec names: ``_check_inputs``)."""
    from captioner.registry import check_spec

    try:
        return check_spec(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def runner_arg(value: str) -> str:
    """An engine name, or a Beam runner's class name (``--runner=DataflowRunner`` as in Beam)."""
    if value in ENGINES or (value.endswith("Runner") and value.isidentifier()):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: choose beam, ray, local or a Beam runner name such as DataflowRunner"
    )


def split_runner(runner: str) -> tuple[str, list[str]]:
    """``"DataflowRunner"`` -> ``("beam", ["--runner=DataflowRunner"])``; engines unchanged."""
    return (runner, []) if runner in ENGINES else ("beam", [f"--runner={runner}"])


def _crf(text: str) -> int:
    value = whole(text)
    low, high = INT_RANGES["crf"]  # the range PrepareConfig enforces too
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"libx264's CRF runs from {low} (lossless) to {high}, got {value}"
        )
    return value


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    return PrepareConfig(
        out=args.out,
        name=args.name,
        shard_size=args.shard_size,
        shard_bytes=args.shard_bytes,
        fps=args.fps,
        max_short_side=args.max_short_side,
        frame_short_side=args.frame_short_side or None,
        jpeg_quality=args.jpeg_quality,
        captioner=args.captioner,
        caption_max_words=args.caption_max_words,
        caption_precision=args.caption_precision,
        caption_batch_size=args.caption_batch_size,
        allow_empty_text=args.allow_empty_text,
        ffmpeg_threads=args.ffmpeg_threads,
        crf=args.crf,
        fast_decode=args.fast_decode,
        tool_timeout_s=args.tool_timeout,
        tool_memory_mb=args.tool_memory_mb,
        fetch_timeout_s=args.fetch_timeout,
        fetch_max_mb=args.fetch_max_mb,
        isolate=args.isolate,
        extra={"input_root": input_root(args.input_root)} if args.input_root else {},
    )


def input_root(root: str) -> str:
    """``--input-root`` as every worker must read it (a Ray or Beam worker on another node does
    not share the driver's working folder): ``shards.store.absolute``."""
    from shards.store import absolute

    return absolute(root)


def _engine(args: argparse.Namespace):
    from pipelines.prepare import EngineOptions

    engine, beam_runner = split_runner(args.runner)
    return EngineOptions(
        runner=engine,
        workers=args.workers,
        ray_address=args.ray_address,
        caption_pool=args.caption_pool,
        caption_gpus=args.caption_gpus,
        caption_resources=parse_resources(args.caption_resource),
        caption_accelerator=args.caption_accelerator,
        beam_args=[*beam_runner, *args.extra],
        retry_stages=args.retry_stages
        or (frozenset(RETRYABLE) if args.retry_failed else frozenset()),
    )


def parse_resources(items: list[str]) -> dict[str, float]:
    """``["captioner=1", "big_mem"]`` -> ``{"captioner": 1.0, "big_mem": 1.0}``."""
    from clipvip.cli import UserError

    out: dict[str, float] = {}
    for item in items:
        name, _, amount = item.partition("=")
        try:
            value = float(amount) if amount else 1.0
        except ValueError:
            value = -1.0
        if not name or value <= 0:
            raise UserError(f"--caption-resource wants NAME=AMOUNT with AMOUNT > 0, got {item!r}")
        out[name] = value
    return out


def _manifest_from_sources(args: argparse.Namespace) -> str:
    """The manifest to prepare: the one given, or one built by a dataset adapter (``--format``)."""
    from clipvip.cli import UserError

    if args.format is None:
        if len(args.manifest) != 1:
            raise UserError("give one manifest, or several release files with --format FORMAT")
        return args.manifest[0]
    from pipelines.adapters import write_manifest
    from pipelines.adapters.cli import adapter_options
    from shards.store import Store

    store = Store(args.out)
    extract = args.extract_dir
    if args.format == "video2dataset" and extract is None:
        extract = store.path("inputs/videos") if store.local else None
    local = _scratch_manifest(store)
    try:
        rows, report = write_manifest(  # streamed: memory is a batch, not the manifest
            args.format, args.manifest, args.videos, local, **adapter_options(args, extract)
        )
    except BaseException:
        Path(local).unlink(missing_ok=True)
        raise
    log.info("%s adapter: %s", args.format, report.summary())
    report_json = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    store.put_bytes("inputs/manifest.report.json", report_json.encode("utf-8"))
    if not rows:  # as `clipvip manifest` exits 1: a run of nothing would only hide why
        Path(local).unlink(missing_ok=True)
        missing = report.missing_videos[:3]
        raise UserError(
            f"the {args.format} adapter kept no rows ({report.summary()})"
            + (f"; first missing videos: {', '.join(missing)}" if missing else "")
            + f"; report: {store.url('inputs/manifest.report.json')}"
        )
    _publish_manifest(store, local)
    return store.url("inputs/manifest.parquet")


def _scratch_manifest(store: Store) -> str:
    """A fresh file in ``store``'s scratch folder for the adapter's manifest. A fixed name there
    was shared by every ``prepare`` on the same ``--out`` (and, with an object-store ``--out``,
    whose scratch is the system's temp folder, by every one on the machine): one rewrote or
    published another's half-made file."""
    fd, path = tempfile.mkstemp(prefix="manifest.", suffix=".parquet", dir=store.scratch_dir())
    os.close(fd)
    return path


def _publish_manifest(store: Store, local: str) -> None:
    """``local`` becomes the run's ``inputs/manifest.parquet``, unless that file already has the
    same bytes: then it is left as it is (mtime too), so rerunning the same ``--format`` command
    keeps the quick same-file check of a resumed run (``tasks.manifest_identity``) rather than
    fingerprinting every row again. Compared on a local ``--out`` only: reading the manifest back
    from an object store would cost what the check saves."""
    rel = "inputs/manifest.parquet"
    published = store.path(rel)
    if store.local and Path(published).is_file() and filecmp.cmp(local, published, shallow=False):
        Path(local).unlink()
        return
    store.put_file(rel, local)


def _shard_name(value: str) -> str:
    """``--name``: it becomes part of every tar's path, so nothing that names a folder."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: use letters, digits, _ and - only (it starts every shard's file name)"
        )
    return value


def cmd_prepare(args: argparse.Namespace) -> int:
    from clipvip.cli import UserError
    from pipelines.prepare import format_summary, prepare

    if args.extra and split_runner(args.runner)[0] != "beam":
        raise UserError(
            f"unrecognized arguments: {' '.join(args.extra)} (only --runner beam passes options on)"
        )
    if args.extra:
        from pipelines.beam import unknown_options

        unknown, direct = unknown_options(_engine(args).beam_args)
        if unknown and direct:
            raise UserError(
                f"unrecognized arguments: {' '.join(unknown)} (neither clipvip nor Beam defines "
                "them; see `clipvip prepare --help`)"
            )
        if unknown:
            log.warning(
                "Beam defines no option %s; passed on to the runner as given", " ".join(unknown)
            )
    _refuse_adapter_options(args)
    _check_inputs(args.out, args.captioner, [] if args.format else args.manifest)
    cfg = config_from_args(args)
    if args.workers and split_runner(args.runner)[0] == "local":
        log.warning(
            "--workers %d is ignored by --runner local (it runs in this process)", args.workers
        )
    _warn_engine_options(args)
    from pipelines.run_lock import driver_lock

    # held before the --format adapter writes into --out (a second prepare there rewrote the
    # running one's inputs/manifest.parquet); ``prepare`` reenters it
    with driver_lock(args.out):
        manifest = _manifest_from_sources(args)
        summary = prepare(manifest, cfg, _engine(args), progress=not args.no_progress)
    print(format_summary(summary, args.out))
    if cfg.captioner == "random-tiny":  # after the run: a resume refused for its settings
        # must not first be told to change the captioner
        log.warning(
            "captions come from a tiny RANDOM model (word salad): pass --captioner ofa:PATH or "
            "hf:PATH, or set CLIPVIP_OFA_DIR (docs/ofa.md); --captioner none for no captions"
        )
    return 0 if summary["complete"] else 1


# Options only one engine reads, with the value each has when not given.
_RAY_ONLY = {
    "ray_address": None,
    "caption_pool": 1,
    "caption_gpus": None,
    "caption_resource": [],
}
_BEAM_ONLY = {"caption_accelerator": None}


def _warn_engine_options(args: argparse.Namespace) -> None:
    """Warn (one line) about engine options the chosen runner does not read. Not an error:
    scripts switch runners and keep the rest of the command."""
    engine = split_runner(args.runner)[0]
    ignored = {**({} if engine == "ray" else _RAY_ONLY), **({} if engine == "beam" else _BEAM_ONLY)}
    given = [_flag(dest) for dest, unset in ignored.items() if getattr(args, dest) != unset]
    if given:
        log.warning(
            "%s ignored by --runner %s (--ray-address, --caption-pool, --caption-gpus and "
            "--caption-resource are for Ray; --caption-accelerator for Beam)",
            ", ".join(given),
            args.runner,
        )


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _refuse_adapter_options(args: argparse.Namespace) -> None:
    """Stop on dataset-adapter options without ``--format``: only an adapter reads them, so they
    would do nothing and a wrong run would look right (as ``clipvip manifest`` refuses options
    its format does not read)."""
    from clipvip.cli import UserError
    from pipelines.adapters.cli import add_adapter_options

    if args.format is not None:
        return
    probe = argparse.ArgumentParser(add_help=False)
    add_adapter_options(probe)
    defaults = vars(probe.parse_args([]))
    given = [_flag(dest) for dest, unset in defaults.items() if getattr(args, dest) != unset]
    if given:
        raise UserError(
            f"option(s) {', '.join(given)} do not apply without --format (they configure a "
            "dataset adapter; see `clipvip manifest --help`)"
        )


def _check_inputs(out: str, captioner: str, manifests: list[str]) -> None:
    """What can be checked before anything is written or announced: ``--out`` is not a file,
    the captioner's folder has its config.json, local manifests exist. Each found later left a
    half-made ``--out`` or came after warnings that did not matter."""
    from captioner.registry import check_spec_files
    from clipvip.cli import UserError
    from pipelines.source import is_local

    if is_local(out) and Path(out.removeprefix("file://")).is_file():
        raise UserError(f"--out {out}: a file is there; name a folder")
    for manifest in manifests:
        if is_local(manifest) and not Path(manifest.removeprefix("file://")).exists():
            raise UserError(f"{manifest}: manifest not found")
    check_spec_files(captioner)  # FileNotFoundError naming the folder: one line (clipvip.cli)


def cmd_status(args: argparse.Namespace) -> int:
    from clipvip.cli import UserError
    from pipelines.status import NoRun, format_status, run_status

    try:
        st = run_status(args.out)
    except NoRun as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _is_demo_run(run_dir: Path, manifest: str) -> bool:
    """Whether ``run_dir`` holds a run that ``clipvip demo`` made of its own sample corpus (the
    same corpus file however ``--out`` was spelled: relative once, absolute the next time)."""
    try:
        run = json.loads((run_dir / "run.json").read_text("utf-8"))
        settings = run.get("settings") or {}
        same = Path(str(run.get("manifest"))).resolve() == Path(manifest).resolve()
    except (OSError, ValueError, AttributeError, RuntimeError):
        return False
    return same and settings.get("name") == "demo"


# What `prepare` (and `report`) write into a run folder: a demo run cut short before its run.json
# was written holds only these, and --fresh may remove it.
_RUN_ENTRIES = frozenset(
    {"run.json", "config.json", "stats", "stats.json", "errors.jsonl", "attempts", "retry"}
    | {"inputs", "progress", "shards", "index.json", "report.html", "_tmp"}
)


def _deletable_demo_run(run_dir: Path, manifest: str) -> bool:
    """Whether ``--fresh`` may delete ``run_dir``: a demo run, or one cut short before it wrote
    its run.json; never a folder that holds anything else."""
    if _is_demo_run(run_dir, manifest):
        return True
    if not run_dir.is_dir() or (run_dir / "run.json").exists():
        return False
    return all(entry.name in _RUN_ENTRIES for entry in run_dir.iterdir())


def _demo_runners(text: str) -> list[str]:
    """``--runners``: engines by name, each once. Checked before anything is made or removed:
    each name becomes a folder under ``--out`` that ``--fresh`` deletes."""
    runners = [r.strip() for r in text.split(",")]
    unknown = [r for r in runners if r not in ENGINES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(repr(r) for r in unknown)}: the demo runs the engines "
            f"{', '.join(ENGINES)} (comma-separated, e.g. beam,ray)"
        )
    if len(set(runners)) < len(runners):
        raise argparse.ArgumentTypeError(f"{text!r} names an engine twice")
    return runners


def cmd_demo(args: argparse.Namespace) -> int:
    from clipvip.cli import UserError
    from pipelines.demo import build_corpus
    from pipelines.prepare import EngineOptions, format_summary, prepare
    from pipelines.tasks import RunMismatch
    from shards.reader import iter_samples

    out = Path(args.out)
    _check_inputs(args.out, args.captioner, [])
    manifest = build_corpus(str(out / "corpus"))
    log.info("sample corpus: %s", manifest)
    results = {}
    for runner in args.runners:
        run_dir = out / runner
        if args.fresh and run_dir.exists():
            if not _deletable_demo_run(run_dir, manifest):
                raise UserError(
                    f"--fresh deletes earlier demo runs only, and {run_dir} is not one "
                    "(no run.json of `clipvip demo`'s sample corpus); move it or pick another --out"
                )
            shutil.rmtree(run_dir)
        cfg = PrepareConfig(
            out=str(run_dir),
            name="demo",
            shard_size=4,
            captioner=args.captioner,
            fps=None,
            max_short_side=None,
            frame_short_side=256,
        )
        log.info("running prepare on %s -> %s", runner, run_dir)
        engine = EngineOptions(runner=runner, workers=2)
        try:
            summary = prepare(manifest, cfg, engine, progress=True)
        except RunMismatch:
            if not _is_demo_run(run_dir, manifest):
                raise
            # its own earlier run, made by another clipvip version (new settings change the
            # samples): rerunning the demo after an upgrade must not ask the user to clean up
            log.warning(
                "%s holds a demo run of other settings (an older clipvip?); redoing it", run_dir
            )
            shutil.rmtree(run_dir)
            summary = prepare(manifest, cfg, engine, progress=True)
        print(f"[{runner}] " + format_summary(summary, str(run_dir)))
        if not summary["samples"] or summary.get("failed_unexpected"):
            # the corpus's good rows always make samples, and its bad ones fail for known
            # reasons: anything else is a broken install or a bug, not a demo to show
            log.error(
                "the demo's %s run wrote %d samples, %d rows failing on unexpected errors; "
                "see %s and the log above",
                runner,
                summary["samples"],
                summary.get("failed_unexpected", 0),
                run_dir / "errors.jsonl",
            )
            return 1
        results[runner] = {
            s["key"]: (
                s["jpg"],
                s["txt"],
                s.get("caption.txt"),
                json.dumps(s["json"], sort_keys=True),
            )
            for s in iter_samples(str(run_dir))
        }
    if len(results) > 1:
        first, *rest = results.values()
        same = all(r == first for r in rest)
        print(
            f"engines agree on every sample (keys, jpg, txt, caption, json): {'yes' if same else 'NO'}"
        )
        if not same:
            return 1
    from analysis.report import ReportConfig, write_report

    first_run = str(out / args.runners[0])
    print(
        f"corpus report (contact sheet, histograms, failures): {write_report(ReportConfig(run=first_run))}"
    )
    some = next(iter(results.values()))
    for key, (_, txt, cap, _) in list(some.items())[:3]:
        print(f"  {key}: subtitle {txt!r}\n  {' ' * len(key)}  caption  {cap!r}")
    print(
        f'read them with: python -c "import webdataset as wds; '
        f"print(next(iter(wds.WebDataset('{first_run}/shards/demo-000000.tar').decode('pil'))).keys())\""
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.adapters import FORMATS
    from pipelines.adapters.cli import add_adapter_options

    p = sub.add_parser(
        "prepare",
        help="manifest -> clips, middle frames, captions -> WebDataset shards",
        description="Cut each row's span into a clip, take the clip's exact middle frame, caption "
        "it, and write WebDataset shards. Bad rows are recorded in errors.jsonl; "
        "the run goes on.",
        epilog=PREPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "manifest",
        nargs="+",
        metavar="MANIFEST",
        help="CSV, TSV, JSONL or Parquet manifest (path or fsspec URI), or a folder of videos; "
        "with --format, a dataset's release files",
    )
    p.add_argument(
        "--format",
        default=None,
        choices=FORMATS,
        metavar="FORMAT",
        help=f"read MANIFEST as a dataset release ({', '.join(FORMATS)}) through its adapter; "
        "the manifest built is kept as OUT/inputs/manifest.parquet",
    )
    add_prepare_options(p)
    add_adapter_options(p)
    p.set_defaults(func=cmd_prepare, accepts_extra=True)

    st = sub.add_parser(
        "status",
        help="how far a prepare run is: rows done, failures by stage, rate, time left",
        description="Read a run's folder (local or fsspec URI) and report where it stands; works "
        "from any machine that can read the folder, while the run goes on or after it stopped. "
        "While prepare is still staging the manifest (before run.json exists) it says so. "
        "Exit 0 for a run (finished or not) or one starting, 2 for a folder that holds none.",
        epilog="examples:\n  clipvip status data/hdvila\n  clipvip status s3://bucket/run1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("out", metavar="OUT", help="the --out folder of a prepare run")
    st.add_argument("--json", action="store_true", help="print the numbers as JSON")
    st.set_defaults(func=cmd_status)

    d = sub.add_parser(
        "demo",
        help="build a sample corpus with ffmpeg and prepare it on Beam and Ray",
        description="Generates videos from ffmpeg's test sources (several codecs, sizes, spans, "
        "and rows that must fail), runs prepare with each engine and checks they agree.",
        epilog="example:\n  clipvip demo --out demo_out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "--out", default="demo_out", help="folder for the corpus and the runs (default: demo_out)"
    )
    d.add_argument(
        "--runners",
        type=_demo_runners,
        default="beam,ray",
        help="comma-separated engines: local, beam, ray (default: beam,ray)",
    )
    d.add_argument(
        "--captioner",
        type=captioner_arg,
        default="random-tiny",
        help="captioner spec, as for `clipvip prepare --captioner` (default: random-tiny)",
    )
    d.add_argument(
        "--fresh",
        action="store_true",
        help="delete this demo's earlier runs first, never another folder (default: resume them)",
    )
    d.set_defaults(func=cmd_demo)
