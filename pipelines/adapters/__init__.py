"""Dataset adapters: a dataset's release files -> manifest rows ``pipelines.manifest`` reads.

``write_manifest(fmt, sources, videos, out, **options)`` streams a dataset into a manifest file
in bounded memory (``clipvip manifest``; HD-VILA-100M is 100M rows); ``build_manifest`` returns
the rows as a list, for sets that fit in memory (evaluation sets, tests). ``FORMATS`` names the
formats. Adapters only describe clips (video, span, text, metadata); they never run a pipeline
stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from pipelines.adapters import activitynet, clips, didemo, hdvila, msrvtt, video2dataset, webvid
from pipelines.adapters.base import AdapterOptions, AdapterReport, Row, VideoFolder
from pipelines.adapters.output import (
    BATCH_ROWS,
    check_out,
    stream_manifest,
    write_manifest_jsonl,
    write_manifest_parquet,
)
from pipelines.manifest import ManifestError

Reader = Callable[[list[str], VideoFolder | None, AdapterOptions, AdapterReport], Iterator[Row]]

_READERS: dict[str, Reader] = {
    "hdvila": hdvila.read,
    "webvid": webvid.read,
    "msrvtt": msrvtt.read,
    "didemo": didemo.read,
    "activitynet": activitynet.read,
    "video2dataset": video2dataset.read,
    "clips": clips.read,
}
FORMATS: tuple[str, ...] = tuple(_READERS)

# Which AdapterOptions each format reads. The videos of video2dataset are inside its shards:
# it reads no --videos folder, so neither the folder nor how it is listed applies.
_VIDEOS = {"check_videos", "video_ext"}
_OPTIONS: dict[str, set[str]] = {
    "hdvila": {"subtitles", "min_overlap_s", "dataset", *_VIDEOS},
    "webvid": {"dataset", *_VIDEOS},
    "msrvtt": {"per_sentence", "split", "dataset", *_VIDEOS},
    "didemo": {"mode", "dataset", *_VIDEOS},
    "activitynet": {"mode", "dataset", *_VIDEOS},
    "video2dataset": {"extract_dir", "text_from", "dataset"},
    "clips": {"subtitles", "min_overlap_s", "dataset", *_VIDEOS},
}
# An option as `clipvip manifest` spells it, and as the Python caller does: the message names both.
_FLAGS = {
    "mode": "--mode",
    "per_sentence": "--per-sentence",
    "subtitles": "--subtitles",
    "extract_dir": "--extract-dir",
    "text_from": "--text-from",
    "check_videos": "--no-check-videos",
    "video_ext": "--video-ext",
    "dataset": "--dataset",
    "min_overlap_s": "--min-overlap",
    "split": "--split",
}

__all__ = [
    "FORMATS",
    "AdapterOptions",
    "AdapterReport",
    "build_manifest",
    "iter_manifest",
    "write_manifest",
    "write_manifest_jsonl",
    "write_manifest_parquet",
]


def iter_manifest(
    fmt: str, sources: list[str], videos: str | None, **options: Any
) -> tuple[Iterator[Row], AdapterReport]:
    """The rows of ``sources`` in format ``fmt`` as they are read, and the report they fill.

    Keys are not checked here (``write_manifest`` and ``build_manifest`` do). ``options`` are
    ``AdapterOptions`` fields (``mode``, ``per_sentence``, ``subtitles``, ``extract_dir``,
    ``text_from``, ``check_videos``, ``video_ext``, ``dataset``, ``min_overlap_s``, ``split``).
    Raises ``ManifestError`` (one line, naming the file and line or field) for an unknown format
    or option at once, and for a file that is not in the format while the rows are read.
    """
    if fmt not in _READERS:
        raise ManifestError(f"unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if not sources:
        raise ManifestError(f"{fmt}: no source files given")
    known = {f.name for f in fields(AdapterOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ManifestError(
            f"{fmt}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    opts = AdapterOptions(**options)
    _check_options_apply(fmt, opts, videos)
    folder = VideoFolder(videos, check=opts.check_videos, ext=opts.video_ext) if videos else None
    report = AdapterReport(format=fmt, sources=list(sources))
    return _READERS[fmt](list(sources), folder, opts, report), report


def _check_options_apply(fmt: str, opts: AdapterOptions, videos: str | None) -> None:
    """Stop on an option ``fmt`` does not read: a flag that silently does nothing would make a
    wrong manifest look right (``--videos`` given to video2dataset: the rows still point at the
    payloads extracted from the shards)."""
    defaults = AdapterOptions()
    ignored = [
        f"{_FLAGS[f.name]} ({f.name})"
        for f in fields(AdapterOptions)
        if f.name not in _OPTIONS[fmt] and getattr(opts, f.name) != getattr(defaults, f.name)
    ]
    why = ""
    if videos and fmt == "video2dataset":
        ignored.insert(0, "--videos")
        why = " (its videos are the shards' payloads, written to --extract-dir)"
    if ignored:
        raise ManifestError(
            f"{fmt}: option(s) {', '.join(ignored)} do not apply to this format{why}"
        )


def write_manifest(
    fmt: str,
    sources: list[str],
    videos: str | None,
    out: str | Path,
    *,
    batch_rows: int = BATCH_ROWS,
    **options: Any,
) -> tuple[int, AdapterReport]:
    """Stream ``sources`` into the manifest ``out`` (``.jsonl``: JSON Lines, else Parquet).

    Memory is a batch of ``batch_rows`` rows, not the manifest. Returns the rows written and the
    report; a repeated key keeps its first row, the others are dropped as ``duplicate key``
    (exactly, as ``build_manifest`` does). ``out`` appears only complete; on an error (the
    ``ManifestError``s of ``iter_manifest``) nothing is written.
    """
    check_out(out)  # before a long read, not at the rename after it
    rows, report = iter_manifest(fmt, sources, videos, **options)
    written = stream_manifest(rows, out, batch_rows=batch_rows, unique_keys=True)
    if written.duplicates:  # a release listing one id twice would make two samples with one key
        report.kept -= written.duplicates
        report.empty_text -= written.empty_duplicates
        report.dropped["duplicate key"] += written.duplicates
    return written.rows, report


def build_manifest(
    fmt: str, sources: list[str], videos: str | None, **options: Any
) -> tuple[list[Row], AdapterReport]:
    """All manifest rows of ``sources`` in format ``fmt``, as a list, and the report.

    Holds every row in memory (~500 B each): for evaluation sets and tests; write large sets
    with ``write_manifest``, which keeps the same rows. Options and errors as ``iter_manifest``.
    """
    rows, report = iter_manifest(fmt, sources, videos, **options)
    kept: list[Row] = []
    seen: set[str] = set()
    for row in rows:  # a release listing one id twice would make two samples with one key
        if row["key"] in seen:
            report.kept -= 1
            if not str(row.get("text") or "").strip():  # counted in empty_text when kept
                report.empty_text -= 1
            report.drop("duplicate key")
            continue
        seen.add(row["key"])
        kept.append(row)
    return kept, report
