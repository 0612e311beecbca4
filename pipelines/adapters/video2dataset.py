"""video2dataset WebDataset shards (``KEY.mp4``, ``KEY.txt``, ``KEY.json``) as input.

Users re-process what they already downloaded: each sample's video payload is written to
``extract_dir/SHARD/KEY.EXT`` (the pipeline reads files, not tar members) and becomes a row
whose span is the whole file and whose text is ``KEY.txt``. The sample's ``clip_subtitles``
(YouTube lines timed in the source video) are aligned to its ``clips`` span into a
``subtitles`` column, or into ``text`` with ``text_from="subtitles"``.

Payloads are checked by magic bytes, not by name: video2dataset's image mode stores JPEGs as
``.mp4``, and those samples are dropped with that reason. Samples whose status is not
``success`` or that lack a video are dropped and counted too.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    decode_text,
    finite_number,
    make_row,
)
from pipelines.keys import safe_key
from pipelines.manifest import ManifestError
from pipelines.subtitles import SubtitleError, clip_text, dedupe_rolling, parse_transcript

VIDEO_MEMBERS = (".mp4", ".webm", ".mkv", ".avi", ".mov")


def sniff(payload: bytes) -> tuple[str | None, str]:
    """(container extension or None, what the bytes are), from their magic numbers."""
    head = payload[:16]
    if head[:3] == b"\xff\xd8\xff":
        return None, "JPEG image"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return None, "PNG image"
    if head[:4] == b"GIF8":
        return None, "GIF image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None, "WebP image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp"):
        return "mp4", "MP4/QuickTime video"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm", "Matroska/WebM video"
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "avi", "AVI video"
    if len(payload) > 188 and payload[0] == 0x47 and payload[188] == 0x47:
        return "ts", "MPEG-TS video"
    if not payload:
        return None, "empty file"
    return None, "unknown bytes"


def _samples(uri: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample; a sample's members sit next to each other."""
    key: str | None = None
    members: dict[str, bytes] = {}
    try:
        with fsspec.open(uri, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                folder, _, name = info.name.rpartition("/")
                stem, dot, ext = name.partition(".")
                if not dot:
                    continue
                this = f"{folder}/{stem}" if folder else stem
                if key is not None and this != key:
                    yield key, members
                    members = {}
                key = this
                handle = tar.extractfile(info)
                members[ext.lower()] = handle.read() if handle else b""
    except FileNotFoundError:
        raise ManifestError(f"{uri}: shard not found") from None
    except tarfile.TarError as exc:
        raise ManifestError(f"{uri}: not a readable tar shard ({exc})") from None
    if key is not None:
        yield key, members


def _metadata(uri: str, key: str, members: dict[str, bytes]) -> dict[str, Any]:
    if "json" not in members:
        return {}
    text = decode_text(members["json"], f"{uri}: {key}.json")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{uri}: {key}.json: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ManifestError(f"{uri}: {key}.json: expected an object")
    return meta


def _span(uri: str, key: str, meta: dict[str, Any]) -> list[Any] | None:
    """The sample's span in its source video (``clips[0]``) as released, or None.

    A time in it that is a number must be finite: ``json`` reads ``NaN``, and a NaN span would
    silently align no subtitle and be written on as ``source_span``.
    """
    clips = meta.get("clips")
    span = clips[0] if isinstance(clips, list) and clips and isinstance(clips[0], list) else None
    for i, t in enumerate(span or []):
        if isinstance(t, int | float) and not isinstance(t, bool):
            finite_number(t, f"{uri}: {key}.json: clips[0][{i}]", "time")
    return span


def _subtitles(uri: str, key: str, meta: dict[str, Any], span: list[Any] | None) -> str | None:
    """The sample's ``clip_subtitles`` that overlap its clip span, or None when it has none."""
    items = meta.get("clip_subtitles")
    if not items:
        return None
    try:
        cues = dedupe_rolling(parse_transcript(items, "clip_subtitles"))
    except SubtitleError as exc:
        raise ManifestError(f"{uri}: {key}.json: {exc}") from None
    if span and len(span) == 2 and all(isinstance(t, int | float) for t in span):
        return clip_text(cues, float(span[0]), float(span[1]))
    return clip_text(cues, None, None)


def _write(path: Path, payload: bytes) -> bool:
    """Write atomically unless an identical-size file is there (reruns reuse extractions)."""
    if path.is_file() and path.stat().st_size == len(payload):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return True


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if not opts.extract_dir:
        raise ManifestError("video2dataset: extract_dir is required (where the .mp4 payloads go)")
    if opts.text_from not in ("txt", "subtitles"):
        raise ManifestError(
            f"video2dataset: text_from must be txt or subtitles, not {opts.text_from!r}"
        )
    dataset = opts.dataset or "video2dataset"
    # absolute, as the videos other adapters find: `prepare` may run from another folder
    root = Path(os.path.abspath(opts.extract_dir))
    for uri in sources:
        shard = safe_key(uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0])
        for key, members in _samples(uri):
            report.read += 1
            meta = _metadata(uri, key, members)
            status = meta.get("status", "success")
            if status != "success":
                report.drop(
                    f"video2dataset status {status}: {meta.get('error_message') or 'no message'}"
                )
                continue
            ext_name = next((e for e in VIDEO_MEMBERS if e.lstrip(".") in members), None)
            if ext_name is None:
                report.drop("no video in the sample")
                continue
            container, what = sniff(members[ext_name.lstrip(".")])
            if container is None:
                report.drop(f"{ext_name} payload is a {what}, not a video")
                continue
            span = _span(uri, key, meta)
            subs = _subtitles(uri, key, meta, span)
            if opts.text_from == "subtitles":
                text = subs or ""
            else:
                # refused, not U+FFFD-replaced, when not UTF-8, as every adapter reads text;
                # but one sample's text among millions drops that sample, not the run
                try:
                    raw = decode_text(members.get("txt", b""), f"{uri}: {key}.txt")
                except ManifestError as exc:
                    report.drop(f"txt is not UTF-8 text ({str(exc).rsplit('(', 1)[-1]}")
                    continue
                text = " ".join(raw.split())
            stem = safe_key(key)
            path = root / shard / f"{stem}.{container}"
            if _write(path, members[ext_name.lstrip(".")]):
                report.extracted += 1
            yield report.keep(
                make_row(
                    str(path),
                    None,
                    None,
                    text,
                    stem,
                    dataset,
                    source_id=key,
                    url=meta.get("url"),
                    subtitles=subs,
                    source_span=span,
                    shard=uri,
                )
            )
