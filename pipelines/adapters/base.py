"""What every dataset adapter shares: its options, its report, finding videos, reading JSON.

An adapter turns one dataset's release files into manifest rows (``video, start, end, text,
key, dataset`` plus extra metadata columns). It never runs a pipeline stage: bad or missing
inputs become counted drop reasons in an ``AdapterReport``; a file that is not in the format at
all stops with a ``ManifestError`` naming the file and the line or field.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from pipelines.manifest import VIDEO_EXTENSIONS, ManifestError

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
        if video is not None and reason == "video not found" and len(self.missing_videos) < 20:
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


def read_text(uri: str) -> str:
    """A whole (small) text file: release JSON and the MSR-VTT CSV are read this way."""
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ManifestError(f"{uri}: file not found") from None
    except OSError as exc:
        raise ManifestError(f"{uri}: cannot read: {exc}") from None
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{uri}: byte {exc.start}: not UTF-8 text") from None


def iter_lines(uri: str) -> Iterator[str]:
    """The file's lines split at ``\\n`` (kept), read as a stream: memory is one line, not the file.

    For release files too large to hold (HD-VILA's JSONL, WebVid's CSV). Errors read as
    ``read_text``'s, with the same byte offset for text that is not UTF-8; a leading BOM is
    dropped as there.
    """
    offset = 0
    try:
        with fsspec.open(uri, "rb") as f:
            for raw in f:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ManifestError(
                        f"{uri}: byte {offset + exc.start}: not UTF-8 text"
                    ) from None
                yield line.lstrip("\ufeff") if offset == 0 else line
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
