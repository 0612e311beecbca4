"""Text hygiene before measuring a domain gap.

Subtitles carry what no downstream sentence has: cue timestamps, WebVTT word-timing tags
(``<00:05:04.199>``, ``<c>``), HTML-ish markup (``<i>``) and sound tags (``[Music]``). Left in,
they make the gap look larger than the language is; so by default they are stripped, and empty
and duplicate lines (rolling ASR captions repeat themselves) are dropped. What was dropped is
counted so the report can say so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# A cue timing (``00:00:01,000 --> 00:00:02,000 align:start position:0%``): the two times and
# any ``name:value`` cue settings after them, nothing more, so text that follows it on the same
# line (a timing line joined into a sentence) is kept.
_TIMESTAMP_LINE = re.compile(
    r"(?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?[ \t]*-->[ \t]*(?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"
    r"(?:[ \t]+[A-Za-z][\w-]*:[^\s:]+)*"
)
_TIMESTAMP = re.compile(r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}")
_TAG = re.compile(r"<[^>]*>")
_SOUND = re.compile(r"\[[^\]]*\]|\([^)]*(?:music|applause|laughter|laughs|inaudible)[^)]*\)", re.I)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class TextHygiene:
    """Which clean-ups to apply. Empty lines are always dropped: they cannot be measured."""

    strip_markup: bool = True
    lowercase: bool = False
    drop_duplicates: bool = True


@dataclass(slots=True)
class HygieneStats:
    total: int = 0
    empty: int = 0
    duplicates: int = 0

    @property
    def kept(self) -> int:
        return self.total - self.empty - self.duplicates

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "kept": self.kept}


def strip_markup(text: str) -> str:
    """Remove cue timestamps, ``<...>`` tags and sound tags; collapse whitespace."""
    text = _TIMESTAMP_LINE.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _TIMESTAMP.sub(" ", text)
    text = _SOUND.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def clean_sentences(texts: list[str], hygiene: TextHygiene) -> tuple[list[str], HygieneStats]:
    """The sentences to measure, in their first-seen order, and what was dropped."""
    stats = HygieneStats(total=len(texts))
    seen: set[str] = set()
    kept: list[str] = []
    for raw in texts:
        text = strip_markup(raw) if hygiene.strip_markup else _SPACES.sub(" ", raw).strip()
        if hygiene.lowercase:
            text = text.lower()
        if not text:
            stats.empty += 1
            continue
        if hygiene.drop_duplicates:
            if text in seen:
                stats.duplicates += 1
                continue
            seen.add(text)
        kept.append(text)
    return kept, stats
