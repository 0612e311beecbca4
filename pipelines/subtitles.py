"""Reading subtitle files (SRT, WebVTT) into timed cues, and cue text into clean sentences."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TAG = re.compile(r"<[^>]*>")
_BRACKET = re.compile(r"\[[^\]]*\]")
_SPACES = re.compile(r"\s+")


@dataclass(slots=True, frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _seconds(match: re.Match[str]) -> float:
    h, m, s, ms = match.groups()
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def clean_cue_text(text: str) -> str:
    """Drop markup (``<c>``, ``<00:00:01.000>``, ``<i>``) and tags like ``[Music]``."""
    text = _BRACKET.sub(" ", _TAG.sub("", text))
    return _SPACES.sub(" ", text).strip()


def parse_cues(content: str) -> list[Cue]:
    """Cues of an SRT or WebVTT file (the ``-->`` line opens a cue; text runs to a blank line)."""
    cues: list[Cue] = []
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "-->" in line:
            left, _, right = line.partition("-->")
            a, b = _TIME.search(left), _TIME.search(right)
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip():
                body.append(lines[i])
                i += 1
            if a and b:
                cues.append(Cue(_seconds(a), _seconds(b), clean_cue_text(" ".join(body))))
        else:
            i += 1
    return cues


def cues_text(cues: list[Cue]) -> str:
    """All cue text in order, consecutive repeats (rolling captions) kept once."""
    out: list[str] = []
    for cue in cues:
        if cue.text and (not out or cue.text != out[-1]):
            out.append(cue.text)
    return " ".join(out)
