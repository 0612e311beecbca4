"""What every dataset adapter shares: its options, its report, finding videos, reading JSON.

An adapter turns one dataset's release files into manifest rows (``video, start, end, text,
key, dataset`` plus extra metadata columns). It never runs a pipeline stage: bad or missing
inputs become counted drop reasons in an ``AdapterReport``; a file that is not in the format at
all stops with a ``ManifestError`` naming the file and the line or field.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from pipelines.manifest import VIDEO_EXTENSIONS, ManifestError, byte_lines, unclosed_quote

Row = dict[str, Any]


@dataclass(slots=True, frozen=True)
class AdapterOptions:
    """Choices an adapter may honour; each adapter documents which it reads.

    ``mode``: ``clip`` (one row per clip/moment/segment/sentence, the default) or ``paragraph``
    (one row per video, all descriptions joined: how CLIP-ViP evaluates DiDeMo and ActivityNet).
    ``per_sentence``: MSR-VTT, one row per sentence instead of one per video.
    ``subtitles``: a folder of per-video ``.vtt/.srt/.json`` files or one transcript JSON
    ``{video_id: [...]}`` to align to clip spans (HD-VILA).
    ``extract_dir``: where video2dataset ``.mp4`` payloads are written.
    ``text_from``: video2dataset text source, ``txt`` or ``subtitles`` (its ``clip_subtitles``).
    ``check_videos``: look each video up in ``videos`` (missing ones are dropped and counted);
    off, paths are built as ``videos/ID.video_ext`` unchecked (for huge remote folders).
    ``split``: MSR-VTT, keep only the videos the annotation JSON puts in this split
    (``train``, ``validate``, ``test``).
    """

    mode: str = "clip"
    per_sentence: bool = False
    subtitles: str | None = None
    extract_dir: str | None = None
    text_from: str = "txt"
    check_videos: bool = True
    video_ext: str = "mp4"
    dataset: str | None = None
    min_overlap_s: float = 0.0
    split: str | None = None


# A report names at most this many distinct drop reasons, each cut to REASON_CHARS: reasons can
# carry a per-row message (video2dataset's ``error_message`` names the URL), and 10M failed
# downloads must not become 10M counters in memory and in ``manifest.report.json``.
MAX_REASONS = 100
REASON_CHARS = 200
OTHER_REASONS = f"other reasons (past the first {MAX_REASONS} distinct ones)"


@dataclass(slots=True)
class AdapterReport:
    """Counts a user reads to trust a manifest: what was read, kept, and why the rest was not."""

    format: str
    sources: list[str]
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    empty_text: int = 0
    extracted: int = 0
    missing_videos: list[str] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, video: str | None = None) -> None:
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "…"
        if reason not in self.dropped and len(self.dropped) >= MAX_REASONS:
            reason = OTHER_REASONS
        self.dropped[reason] += 1
        # a video is listed once however many of its rows it drops (MSR-VTT: 20 sentences)
        if (
            video is not None
            and reason == "video not found"
            and len(self.missing_videos) < 20
            and video not in self.missing_videos
        ):
            self.missing_videos.append(video)

    def note(self, what: str) -> None:
        """Count something about kept rows a user should know (e.g. no subtitles found)."""
        self.notes[what] += 1

    def keep(self, row: Row) -> Row:
        self.kept += 1
        if not str(row.get("text") or "").strip():
            self.empty_text += 1
        return row

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sources": self.sources,
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "empty_text": self.empty_text,
            "extracted": self.extracted,
            "notes": dict(sorted(self.notes.items())),
            "missing_videos_first_20": self.missing_videos,
        }

    def summary(self) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return (
            f"{self.format}: read {self.read}, kept {self.kept} ({self.empty_text} with empty "
            f"text), dropped {sum(self.dropped.values())}: {drops}"
        )


class VideoFolder:
    """The videos of a dataset, looked up by id; the folder is listed once, not probed per row.

    ``find("video9770")`` returns ``DIR/video9770.mp4`` (or ``.webm``, ``.mkv``, ...; or an
    exact file name; or the same under sub-folders). ``check=False`` skips the listing and
    builds ``DIR/ID.EXT`` unchecked, for remote folders too large to list.
    """

    def __init__(self, root: str, check: bool = True, ext: str = "mp4") -> None:
        self.root = root.rstrip("/")
        self.check = check
        self.ext = ext.lstrip(".")
        self._by_name: dict[str, str] = {}
        self._by_stem: dict[str, str] = {}
        if check:
            self._index()

    def _index(self) -> None:
        fs, _, (base,) = fsspec.get_fs_token_paths(self.root)
        if not fs.isdir(base):
            raise ManifestError(f"{self.root}: --videos is not a folder")
        remote = "://" in self.root
        prefix = self.root.split("://", 1)[0] + "://" if remote else ""
        for path in sorted(fs.find(base)):
            name = path.rsplit("/", 1)[-1]
            full = prefix + path if remote else path
            rel = path[len(base.rstrip("/")) + 1 :]
            self._by_name.setdefault(name, full)
            self._by_name.setdefault(rel, full)
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                self._by_stem.setdefault(name.rsplit(".", 1)[0], full)
                self._by_stem.setdefault(rel.rsplit(".", 1)[0], full)

    def find(self, *names: str) -> str | None:
        """The first of ``names`` (ids, stems or file names) that is a video here, else None."""
        if not self.check:
            name = names[0]
            return f"{self.root}/{name if Path(name).suffix else f'{name}.{self.ext}'}"
        for name in names:
            hit = self._by_name.get(name) or self._by_stem.get(name)
            if hit is None and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                hit = self._by_stem.get(name.rsplit(".", 1)[0])
            if hit:
                return hit
        return None


def decode_text(data: bytes, uri: str, line: int = 1, offset: int = 0) -> str:
    """``data`` (the file's bytes from line ``line``, byte ``offset``) as UTF-8 text.

    Anything else stops naming the file and line: replacing bad bytes with U+FFFD would hide a
    Latin-1 or UTF-16 file behind text that looks almost right. NUL bytes, which no text file
    holds, are named as UTF-16's: its ASCII (and every newline) carries one, and would
    otherwise pass as UTF-8 with a NUL between letters. A UTF-8 byte order mark at the start is
    dropped.
    """
    nul = data.find(b"\x00")
    if nul >= 0:
        where = line + data.count(b"\n", 0, nul)
        raise ManifestError(
            f"{uri}:{where}: not UTF-8 text (NUL bytes: looks like UTF-16; save it as UTF-8)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = line + data.count(b"\n", 0, exc.start)
        bad = data[exc.start : exc.start + 1].hex()
        raise ManifestError(
            f"{uri}:{where}: not UTF-8 text (byte {offset + exc.start} is 0x{bad})"
        ) from None
    return text.removeprefix("\ufeff") if offset == 0 else text


def read_bytes(uri: str) -> bytes:
    """A whole (small) file's bytes; a missing or unreadable one stops naming it."""
    try:
        with fsspec.open(uri, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ManifestError(f"{uri}: file not found") from None
    except OSError as exc:
        raise ManifestError(f"{uri}: cannot read: {exc}") from None


def read_text(uri: str) -> str:
    """A whole (small) UTF-8 text file: release JSON is read this way (``decode_text``)."""
    return decode_text(read_bytes(uri), uri)


def iter_lines(uri: str) -> Iterator[str]:
    """The file's lines split at ``\\n`` (kept), read as a stream: memory is one line, not the file
    (``byte_lines``: a line past its bound stops naming the file, as a clip list's does).

    For release files too large to hold (HD-VILA's JSONL, WebVid's CSV). Errors read as
    ``read_text``'s, with the same line and byte offset for text that is not UTF-8; a leading
    BOM is dropped as there.
    """
    offset = 0
    try:
        with fsspec.open(uri, "rb") as f:
            for lineno, raw in enumerate(byte_lines(uri, f), start=1):
                if offset and b"\x00" not in raw and raw.isascii():  # the usual line, quickly
                    yield raw.decode("ascii")
                else:
                    yield decode_text(raw, uri, lineno, offset)
                offset += len(raw)
    except FileNotFoundError:
        raise ManifestError(f"{uri}: file not found") from None
    except OSError as exc:
        raise ManifestError(f"{uri}: cannot read: {exc}") from None


def iter_csv_lines(uri: str) -> Iterator[str]:
    """``iter_lines`` split where ``io.StringIO(read_text(uri), newline="")`` splits, for ``csv``
    (a lone ``\\r`` also ends a line there)."""
    for line in iter_lines(uri):
        if "\r" in line:
            yield from io.StringIO(line, newline="")
        else:
            yield line


def iter_csv(uri: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: field}) per non-blank row of a CSV release file, streamed.

    Every adapter reads CSV here, as ``pipelines.manifest`` reads a clip list: strictly. A quote
    opened and never closed would otherwise swallow every later line into one field (the rows
    after it silently lost, their text glued into one caption), so it stops naming the line it
    opened on; so do a stray quote, a row whose field count is not the header's, and a header
    without the ``required`` columns.
    """
    reader = csv.reader(iter_csv_lines(uri), strict=True)
    header = _next_csv_row(uri, reader)
    if header is None:
        raise ManifestError(f"{uri}:1: empty file (expected a header with {', '.join(required)})")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"{uri}:1: header lacks {', '.join(missing)} (found: {', '.join(header)})"
        )
    while (fields := _next_csv_row(uri, reader)) is not None:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise ManifestError(
                f"{uri}:{reader.line_num}: {len(fields)} fields, the header has {len(header)}"
            )
        yield reader.line_num, dict(zip(header, fields, strict=True))


def _next_csv_row(uri: str, reader: Any) -> list[str] | None:
    """The next record, None at the end; a record ``csv`` cannot read stops naming its line."""
    start = reader.line_num + 1
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        if str(exc) == "unexpected end of data":
            raise unclosed_quote(uri, start, reader.line_num) from None
        if "field limit" in str(exc):
            hint = "a quoted field opened on this line may never be closed"
        else:
            hint = 'quote the field and write a quote inside it as ""'
        raise ManifestError(f"{uri}:{start}: unreadable CSV line: {exc} ({hint})") from None


def load_json(uri: str) -> Any:
    """A whole JSON file; a syntax error stops with the file, line and column."""
    try:
        return json.loads(read_text(uri))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{uri}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None


def iter_jsonl(uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line; any bad line stops with its number."""
    for lineno, line in enumerate(iter_lines(uri), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{uri}:{lineno}: not a JSON line ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ManifestError(
                f"{uri}:{lineno}: expected a JSON object, got {type(value).__name__}"
            )
        yield lineno, value


def require(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """``value`` if it has the expected JSON type, else a ``ManifestError`` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{where}: expected {names}, got {type(value).__name__}")
    return value


def finite_number(value: Any, where: str, what: str = "number") -> float:
    """``value`` as a float, when it is a JSON number and finite; else stops naming ``where``.

    Python's ``json`` reads ``NaN`` and ``Infinity``: a span ending at NaN passes every ``<``
    test as False (kept, end NaN) and ``int(NaN)`` raises. Every adapter reads numbers here.
    """
    require(value, (int, float), where)
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ManifestError(f"{where}: not a {what}: too large") from None
    if not math.isfinite(number):
        raise ManifestError(f"{where}: not a {what}: {json.dumps(number)}")  # NaN, Infinity
    return number


def span_problem(start: float, end: float) -> str | None:
    """Why ``[start, end]`` is no clip (a drop reason), or None: every adapter words it so."""
    if end < start:
        return "reversed span (end before start)"
    if end == start:
        return "empty span"
    return None


def clean_sentence(text: str) -> str:
    """Release captions carry stray spaces (ActivityNet's leading blanks): normalise them."""
    return " ".join(text.split())


def make_row(
    video: str,
    start: float | None,
    end: float | None,
    text: str,
    key: str,
    dataset: str,
    **extra: Any,
) -> Row:
    return {
        "video": video,
        "start": start,
        "end": end,
        "text": text,
        "key": key,
        "dataset": dataset,
        **extra,
    }
