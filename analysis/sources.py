"""Text sources for the domain-gap analysis: ``NAME=PATH[:FIELD]`` -> a list of sentences.

A source is one corpus of sentences. What PATH may be:

- a plain text file (``.txt``): one sentence a line;
- a table (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``) and FIELD the text column (default: the
  first of ``text``, ``sentence``, ``caption`` it has);
- a subtitle file (``.srt``, ``.vtt``): one sentence per cue, markup left for the hygiene step;
- a JSON file in one of the caption formats researchers download as is: a list of strings, COCO
  annotations (``{"annotations": [{"caption"}]}``), ActivityNet Captions
  (``{id: {"sentences": [...]}}``) or YouTube transcripts (``{id: [{"text"}]}``);
- prepared shards (a ``clipvip prepare`` run folder, or one ``.tar``) and FIELD ``txt`` (the
  subtitles, default) or ``caption.txt`` (the generated captions): one corpus measured before
  and after captioning.

PATH is a local path or any fsspec URI (``s3://bucket/msrvtt.csv:sentence``; ``s3fs`` needed).
The last ``:`` starts FIELD, unless PATH does not exist and the whole ``PATH:FIELD`` does: then
that is the path (``asr_10:00.txt``, a file name with a colon).

Every failure to read a source raises ``SourceError`` whose message names the source, so a run
over five corpora says which one is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import fsspec

log = logging.getLogger("clipvip")

TABLE_DEFAULT_COLUMNS = ("text", "sentence", "caption")
SHARD_FIELDS = {
    "txt": "txt",
    "subtitle": "txt",
    "caption.txt": "caption.txt",
    "caption": "caption.txt",
}


class SourceError(ValueError):
    """A source cannot be read; ``str()`` is a one-line message that names the source."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One ``--source NAME=PATH[:FIELD]`` argument, parsed."""

    name: str
    path: str
    field: str | None = None

    @classmethod
    def parse(cls, arg: str) -> SourceSpec:
        """``NAME=PATH[:FIELD]``; a ``:`` followed by a ``/`` belongs to the path (``s3://``)."""
        name, eq, rest = arg.partition("=")
        name = name.strip()
        if not eq or not name or not rest:
            raise SourceError(f"--source {arg!r}: expected NAME=PATH or NAME=PATH:FIELD")
        path, colon, field = rest.rpartition(":")
        if colon and path and field and "/" not in field and not path.endswith(("://", ":")):
            return cls(name, path, field)
        return cls(name, rest, None)

    def __str__(self) -> str:
        return f"{self.name}={self.path}" + (f":{self.field}" if self.field else "")

    def resolve(self) -> SourceSpec:
        """The spec to read: ``PATH:FIELD`` is taken whole as the path when PATH does not exist
        but the whole does, so a file name with a colon (``asr_10:00.txt``) is not split into
        a path and a column. ``parse`` cannot decide this: it does not look at the disk."""
        if self.field is None or _exists(self.path):
            return self
        whole = f"{self.path}:{self.field}"
        return SourceSpec(self.name, whole, None) if _exists(whole) else self


def _fail(spec: SourceSpec, why: str) -> SourceError:
    return SourceError(f"source {spec.name!r} ({spec.path}): {why}")


def _fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and in-filesystem path of a local path or any fsspec URI (s3://...)."""
    return fsspec.core.url_to_fs(path)


def _exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def _read_text(spec: SourceSpec, path: str) -> str:
    fs, p = _fs(path)
    try:
        data = fs.cat_file(p)
    except OSError as exc:
        raise _fail(spec, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(spec, f"not UTF-8 text (byte {exc.start}, line {line}); re-encode it") from None


def _pick_column(spec: SourceSpec, columns: list[str]) -> str:
    if spec.field:
        if spec.field not in columns:
            raise _fail(spec, f"no column {spec.field!r}; columns: {', '.join(columns) or 'none'}")
        return spec.field
    for name in TABLE_DEFAULT_COLUMNS:
        if name in columns:
            return name
    raise _fail(
        spec, f"say which column holds the text (NAME=PATH:COLUMN); columns: {', '.join(columns)}"
    )


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _read_csv(spec: SourceSpec, path: str, delimiter: str) -> list[str]:
    """A header padded with spaces (``id, text``) names its columns by the stripped names; the
    rows are keyed by the header as written, so the column is read by that key."""
    reader = csv.DictReader(io.StringIO(_read_text(spec, path), newline=""), delimiter=delimiter)
    header: dict[str, str] = {}
    for name in reader.fieldnames or []:
        header.setdefault(name.strip(), name)
    column = header[_pick_column(spec, list(header))]
    try:
        return [_as_text(row.get(column)) for row in reader]
    except csv.Error as exc:
        raise _fail(spec, f"unreadable CSV at line {reader.line_num}: {exc}") from None


def _read_jsonl(spec: SourceSpec, path: str) -> list[str]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(_read_text(spec, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(spec, f"line {number} is not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise _fail(spec, f"line {number} is not a JSON object")
        rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    column = _pick_column(spec, columns)
    return [_as_text(row.get(column)) for row in rows]


def _read_parquet(spec: SourceSpec, path: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, p = _fs(path)
    try:
        with fs.open(p, "rb") as f:
            column = _pick_column(spec, list(pq.read_schema(f).names))
        with fs.open(p, "rb") as f:
            values = pq.read_table(f, columns=[column]).column(column).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise _fail(spec, f"unreadable Parquet: {exc}") from None
    return [_as_text(v) for v in values]


def _read_json(spec: SourceSpec, path: str) -> list[str]:
    """The caption formats in which public datasets ship (see the module docstring)."""
    try:
        data = json.loads(_read_text(spec, path))
    except json.JSONDecodeError as exc:
        raise _fail(spec, f"not JSON (line {exc.lineno}): {exc.msg}") from None
    key = spec.field
    if isinstance(data, list):
        if all(isinstance(x, str) for x in data):
            return list(data)
        if all(isinstance(x, dict) for x in data):
            column = _pick_column(spec, list(dict.fromkeys(k for row in data for k in row)))
            return [_as_text(row.get(column)) for row in data]
    if isinstance(data, dict):
        if isinstance(data.get("annotations"), list):  # COCO captions
            return [
                _as_text(a.get(key or "caption"))
                for a in data["annotations"]
                if isinstance(a, dict)
            ]
        values = list(data.values())
        if values and all(isinstance(v, dict) and "sentences" in v for v in values):
            return _read_activitynet(spec, data)
        if values and all(isinstance(v, list) for v in values):  # YouTube transcripts
            return [
                _as_text(seg.get(key or "text"))
                for v in values
                for seg in v
                if isinstance(seg, dict)
            ]
    raise _fail(
        spec,
        "unknown JSON layout; expected a list of strings or objects, COCO annotations, "
        "ActivityNet captions or {video: [{text}]} transcripts",
    )


def _read_activitynet(spec: SourceSpec, data: dict[str, dict]) -> list[str]:
    """ActivityNet Captions: ``{video: {"sentences": [...]}}``. A string there is refused: read
    as a list it would be measured one character at a time."""
    out: list[str] = []
    for video, v in data.items():
        sentences = v["sentences"]
        if not isinstance(sentences, list):
            raise _fail(
                spec,
                f"ActivityNet field 'sentences' of {video!r} is a {type(sentences).__name__}; "
                "expected a list of sentences",
            )
        out += [_as_text(s) for s in sentences]
    return out


def _read_subtitles(spec: SourceSpec, path: str) -> list[str]:
    """One sentence per cue, markup kept (the hygiene step decides what to strip).

    A cue's text runs to a blank line or to the next ``-->`` line: YouTube's auto-caption VTT
    puts the next cue's timing right under the text. (The same reading as
    ``pipelines.subtitles.parse_cues``, which analysis does not import: it reads shards only.)
    """
    lines = _read_text(spec, path).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if "-->" in lines[i]:
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip() and "-->" not in lines[i]:
                body.append(lines[i].strip())
                i += 1
            out.append(" ".join(body))
        else:
            i += 1
    if not out and lines and any(line.strip() for line in lines):
        raise _fail(spec, "no subtitle cues (no '-->' lines)")
    return out


def _read_shards(spec: SourceSpec, path: str) -> list[str]:
    from shards.reader import iter_samples

    field = SHARD_FIELDS.get(spec.field or "txt")
    if field is None:
        raise _fail(spec, f"shards have no text field {spec.field!r}; use txt or caption.txt")
    texts: list[str] = []
    missing = 0
    try:
        for sample in iter_samples(path):
            if field in sample:
                texts.append(sample[field])
            else:
                missing += 1
    except (OSError, ValueError) as exc:
        raise _fail(spec, f"unreadable shards: {exc}") from None
    if not texts and not missing:
        raise _fail(spec, "no text: no samples (every row failed? see the run's errors.jsonl)")
    if missing and not texts:
        raise _fail(spec, f"no sample has a {field!r} (prepared with --captioner none?)")
    return texts


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _warn_if_numbers(spec: SourceSpec, texts: list[str]) -> None:
    """Numbers are measured as text like anything else, but a column that is mostly numbers is
    almost always the wrong column (an id, a duration), so say so."""
    values = [t for t in texts if t.strip()]
    numbers = sum(_number(t) for t in values)
    if numbers * 2 > len(values):
        what = f"column {spec.field!r}" if spec.field else "the text read"
        log.warning(
            "source %r (%s): %d of %d values of %s are numbers; is it the text? "
            "(name the column with NAME=PATH:COLUMN)",
            spec.name,
            spec.path,
            numbers,
            len(values),
            what,
        )


def is_shard_source(path: str) -> bool:
    """A prepared run folder (it has ``index.json``) or a single shard ``.tar``."""
    fs, p = _fs(path)
    return path.endswith(".tar") or (fs.isdir(p) and fs.isfile(f"{p.rstrip('/')}/index.json"))


def read_source(spec: SourceSpec) -> list[str]:
    """Every sentence of a source, in file order, untouched (hygiene is a separate step).

    Raises ``SourceError`` naming the source when the file is missing, unreadable, not UTF-8,
    lacks the column, or holds no text at all. Warns when most of the text is numbers.
    """
    spec = spec.resolve()
    path = spec.path
    fs, p = _fs(path)
    if not fs.exists(p):
        also = f" (nor is there a file {path}:{spec.field})" if spec.field else ""
        raise _fail(spec, f"no such file or folder{also}")
    if is_shard_source(path):
        texts = _read_shards(spec, path)
    elif fs.isdir(p):
        raise _fail(spec, "a folder, but not a prepared run (no index.json)")
    else:
        suffix = PurePosixPath(p).suffix.lower()
        if suffix == ".csv":
            texts = _read_csv(spec, path, ",")
        elif suffix == ".tsv":
            texts = _read_csv(spec, path, "\t")
        elif suffix == ".jsonl":
            texts = _read_jsonl(spec, path)
        elif suffix == ".parquet":
            texts = _read_parquet(spec, path)
        elif suffix == ".json":
            texts = _read_json(spec, path)
        elif suffix in (".srt", ".vtt"):
            texts = _read_subtitles(spec, path)
        else:
            if spec.field:
                raise _fail(spec, f"a plain text file has no column {spec.field!r}")
            texts = _read_text(spec, path).splitlines()
    if not any(t.strip() for t in texts):
        raise _fail(spec, "empty: no text to measure")
    _warn_if_numbers(spec, texts)
    return texts
