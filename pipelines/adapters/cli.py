"""``clipvip manifest FORMAT SOURCE... --videos DIR --out manifest.parquet``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("clipvip")

EXAMPLES = """\
examples:
  # HD-VILA-100M: release JSONL + downloaded videos; clip text = subtitles inside each span
  clipvip manifest hdvila hdvila_part0.jsonl --videos videos/ --subtitles subs/ --out hdvila.parquet
  # WebVid: the release CSV; without --videos rows point at contentUrl
  clipvip manifest webvid results_2M_val.csv --videos webvid/ --out webvid.parquet
  # MSR-VTT 1k-A test with all 20 sentences per video from the annotation JSON
  clipvip manifest msrvtt MSRVTT_JSFUSION_test.csv MSRVTT_data.json --videos MSRVTT/videos/all \\
      --out msrvtt_1ka.parquet
  # DiDeMo and ActivityNet as CLIP-ViP evaluates them: one paragraph per video
  clipvip manifest didemo test_data.json --videos didemo/ --mode paragraph --out didemo.parquet
  clipvip manifest activitynet val_1.json --videos anet/ --mode paragraph --out anet.parquet
  # shards video2dataset already downloaded; payloads are extracted next to the manifest
  clipvip manifest video2dataset shards/00000.tar shards/00001.tar --out v2d.parquet
  # your own clip list (video,start,end) + whole-video subtitles named after each video's stem
  clipvip manifest clips my_clips.csv --subtitles subs/ --out clips.parquet
  # then
  clipvip prepare hdvila.parquet --out data/hdvila

formats: hdvila, webvid, msrvtt, didemo, activitynet, video2dataset, clips (docs/adapters.md).
outputs: the manifest (--out; .parquet, or .jsonl to read it by eye) with columns
video,start,end,text,key,dataset plus metadata columns (sentences, source_id, url, ...), and
OUT.report.json: rows read, kept, dropped with reasons, first missing videos.
"""


def adapter_options(args: argparse.Namespace, extract_dir: str | None) -> dict:
    """The ``build_manifest`` options the parser from ``add_adapter_options`` collected."""
    return {
        "mode": args.mode,
        "per_sentence": args.per_sentence,
        "subtitles": args.subtitles,
        "extract_dir": extract_dir,
        "text_from": args.text_from,
        "check_videos": not args.no_check_videos,
        "video_ext": args.video_ext,
        "dataset": args.dataset,
        "min_overlap_s": args.min_overlap,
        "split": args.split,
    }


def cmd_manifest(args: argparse.Namespace) -> int:
    from clipvip.cli import UserError
    from pipelines.adapters import write_manifest

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".jsonl"):
        raise UserError(f"--out {args.out}: use a .parquet or .jsonl file name")
    report_path = out.with_name(out.name + ".report.json")
    if report_path.is_dir():  # found before the rows are read, not when the report is written
        raise UserError(f"{report_path}: is a folder (the report of --out is written to that name)")
    extract_dir = args.extract_dir
    if args.format == "video2dataset" and extract_dir is None:
        extract_dir = str(out.with_name(f"{out.stem}_videos"))
    # Streamed: rows go to the file in batches, so 100M HD-VILA clips fit in memory.
    rows, report = write_manifest(
        args.format, args.sources, args.videos, out, **adapter_options(args, extract_dir)
    )
    if args.format == "video2dataset":
        log.info("video payloads extracted to %s (%d new files)", extract_dir, report.extracted)
    report_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    print(report.summary())
    if report.missing_videos:
        print(f"first missing videos: {', '.join(report.missing_videos[:5])}")
    print(f"manifest: {out} ({rows} rows); report: {report_path}")
    if not rows:  # exit 1: a next step on an empty manifest would only fail again
        return 1
    print(
        f"next: clipvip prepare {out} --out RUN_DIR"
        + (" --allow-empty-text" if report.empty_text else "")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.adapters import FORMATS

    p = sub.add_parser(
        "manifest",
        help="a dataset's release files -> a manifest for `clipvip prepare`",
        description="Read a dataset in its own release format (HD-VILA-100M, WebVid, MSR-VTT, "
        "DiDeMo, ActivityNet Captions, video2dataset shards) and write a manifest "
        "of clips: video, span, text. Whole-video subtitles are aligned to clip "
        "spans. Rows that cannot be used are counted by reason, not fatal; a file "
        "not in the format stops with the file and line or field named.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "format", choices=FORMATS, metavar="FORMAT", help=f"one of: {', '.join(FORMATS)}"
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="the release files (JSONL/CSV/JSON) or video2dataset .tar shards, "
        "e.g. MSRVTT_JSFUSION_test.csv MSRVTT_data.json",
    )
    p.add_argument(
        "--out",
        required=True,
        help="manifest to write, .parquet or .jsonl (e.g. --out msrvtt.parquet); the "
        "report goes to OUT.report.json",
    )
    add_adapter_options(p)
    p.set_defaults(func=cmd_manifest)


def _seconds(value: str) -> float:
    """``--min-overlap``: seconds, 0 or more (a negative overlap would count cues that miss the
    span entirely)."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: must be 0 or more seconds")
    return x


def add_adapter_options(p: argparse.ArgumentParser) -> None:
    """Options of the dataset adapters, shared by ``manifest`` and ``prepare --format``."""
    g = p.add_argument_group("dataset adapter (docs/adapters.md)")
    g.add_argument(
        "--videos",
        default=None,
        metavar="DIR",
        help="folder (or fsspec URI) of the downloaded videos, found by id as ID.mp4, "
        ".webm, ... in any sub-folder (e.g. --videos /data/msrvtt/videos). "
        "Required except for webvid (falls back to contentUrl) and video2dataset",
    )
    g.add_argument(
        "--mode",
        choices=("clip", "paragraph"),
        default="clip",
        help="didemo/activitynet: clip = one row per moment/segment with its span; "
        "paragraph = one row per whole video, descriptions joined (CLIP-ViP's "
        "evaluation) (default: clip; e.g. --mode paragraph)",
    )
    g.add_argument(
        "--per-sentence",
        action="store_true",
        help="msrvtt: one row per sentence (key VIDEO-sNN) instead of one per video "
        "whose text is the first sentence (all sentences are always in the "
        "'sentences' column). For evaluating over every sentence; train on the "
        "default rows (training draws one of the sentences each epoch)",
    )
    g.add_argument(
        "--subtitles",
        default=None,
        metavar="PATH",
        help="hdvila, clips: a folder of per-video ID.vtt/ID.en.vtt/ID.srt/ID.json files or "
        "one transcript JSON {ID: [{text, start, duration}]}; each clip's text is "
        "the cues inside its span (e.g. --subtitles subs/)",
    )
    g.add_argument(
        "--min-overlap",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="hdvila, clips: a cue counts for a clip when it overlaps the span by more than "
        "S seconds (default: 0, any overlap; e.g. --min-overlap 0.2)",
    )
    g.add_argument(
        "--split",
        default=None,
        metavar="NAME",
        help="msrvtt: keep only the videos the annotation JSON puts in split NAME (train, "
        "validate or test; e.g. --split train, so the 1k-A test videos stay out of "
        "training). Without it every video is kept; the report counts rows per split",
    )
    g.add_argument(
        "--extract-dir",
        default=None,
        metavar="DIR",
        help="video2dataset: where the shards' video payloads are written as files "
        "(default: `clipvip manifest` OUT_STEM_videos/ next to its --out, `clipvip prepare` "
        "OUT/inputs/videos/; e.g. --extract-dir /data/v2d)",
    )
    g.add_argument(
        "--text-from",
        choices=("txt", "subtitles"),
        default="txt",
        help="video2dataset: text from KEY.txt, or from the subtitles in KEY.json "
        "(clip_subtitles inside the clip span) (default: txt)",
    )
    g.add_argument(
        "--no-check-videos",
        action="store_true",
        help="do not list --videos; build DIR/ID.EXT unchecked (for huge remote "
        "folders; missing files then fail in prepare instead)",
    )
    g.add_argument(
        "--video-ext",
        default="mp4",
        help="extension used with --no-check-videos (default: mp4; e.g. --video-ext webm)",
    )
    g.add_argument(
        "--dataset",
        default=None,
        help="value of the dataset column (default: the format name; e.g. --dataset msrvtt-1ka)",
    )
