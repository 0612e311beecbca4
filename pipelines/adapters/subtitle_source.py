"""Whole-video subtitles looked up by video id, for adapters that align them to clip spans."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipelines.adapters.base import decode_text, load_json, read_bytes
from pipelines.manifest import ManifestError
from pipelines.subtitles import (
    Cue,
    SubtitleError,
    dedupe_rolling,
    load_transcript_map,
    parse_cues,
    parse_transcript,
)

SUBTITLE_EXTENSIONS = (".vtt", ".srt", ".json")

# A language tag as subtitle downloaders write it before the extension: ``en``, ``en-US``,
# ``zh-Hans``, ``pt_BR``, ``en-orig`` (yt-dlp's untranslated track).
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
# JSON yt-dlp writes beside a video that is never a transcript: its metadata and its chat.
NOT_SUBTITLES = frozenset({"info", "live_chat", "rechat", "comments"})


def language(file: Path) -> str:
    """The language tag of ``ID.en-US.vtt`` (``"en-US"``); ``""`` for ``ID.vtt`` and for a
    last dotted part that is not a language (``lecture.part2.vtt``, ``ID.info.json``)."""
    stem = file.name.rsplit(".", 1)[0]
    tag = stem.rsplit(".", 1)[1] if "." in stem else ""
    return tag if _LANGUAGE.fullmatch(tag) and tag.lower() not in NOT_SUBTITLES else ""


def subtitle_ids(file: Path) -> list[tuple[str, str]]:
    """The video ids ``file`` can be the subtitles of, each with the language it has for it.

    ``lecture.part2.en.srt``: ``lecture.part2`` (English) and, as a video's whole name,
    ``lecture.part2.en`` (no tag); ``talk.vtt``: ``talk``. Nothing for yt-dlp's
    ``ID.info.json`` / ``ID.live_chat.json``, which sit beside the videos and are no transcript.
    """
    name, suffix = file.name.rsplit(".", 1) if "." in file.name else (file.name, "")
    if f".{suffix.lower()}" not in SUBTITLE_EXTENSIONS:
        return []
    last = name.rsplit(".", 1)[-1]
    if suffix.lower() == "json" and "." in name and last.lower() in NOT_SUBTITLES:
        return []
    ids = [(name, "")]
    tag = language(file)
    if tag:
        ids.append((name[: -len(tag) - 1], tag))
    return ids


def _preference(tag: str) -> int:
    """English first (the paper's text is English; ``ID.de.vtt`` sorts before ``ID.en.vtt``),
    then a file without a language tag, then any other language; ties keep path order."""
    tag = tag.lower()
    if tag == "en" or tag.startswith(("en-", "en_")):
        return 0
    return 1 if not tag else 2


def hdvila_video_id(stem: str) -> str | None:
    """``ID`` of an HD-VILA cut clip's stem ``ID.1`` (its subtitles are the whole video's
    ``ID.en.vtt``); None for any other stem (``lecture.part2`` is a video of its own)."""
    vid, dot, clip = stem.partition(".")
    return vid if dot and vid and clip.isdigit() else None


def load_file(path: str) -> list[Cue]:
    """Cues of one video's ``.srt``/``.vtt``/transcript ``.json``, read as UTF-8 or not at all.

    Decoded here, strictly, rather than by ``pipelines.subtitles.load_subtitle_file`` (which
    replaces bad bytes): a UTF-16 file would read as "no subtitle cues" and a Latin-1 one as
    text with U+FFFD in it, where every other release file the adapters read stops naming the
    file when it is not UTF-8.
    """
    text = decode_text(read_bytes(path), path)
    if not path.lower().endswith(".json"):
        return parse_cues(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubtitleError(f"line {exc.lineno}: not JSON ({exc.msg})") from None
    return parse_transcript(data)


EXPECTED = "--subtitles expects a folder of subtitle files or a {id: [...]} transcript JSON"


def _transcript_map(where: str) -> dict[str, list[Cue]]:
    """Cues by video id from one transcript JSON file ``{id: [{text, start, duration}]}``.

    One ``.srt``/``.vtt`` file names no video, so it is refused saying what the option takes,
    rather than read as JSON and failing with "Extra data" at its first cue number.
    """
    if Path(where).suffix.lower() in (".srt", ".vtt"):
        raise ManifestError(
            f"{where}: {EXPECTED}, not one subtitle file (name it ID.srt in a folder)"
        )
    try:
        return load_transcript_map(load_json(where))
    except SubtitleError as exc:
        raise ManifestError(f"{where}: {exc} ({EXPECTED})") from None
    except ManifestError as exc:
        raise ManifestError(f"{exc} ({EXPECTED})") from None


class SubtitleSource:
    """Whole-video cues by video id, from a folder of files or one transcript JSON."""

    def __init__(self, where: str | None) -> None:
        self.where = where
        self._files: dict[str, str] = {}
        self._map: dict[str, list[Cue]] | None = None
        if where is None:
            return
        path = Path(where)
        if path.is_dir():
            found: dict[str, list[tuple[int, int, Path]]] = {}
            for order, f in enumerate(sorted(path.rglob("*"))):
                if f.is_file():
                    # ID.vtt, ID.en.vtt, ID.en-US.srt: the id is the name without its language
                    # tag (lecture.part2.en.srt: lecture.part2), never what the first dot leaves
                    for vid, tag in subtitle_ids(f):
                        found.setdefault(vid, []).append((_preference(tag), order, f))
            self._files = {vid: str(min(files)[2]) for vid, files in found.items()}
        elif path.is_file():
            self._map = _transcript_map(where)
        else:
            raise ManifestError(f"{where}: --subtitles is neither a folder nor a file")

    def has(self, video_id: str) -> bool:
        """Whether the video has subtitles here (a file named for it, or a key of the JSON)."""
        return video_id in (self._files if self._map is None else self._map)

    def cues(self, video_id: str) -> list[Cue] | None:
        """De-duplicated cues of the video, or None when it has no subtitles."""
        if self._map is not None:
            raw = self._map.get(video_id)
        elif video_id in self._files:
            try:
                raw = load_file(self._files[video_id])
            except SubtitleError as exc:
                raise ManifestError(f"{self._files[video_id]}: {exc}") from None
        else:
            raw = None
        return None if raw is None else dedupe_rolling(raw)
