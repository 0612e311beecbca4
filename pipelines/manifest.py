"""Reading a corpus description into ``Clip`` rows: CSV, JSONL, Parquet, or a folder of videos.

Columns: ``video`` (path or fsspec URI), optional ``start``/``end`` (seconds), ``text``, optional
``key`` and ``dataset``. A bad row becomes a ``Clip`` already failed at stage ``manifest`` (it is
counted, never dropped); a file that cannot be read as a manifest at all raises
``ManifestError`` naming the file and line.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import fsspec

from pipelines.keys import derive_key, key_digest, safe_key
from pipelines.record import Clip
from pipelines.subtitles import SubtitleError, cues_text, dedupe_rolling, parse_cues

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ts"}
TEXT_EXTENSIONS = (".txt", ".srt", ".vtt")
STAGE = "manifest"
COLUMNS = {"video", "start", "end", "text", "key", "dataset"}


# The longest manifest line read: a 1 MB subtitle is a long line; a file with no newline at all
# (``/dev/zero``, a video named .csv) would otherwise be read into memory whole.
MAX_LINE_BYTES = 64 << 20
READ_CHUNK = 1 << 20
csv.field_size_limit(MAX_LINE_BYTES)  # the default 128 KiB refuses long subtitle texts


class ManifestError(ValueError):
    """The manifest as a whole is unreadable; ``str()`` is the one-line message for the user."""


RawRow = tuple[int, dict[str, Any] | str]
# A reader's reason to fail a row it could still name (a folder video whose subtitle file is
# broken: reported under its own key and video, not as an anonymous line).
_ROW_ERROR = "\0row_error"  # (line number, fields) or (line number, why unreadable)


def placeholder_key(row_index: int) -> str:
    """The key of a row too broken to have one: ``#`` never occurs in a real key
    (``pipelines.keys``), so a later row's own key can never collide with it."""
    return f"#row-{row_index:09d}"


def _valid_utf8(text: str) -> str:
    """``text`` with every surrogate (a byte that was not UTF-8, read with ``surrogateescape``,
    or a lone ``\\ud800`` from JSON) shown as U+FFFD, so it can be written as UTF-8 JSON."""
    if not _has_surrogates(text):
        return text
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _has_surrogates(text: str) -> bool:
    """True for text decoded with ``surrogateescape`` from bytes that were not UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@contextlib.contextmanager
def _open(uri: str) -> Iterator[IO[bytes]]:
    """The manifest as a binary stream: read as it goes, never whole (100M rows do not fit)."""
    try:
        with fsspec.open(uri, "rb") as f:
            yield f
    except FileNotFoundError as exc:
        raise ManifestError(f"{uri}: manifest not found") from exc
    except (IsADirectoryError, PermissionError) as exc:
        raise ManifestError(f"{uri}: cannot read manifest: {exc}") from exc


def byte_lines(uri: str, f: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``f`` (each with its ``\\n``), read in chunks; a line longer than
    ``MAX_LINE_BYTES`` stops with ``ManifestError`` instead of filling the memory.

    Chunks are split in C (``bytes.split``), so this costs little over iterating a file, which
    has no bound: 500k WebVid-like CSV lines here, 0.105-0.109 s against 0.076-0.084 s.
    """
    pending: list[bytes] = []  # the start of a line that no chunk has ended yet
    pending_bytes = 0
    lines = 0
    while chunk := f.read(READ_CHUNK):
        if b"\n" not in chunk:
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes > MAX_LINE_BYTES:
                raise ManifestError(
                    f"{uri}:{lines + 1}: a line longer than {MAX_LINE_BYTES >> 20} MiB with no "
                    "end; not a manifest"
                )
            continue
        parts = chunk.split(b"\n")
        if pending:
            parts[0] = b"".join([*pending, parts[0]])
        tail = parts.pop()
        pending, pending_bytes = ([tail], len(tail)) if tail else ([], 0)
        lines += len(parts)
        for part in parts:
            yield part + b"\n"
    if pending:
        yield b"".join(pending)


def _text_lines(uri: str, f: IO[bytes]) -> Iterator[str]:
    """``byte_lines`` as text for the CSV reader: UTF-8 (a BOM dropped; bytes that are not
    UTF-8 kept as surrogates, for the row's own error), a lone ``\\r`` also ending a line."""
    for i, raw in enumerate(byte_lines(uri, f)):
        if i == 0 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        line = raw.decode("utf-8", "surrogateescape")
        # split where a text file opened with newline="" splits (the csv module's contract)
        yield from io.StringIO(line, newline="") if "\r" in line else (line,)


def _csv_rows(uri: str, delimiter: str) -> Iterator[RawRow]:
    with _open(uri) as f:
        # strict: a malformed quote is that row's error, never silently rewritten text
        reader = csv.reader(_text_lines(uri, f), delimiter=delimiter, strict=True)
        yield from _csv_reader_rows(uri, reader)


def unclosed_quote(uri: str, start: int, last: int) -> ManifestError:
    """A quote opened on line ``start`` and never closed: every line after it, to ``last``,
    was read into one field, so which rows those lines were is unknowable; stop rather than
    guess (every CSV reader of the project words it so)."""
    return ManifestError(
        f"{uri}:{start}: a quoted field opened on this line is never closed; it runs to the end "
        f"of the file ({last - start + 1} lines), so the rows after it cannot be told apart "
        '(close the quote; a quote inside a field is written "")'
    )


def _csv_reader_rows(uri: str, reader: Any) -> Iterator[RawRow]:
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"{uri}:1: empty manifest (no header line)") from None
    except csv.Error as exc:
        raise ManifestError(f"{uri}:1: unreadable CSV header: {exc}") from None
    header = [h.strip() for h in header]
    if "video" not in header:
        raise ManifestError(
            f"{uri}:1: the header has no 'video' column (found: {', '.join(header)})"
        )
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ManifestError(f"{uri}:1: column {twice[0]!r} appears twice in the header")
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if str(exc) == "unexpected end of data":
                raise unclosed_quote(uri, start, reader.line_num) from None
            if "field larger than field limit" in str(exc):
                reason = f"a field longer than {MAX_LINE_BYTES >> 20} MiB"
            else:
                reason = f"{exc} (quote the field and double a quote in it)"
            yield start, f"unreadable CSV line: {reason}"
            continue
        if len(fields) <= 1 and not "".join(fields).strip():
            continue  # a blank line; a record of empty fields (",,,") is a row, and fails
        if len(fields) != len(header):
            yield reader.line_num, f"row has {len(fields)} fields, the header has {len(header)}"
            continue
        yield reader.line_num, dict(zip(header, fields, strict=True))


def _jsonl_rows(uri: str) -> Iterator[RawRow]:
    with _open(uri) as f:
        yield from _jsonl_lines(uri, f)


_UNREADABLE = "unreadable JSON line: "
JSONL_PROBE_LINES = 100  # unreadable lines before the first object: beyond this, not JSON Lines


def _jsonl_lines(uri: str, f: IO[bytes]) -> Iterator[RawRow]:
    """Rows of a JSON Lines file; a bad line is that row's failure.

    Unreadable lines before the first object are held back: a file whose first
    ``JSONL_PROBE_LINES`` non-blank lines all fail is no JSON Lines at all (a CSV named .jsonl)
    and stops the run naming its first line; otherwise they become failed rows like any other.
    """
    held: list[RawRow] = []
    seen_good = False
    for lineno, raw in enumerate(byte_lines(uri, f), start=1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.strip():
            continue
        if not seen_good and not held and raw.lstrip().startswith(b"["):
            raise ManifestError(
                f"{uri}:{lineno}: a JSON array, not JSON Lines; write one object per line "
                f"(e.g. jq -c '.[]' {uri} > rows.jsonl)"
            )
        line = raw.decode("utf-8", "surrogateescape")
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            # ValueError: JSONDecodeError, or a number past Python's 4,300-digit limit
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
            if isinstance(exc, RecursionError):
                why = "nested too deeply"
            bad = (lineno, f"{_UNREADABLE}{why}")
            if seen_good:
                yield bad
                continue
            held.append(bad)
            if len(held) >= JSONL_PROBE_LINES:
                break
            continue
        if not isinstance(value, dict):
            yield lineno, f"line is JSON {type(value).__name__}, not an object"
            continue
        if not seen_good:
            seen_good = True
            yield from held
        yield lineno, value
    if held and not seen_good:
        first, reason = held[0]
        raise ManifestError(f"{uri}:{first}: not JSON Lines ({reason.removeprefix(_UNREADABLE)})")


def _parquet_rows(uri: str) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    with _open(uri) as f:
        try:
            parquet = pq.ParquetFile(f)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types; all mean "not parquet"
            raise ManifestError(f"{uri}: not a readable Parquet file ({exc})") from None
        names = parquet.schema_arrow.names
        if "video" not in names:
            raise ManifestError(f"{uri}: no 'video' column (found: {', '.join(names)})")
        row = 0
        for batch in parquet.iter_batches(batch_size=8192):
            for fields in batch.to_pylist():
                row += 1
                yield row, fields


def _folder_rows(root: str) -> Iterator[RawRow]:
    folder = Path(root)
    videos = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
    )
    if not videos:
        raise ManifestError(
            f"{root}: folder holds no videos ({', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    stems = Counter(str(v.relative_to(folder).with_suffix("")) for v in videos)
    for i, video in enumerate(videos, start=1):
        stem = str(video.relative_to(folder).with_suffix(""))
        # s1.mp4 beside s1.webm: two videos, so two keys (the name with its extension)
        key = stem if stems[stem] == 1 else str(video.relative_to(folder))
        row: dict[str, Any] = {"video": str(video), "key": key}
        try:
            text = _sidecar_text(video)
        except SubtitleError as exc:  # that video's row fails, naming its subtitle file
            yield i, {**row, _ROW_ERROR: str(exc)}
            continue
        if text is not None:
            row["text"] = text
        yield i, row


def _sidecar_text(video: Path) -> str | None:
    """The text of the first same-stem .txt/.srt/.vtt beside ``video``; None when there is none."""
    for ext in TEXT_EXTENSIONS:
        side = video.with_suffix(ext)
        if side.is_file():
            # a BOM (Notepad's UTF-8) is no part of the text; strip() keeps U+FEFF
            text = side.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
            if ext == ".txt":
                return text.strip()
            try:
                return cues_text(dedupe_rolling(parse_cues(text)))
            except SubtitleError as exc:
                raise SubtitleError(f"{side}: {exc}") from None
    return None


def raw_rows(uri: str) -> Iterator[RawRow]:
    """The manifest's rows as dicts (or reasons they are unreadable), with their line numbers."""
    if "://" not in uri and Path(uri).is_dir():
        return _folder_rows(uri)
    lower = uri.lower().split("?", 1)[0]
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return _jsonl_rows(uri)
    if lower.endswith((".parquet", ".pq")):
        return _parquet_rows(uri)
    if lower.endswith(".tsv"):
        return _csv_rows(uri, "\t")
    if lower.endswith(".csv"):
        return _csv_rows(uri, ",")
    raise ManifestError(
        f"{uri}: unknown manifest type (use .csv, .tsv, .jsonl, .parquet or a folder)"
    )


def _number(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    # float() takes True (1.0) and "1_0" (10): neither is a time anyone wrote on purpose
    if isinstance(value, bool) or (isinstance(value, str) and "_" in value):
        raise ValueError(f"{name} is not a number: {str(value)[:40]!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} is not a number: {str(value)[:40]!r}") from None
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError(f"{name} is infinite")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("text is not valid UTF-8") from None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dict, list, tuple)) or hasattr(value, "tolist"):
        raise ValueError(f"text is a {type(value).__name__}, not a string")
    text = str(value)
    if _has_surrogates(text):
        raise ValueError("text is not valid UTF-8")
    return text


def _video(value: Any) -> str:
    """The ``video`` cell as a string (Parquet may hold it as binary)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else str(value)


def _json_safe(value: Any) -> Any:
    """Other manifest columns (e.g. MSR-VTT's 20 sentences) as plain JSON values for the sample."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return _valid_utf8(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {_valid_utf8(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def to_clip(row_index: int, line: int, raw: dict[str, Any] | str, allow_empty_text: bool) -> Clip:
    """One raw manifest row -> a ``Clip`` (failed at stage ``manifest`` when the row is bad).

    Whatever a row holds, the clip can be written as UTF-8 JSON: ids, dataset names and other
    columns that are not valid UTF-8 are kept with U+FFFD (only ``text`` and ``video`` must be
    exact, and fail the row instead).
    """
    if isinstance(raw, str):
        return Clip(key=placeholder_key(row_index), row=row_index, video="").fail(
            STAGE, f"line {line}: {raw}"
        )
    video = _video(raw.get("video"))
    given = raw.get("key")
    given = None if given is None or str(given).strip() == "" else str(given)
    dataset = raw.get("dataset")
    clip = Clip(
        key="",
        row=row_index,
        video=video.strip(),
        source_key=None if given is None else _valid_utf8(given),
        dataset=None if dataset is None else _valid_utf8(str(dataset)),
    )
    try:
        if given:
            clip.key = safe_key(given)
        if _ROW_ERROR in raw:
            raise ValueError(str(raw[_ROW_ERROR]))
        clip.extra = {
            _valid_utf8(str(k)): _json_safe(v)
            for k, v in sorted(raw.items())
            if k not in COLUMNS and k != _ROW_ERROR
        }
        clip.start, clip.end = _number(raw, "start"), _number(raw, "end")
        if not clip.key:
            clip.key = derive_key(clip.video, clip.start, clip.end)
        if not clip.video:
            raise ValueError("no video path")
        if _has_surrogates(clip.video):
            raise ValueError("video path is not valid UTF-8")
        clip.text = _text(raw.get("text"))
        if not allow_empty_text and not (clip.text or "").strip():
            raise ValueError("empty text (pass --allow-empty-text to keep clips without text)")
    except RecursionError:
        clip.extra = {}
        _fail_row(clip, line, "a column nests too deeply")
    except ValueError as exc:
        _fail_row(clip, line, str(exc))
    return clip


def _fail_row(clip: Clip, line: int, reason: str) -> None:
    if not clip.key:
        clip.key = placeholder_key(clip.row)
    clip.video = _valid_utf8(clip.video)  # shown in errors.jsonl
    clip.fail(STAGE, f"line {line}: {reason}")


def iter_clips(uri: str, allow_empty_text: bool = False) -> Iterator[tuple[int, Clip]]:
    """(line, clip) for every row, streaming, in order; duplicate keys are not resolved here."""
    for row_index, (line, raw) in enumerate(raw_rows(uri)):
        yield line, to_clip(row_index, line, raw, allow_empty_text)


def mark_duplicate(clip: Clip, line: int, first_row: int) -> None:
    """A later row with an earlier row's key: failed, and renamed so it can still be reported
    (``#`` never occurs in a real key, so the new name cannot be another row's key)."""
    clip.fail(STAGE, f"line {line}: duplicate key {clip.key!r} (first used by row {first_row})")
    clip.key = f"{clip.key}#dup{clip.row}"


def is_repeat_of_clip(clip: Clip) -> bool:
    """A row with no key of its own that repeats an earlier row's clip: another text of it."""
    return clip.source_key is None and clip.ok


def repeat_key(key: str, nth: int, taken: Callable[[str], bool]) -> str:
    """The key of the ``nth`` text of a clip whose derived key is ``key``: ``KEY-n``, unless a
    row of the manifest already holds that key (a key given as ``KEY-2``, say, when a manifest
    mixes rows from an earlier run with new ones); then ``KEY-n-`` plus a short hash.

    ``taken`` may answer yes for a key nobody holds (the staging check is by 8-byte hashes), so
    the hashed names are tried a bounded number of times: a false yes costs a longer key, and a
    real holder of a hashed name would have to have been made to collide."""
    candidate = f"{key}-{nth}"
    for attempt in range(1, _REPEAT_TRIES + 1):
        if not taken(candidate):
            break
        candidate = f"{key}-{nth}-{key_digest(f'{key}|{nth}|{attempt}', 6)}"
    return candidate


_REPEAT_TRIES = 8


def settle_repeat(
    clip: Clip, line: int, first_row: int, nth: int | None = None, key: str | None = None
) -> None:
    """The ``nth`` row with one key (``nth`` >= 2). A key derived from video and span (no key
    given) names the clip, and rows of one clip are its several texts (MSR-VTT's 20 sentences,
    written without ids): the n-th becomes ``key`` (``repeat_key``: ``KEY-n`` unless taken;
    runs staged before that rule stored no ``key``) and shares the clip (``split_twins``). A
    given key twice is a mistake in the manifest: the later row fails. A row that failed
    already keeps its own reason."""
    if is_repeat_of_clip(clip) and nth:
        clip.key = key or f"{clip.key}-{nth}"
    elif not clip.ok:  # failed already (empty text, say): that reason, under a free key
        clip.key = f"{clip.key}#dup{clip.row}"
    else:
        mark_duplicate(clip, line, first_row)


class Repeats:
    """Which rows repeat an earlier row's key, and what each becomes, in manifest order: the one
    rule ``read_manifest`` and staging both apply (they must settle a manifest identically).

    ``held(key)``: whether some row of the manifest has that key (to keep a clip's further
    texts off keys other rows were given, ``repeat_key``).
    """

    def __init__(self, held: Callable[[str], bool]) -> None:
        self._held = held
        self.first: dict[str, int] = {}
        self.seen: dict[str, int] = {}
        self.assigned: set[str] = set()

    def taken(self, key: str) -> bool:
        return key in self.assigned or self._held(key)

    def settle(self, clip: Clip) -> tuple[int, int, str | None] | None:
        """None for the first row of its key; else (first row, n, new key or None), the
        arguments after ``line`` of ``settle_repeat``."""
        n = self.seen[clip.key] = self.seen.get(clip.key, 0) + 1
        if n == 1:
            self.first[clip.key] = clip.row
            return None
        key = None
        if is_repeat_of_clip(clip):
            key = repeat_key(clip.key, n, self.taken)
            self.assigned.add(key)
        return self.first[clip.key], n, key


def read_manifest(uri: str, allow_empty_text: bool = False) -> list[Clip]:
    """All rows of the manifest as clips, in order; repeated keys settled by ``settle_repeat``.

    In memory: for inspecting small manifests. ``prepare`` streams through
    ``pipelines.staging`` instead, which settles them the same way (``Repeats``).
    """
    rows = list(iter_clips(uri, allow_empty_text))
    repeats = Repeats({clip.key for _, clip in rows}.__contains__)
    for line, clip in rows:
        settled = repeats.settle(clip)
        if settled is not None:
            settle_repeat(clip, line, *settled)
    return [clip for _, clip in rows]


def write_manifest(rows: Iterable[dict[str, Any]], path: str) -> None:
    """Write rows as JSON Lines (used by the demo and tests)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
