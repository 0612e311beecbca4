"""Whole-video subtitles looked up by video id, for adapters that align them to clip spans."""

from __future__ import annotations

import json
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


def language(file: Path) -> str:
    """The language tag of ``ID.en-US.vtt`` (``"en-US"``); ``""`` for ``ID.vtt``."""
    parts = file.name.split(".")
    return ".".join(parts[1:-1])


def _preference(file: Path) -> int:
    """English first (the paper's text is English; ``ID.de.vtt`` sorts before ``ID.en.vtt``),
    then a file without a language tag, then any other language; ties keep path order."""
    tag = language(file).lower()
    if tag == "en" or tag.startswith(("en-", "en_")):
        return 0
    return 1 if not tag else 2


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
            found: dict[str, list[Path]] = {}
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in SUBTITLE_EXTENSIONS:
                    # ID.vtt, ID.en.vtt, ID.en-US.srt: the id is everything before the first dot
                    found.setdefault(f.name.split(".", 1)[0], []).append(f)
            self._files = {vid: str(min(files, key=_preference)) for vid, files in found.items()}
        elif path.is_file():
            try:
                self._map = load_transcript_map(load_json(where))
            except SubtitleError as exc:
                raise ManifestError(f"{where}: {exc}") from None
        else:
            raise ManifestError(f"{where}: --subtitles is neither a folder nor a file")

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
