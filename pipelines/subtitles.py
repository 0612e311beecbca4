"""Whole-video subtitles (SRT, WebVTT, YouTube transcript JSON) as timed cues, and clip text.

CLIP-ViP trains on clips whose text is the speech inside the clip's span, while subtitles come
per whole video. Three steps get from one to the other, each a pure function:

1. parse: ``parse_cues`` (SRT/WebVTT; YouTube's auto-caption word-timing tags give each word
   its own time) or
   ``parse_transcript`` (YouTube transcript JSON ``[{text, start, duration}]``) give ``Cue``s
   with clean text (markup, ``[Music]``-style tags and ``>>`` speaker marks dropped).
2. ``dedupe_rolling``: YouTube shows captions as two rolling lines, so every line appears in two
   or more consecutive cues. Each cue keeps only the words it adds to the running text.
3. ``clip_text``: the text of a clip is the de-duplicated cues overlapping its span (timed
   words: exactly the words said inside it).

``parse_cues`` and ``cues_text`` keep their original contract (``pipelines.manifest`` uses them
for folder inputs).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TIME = re.compile(r"(?:(\d{1,6}):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TIMESTAMP = re.compile(r"^\s*(?:(\d{1,6}):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?\s*$")
# A cue timing's time; the fraction may be missing (``00:00:01 --> 00:00:02`` SRT in the wild).
_CUE_TIME = re.compile(r"(?:(\d{1,6}):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?")
# Markup, and only markup: an unescaped ``<`` in speech ("if a < b and c > d") is text. Tags
# SRT/WebVTT use (``<i>``, ``</i>``, ``<c.colorE5E5E5>``, ``<font color="red">``, ``<v Bob>``)
# and timestamps (``<00:00:01.000>``); only voice, language, font and span tags take words.
_TAG = re.compile(
    r"</?(?:[bius]|c|ruby|rt|rp)(?:\.[\w-]+)*\s*/?>"
    r"|</?(?:v|lang|font|span)(?:\.[\w-]+)*(?:\s[^<>]*)?>"
    r"|<(?:\d{1,6}:)?\d{1,2}:\d{2}[.,]\d{1,3}>",
    re.IGNORECASE,
)
# A line break some converters write into SRT text: a space between the words it parts.
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# ASS/SSA override blocks that SRT files carry over from their source (``{\an8}``, ``{\i1}``).
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
_WORD_TIME = re.compile(r"<((?:\d{1,6}:)?\d{1,2}:\d{2}[.,]\d{1,3})>")
_BRACKET = re.compile(r"\[[^\]]*\]")
_SPEAKER = re.compile(r"(?:^|\s)(?:>>|&gt;&gt;)+")
_SPACES = re.compile(r"\s+")
_WORD_KEY = re.compile(r"[^\w']+")

# A cue that starts this long after the furthest display end of the cues before it is new
# speech, not a rolling repeat: only within this gap are its leading words compared with the
# text so far.
ROLLING_GAP_S = 0.5
# How many trailing words of the running text are kept to compare (YouTube repeats one line).
ROLLING_WINDOW = 64


class SubtitleError(ValueError):
    """A subtitle file cannot be read; ``str()`` names the field (callers add the file)."""


@dataclass(slots=True, frozen=True)
class Cue:
    start: float
    end: float
    text: str
    # When each word of ``text.split()`` starts, where the file says (YouTube's auto-caption
    # ``<00:05:04.199>`` tags); None when only the cue is timed.
    words: tuple[float, ...] | None = None


def _seconds(match: re.Match[str], where: str) -> float:
    """Seconds of a matched ``[H:]MM:SS[.mmm]``; seconds past 59, or minutes past 59 under an
    hours field, stop naming ``where``: ``00:00:75,000`` is a typo, and read as 75 s it would
    move the cue silently. Without hours, minutes may run on (``75:30.000``: some tools write
    mm:ss for videos longer than an hour)."""
    h, m, s, ms = match.groups()
    if (h is not None and int(m) >= 60) or int(s) >= 60:
        raise SubtitleError(f"{where}: {match.group(0)!r}: minutes and seconds must be below 60")
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int((ms or "0").ljust(3, "0")) / 1000


def clean_cue_text(text: str) -> str:
    """Drop markup (``<c>``, ``<00:00:01.000>``, ``<i>``, ASS ``{\\an8}``), tags like
    ``[Music]`` and ``>>``; a ``<`` that opens no tag is speech and stays.

    Entities (``&#39;``, ``&amp;``) are decoded after the markup is gone, so an encoded ``&lt;``
    in speech is kept as text rather than mistaken for a tag.
    """
    text = _TAG.sub("", _BREAK.sub(" ", text))
    text = _BRACKET.sub(" ", _ASS_OVERRIDE.sub("", text))
    text = _SPEAKER.sub(" ", text)
    return _SPACES.sub(" ", html.unescape(text)).strip()


def parse_cues(content: str) -> list[Cue]:
    """Cues of an SRT or WebVTT file (the ``-->`` line opens a cue; text runs to a blank line).

    A cue's text also ends at the next ``-->`` line: YouTube's auto-caption VTT often has no
    blank line between cues. A line of spaces right after the timing line is the cue's (empty)
    first line, not its end: yt-dlp writes `` `` there, then the line with the words.

    Raises ``SubtitleError`` (``"line N: ..."``; callers add the file) for a ``-->`` line whose
    times do not parse, and for a non-empty file with no cue at all: either would otherwise give
    every clip of the video empty text without a word. A WebVTT file that is only its header
    (``WEBVTT``, a video without speech) has no cues and is not an error.
    """
    cues: list[Cue] = []
    lines = content.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "-->" in line:
            start, end = _timing(line, i + 1)
            timing_line = i + 1
            i += 1
            body: list[str] = []
            while i < len(lines) and not _body_ends(lines, i, bool(body)):
                body.append(lines[i])
                i += 1
            cues.append(_cue(start, end, " ".join(body), f"line {timing_line}"))
        else:
            i += 1
    if not cues:
        first = next((n for n, line in enumerate(lines, 1) if line.strip()), None)
        if first is not None and not lines[first - 1].strip().startswith("WEBVTT"):
            raise SubtitleError(
                f"line {first}: no subtitle cues (no 'START --> END' line) in a file "
                f"that starts {lines[first - 1].strip()[:40]!r}"
            )
    return cues


def _body_ends(lines: list[str], i: int, after_text: bool) -> bool:
    """Whether line ``i`` is past the end of the cue text that started before it.

    The text ends at an empty line, at the next ``-->`` line, and at an SRT cue number (digits
    alone) right before one. A line of only spaces ends it too (hand-written files separate cues
    that way), except as the cue's first line: yt-dlp's auto-caption VTT opens a cue with a
    single space where there is no previous line to repeat, and the words follow on the next.
    """
    line = lines[i]
    if not line or "-->" in line:
        return True
    if not line.strip():
        return after_text
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    return line.strip().isdigit() and "-->" in nxt


def _timing(line: str, lineno: int) -> tuple[float, float]:
    """Start and end of a cue timing line (``00:00:01,000 --> 00:00:02,000 [settings]``)."""
    left, _, right = line.partition("-->")
    a = _CUE_TIME.fullmatch(left.strip())
    b = _CUE_TIME.fullmatch(right.split()[0]) if right.split() else None  # then settings
    if a is None or b is None:
        raise SubtitleError(
            f"line {lineno}: not a cue timing 'START --> END': {line.strip()[:60]!r}"
        )
    where = f"line {lineno}"
    return _seconds(a, where), _seconds(b, where)


def _cue(start: float, end: float, body: str, where: str) -> Cue:
    """A cue; with word-timing tags, each word gets its time (words before the first tag start
    with the cue), so a clip edge inside the cue splits it word by word. ``where`` names the
    cue's timing line in an error."""
    parts = _WORD_TIME.split(body)
    if len(parts) == 1:
        return Cue(start, end, clean_cue_text(body))
    words: list[str] = []
    times: list[float] = []
    at = start
    for i, part in enumerate(parts):
        if i % 2:  # a captured timestamp: the words that follow start there
            match = _TIME.search(part)
            at = _seconds(match, f"{where}: word time") if match else at
            continue
        for word in clean_cue_text(part).split():
            words.append(word)
            times.append(at)
    return Cue(start, end, " ".join(words), tuple(times))


def cues_text(cues: list[Cue]) -> str:
    """All cue text in order, consecutive repeats (rolling captions) kept once."""
    out: list[str] = []
    for cue in cues:
        if cue.text and (not out or cue.text != out[-1]):
            out.append(cue.text)
    return " ".join(out)


def parse_time(value: Any, field: str) -> float:
    """Seconds from a number, a numeric string or a ``[HH:]MM:SS[.mmm]`` timestamp."""
    if isinstance(value, bool):
        raise SubtitleError(f"{field}: not a time: {value!r}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int past 1e308
            raise SubtitleError(f"{field}: not a time: {str(value)[:40]!r}") from None
    elif isinstance(value, str):
        match = _TIMESTAMP.match(value)
        if match:
            return _seconds(match, field)
        try:
            number = float(value)
        except ValueError:
            raise SubtitleError(f"{field}: not a time: {value[:40]!r}") from None
    else:
        raise SubtitleError(f"{field}: not a time: {value!r}")
    if not math.isfinite(number) or number < 0:
        raise SubtitleError(f"{field}: not a time: {value!r}")
    return number


def parse_transcript(items: Any, where: str = "") -> list[Cue]:
    """Cues of a YouTube transcript ``[{text, start, duration}]``.

    Also accepted per item: ``end`` instead of ``duration`` and ``lines`` (a list) instead of
    ``text``, which is how video2dataset stores ``clip_subtitles``. ``where`` prefixes the field
    named in a ``SubtitleError`` (e.g. the video id).
    """
    if not isinstance(items, list):
        raise SubtitleError(
            f"{where or 'transcript'}: expected a list of cues, got {type(items).__name__}"
        )
    cues: list[Cue] = []
    for i, item in enumerate(items):
        field = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise SubtitleError(f"{field}: expected an object, got {type(item).__name__}")
        if "text" in item:
            raw = item["text"]
        elif "lines" in item and isinstance(item["lines"], list):
            raw = " ".join(str(line) for line in item["lines"])
        else:
            raise SubtitleError(f"{field}: no 'text'")
        if not isinstance(raw, str):
            raise SubtitleError(f"{field}.text: not a string")
        if "start" not in item:
            raise SubtitleError(f"{field}: no 'start'")
        start = parse_time(item["start"], f"{field}.start")
        if "duration" in item:
            # to the millisecond, the precision subtitle times have (no 11.440000000000001)
            end = round(start + parse_time(item["duration"], f"{field}.duration"), 3)
        elif "end" in item:
            end = parse_time(item["end"], f"{field}.end")
        else:
            raise SubtitleError(f"{field}: no 'duration' or 'end'")
        cues.append(Cue(start, max(start, end), clean_cue_text(raw)))
    return cues


def _word_key(word: str) -> str:
    return _WORD_KEY.sub("", word.casefold())


def dedupe_rolling(cues: Iterable[Cue], gap_s: float = ROLLING_GAP_S) -> list[Cue]:
    """Each cue reduced to the words it adds; cues that add nothing are dropped.

    YouTube's rolling captions repeat the previous line at the top of the next cue (and flash
    10 ms cues holding only the repeated line); its transcript JSON repeats lines the same way.
    A cue that starts within ``gap_s`` of the furthest end of the cues before it (display
    times: a rolling line is still shown when the next appears) loses its leading words
    when they are a whole line just shown (the previous cue's text, or the words it added) and
    the running text ends with them (compared without case and punctuation). Fewer words
    repeated are speech ("... help i had" then "i had a family"), and speech after a pause is
    never trimmed, so words said twice stay twice. Starts are kept; a cue's end is cut to the
    start of the next kept cue that rolls over it (``_speech_end``: its display time outlasts
    its speech), so the result aligns to clip spans; a cue with another nested inside keeps its
    end.
    """
    out: list[Cue] = []
    tail: list[str] = []
    # the lines a rolling cue can repeat: the previous cue's words and the words it added
    lines: list[list[str]] = []
    last_end = -math.inf
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        words = cue.text.split()
        if not words:
            continue
        keys = [_word_key(w) for w in words]
        overlap = 0
        if cue.start <= last_end + gap_s:
            for line in lines:
                k = len(line)
                if k > overlap and keys[:k] == line and tail[-k:] == line:
                    overlap = k
        else:
            tail = []
        new = words[overlap:]
        last_end = max(last_end, cue.end)
        lines = [keys, keys[overlap:]] if new else [keys, *lines[1:2]]
        if not new:
            continue
        times = cue.words[overlap:] if cue.words and len(cue.words) == len(words) else None
        out.append(Cue(cue.start, cue.end, " ".join(new), times))
        tail = (tail + keys[overlap:])[-ROLLING_WINDOW:]
    return [_speech_end(out, i) for i in range(len(out))]


def _speech_end(cues: list[Cue], i: int) -> Cue:
    """Cue ``i`` ending where the line that rolls over it starts.

    YouTube transcript durations are display times that overlap the next line by seconds, which
    would leak words into the next clip. Only a roll-over is cut: a later cue that starts inside
    this one and ends at or after it. A cue nested inside it (another speaker's "hey" during a
    narrator's long line) is simultaneous speech: cutting there would take the long line's words
    out of every clip after the short one. ``cues`` are sorted by start; the scan stops at the
    first cue starting after this one ends.
    """
    cue = cues[i]
    for nxt in cues[i + 1 :]:
        if nxt.start >= cue.end:
            break
        if nxt.start > cue.start and nxt.end >= cue.end:
            return Cue(cue.start, nxt.start, cue.text, cue.words)
    return cue


def _overlaps(cue: Cue, start: float, end: float, min_overlap_s: float) -> bool:
    if cue.end <= cue.start:  # an instant: inside the span counts
        return start <= cue.start < end
    return min(cue.end, end) - max(cue.start, start) > min_overlap_s


def clip_text(
    cues: Sequence[Cue], start: float | None, end: float | None, min_overlap_s: float = 0.0
) -> str:
    """The text of the span ``[start, end)``: de-duplicated cues overlapping it, in order.

    Pass cues already through ``dedupe_rolling`` (done once per video, not per clip). A cue
    whose words are timed (YouTube auto-captions) gives exactly its words starting inside the
    span, so clips that tile a video share no word; any other cue crossing either edge counts
    whole, and a cue that only touches an edge does not. ``None`` edges mean the start or end of
    the video. No overlapping speech gives ``""``.
    """
    lo = 0.0 if start is None else start
    hi = math.inf if end is None else end
    parts = []
    for c in cues:
        if not c.text:
            continue
        if c.words is not None:
            inside = [w for w, t in zip(c.text.split(), c.words, strict=True) if lo <= t < hi]
            if inside:
                parts.append(" ".join(inside))
        elif _overlaps(c, lo, hi, min_overlap_s):
            parts.append(c.text)
    return " ".join(parts)


def align_clips(
    cues: Sequence[Cue],
    spans: Sequence[tuple[float | None, float | None]],
    min_overlap_s: float = 0.0,
) -> list[str]:
    """``clip_text`` for each span of one video, de-duplicating the video's cues once."""
    clean = dedupe_rolling(cues)
    return [clip_text(clean, s, e, min_overlap_s) for s, e in spans]


def load_subtitle_file(path: str | Path) -> list[Cue]:
    """Cues of one video's subtitle file: ``.srt``, ``.vtt`` or a transcript ``.json`` list."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8", "replace").lstrip("\ufeff")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubtitleError(f"line {exc.lineno}: not JSON ({exc.msg})") from None
        return parse_transcript(data)
    return parse_cues(text)


def load_transcript_map(data: Any) -> dict[str, list[Cue]]:
    """A JSON object ``{video_id: [{text, start, duration}]}`` (many videos in one file)."""
    if not isinstance(data, dict):
        raise SubtitleError(f"expected an object {{video_id: [cues]}}, got {type(data).__name__}")
    return {str(vid): parse_transcript(items, str(vid)) for vid, items in data.items()}
