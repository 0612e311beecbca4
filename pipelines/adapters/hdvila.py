"""HD-VILA-100M: the release JSONL, one line per YouTube video with its clips' spans.

A line is ``{"video_id", "url", "clip": [{"clip_id": "ID.1.mp4", "span": ["HH:MM:SS.mmm",
"HH:MM:SS.mmm"]}]}``. Each clip becomes a row on the downloaded whole video (``--videos``,
found as ``ID.mp4`` etc.) with the clip's span; a folder that already holds the cut clip
(``ID.1.mp4``) is used as is (span: whole file). A missing video is counted, never fatal.

HD-VILA's text is the video's subtitles: with ``subtitles`` (a folder of per-video
``ID*.vtt/.srt/.json`` or one transcript JSON ``{ID: [{text, start, duration}]}``) each clip's
text is the de-duplicated subtitle cues overlapping its span. A clip without speech keeps empty
text and is counted in ``empty_text``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    iter_jsonl,
    load_json,
    make_row,
    require,
)
from pipelines.manifest import ManifestError
from pipelines.subtitles import (
    Cue,
    SubtitleError,
    clip_text,
    dedupe_rolling,
    load_subtitle_file,
    load_transcript_map,
    parse_time,
)

SUBTITLE_EXTENSIONS = (".vtt", ".srt", ".json")


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
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in SUBTITLE_EXTENSIONS:
                    # ID.vtt, ID.en.vtt, ID.en-US.srt: the id is everything before the first dot
                    self._files.setdefault(f.name.split(".", 1)[0], str(f))
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
                raw = load_subtitle_file(self._files[video_id])
            except SubtitleError as exc:
                raise ManifestError(f"{self._files[video_id]}: {exc}") from None
        else:
            raw = None
        return None if raw is None else dedupe_rolling(raw)


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("hdvila: --videos DIR is required (the folder of downloaded videos)")
    subtitles = SubtitleSource(opts.subtitles)
    dataset = opts.dataset or "hdvila"
    for uri in sources:
        for lineno, line in iter_jsonl(uri):
            where = f"{uri}:{lineno}"
            vid = require(line.get("video_id"), str, f"{where}: field 'video_id'")
            clips = require(line.get("clip"), list, f"{where}: field 'clip'")
            cues = subtitles.cues(vid) if opts.subtitles else None
            whole = videos.find(vid)
            for i, clip in enumerate(clips):
                field = f"{where}: clip[{i}]"
                require(clip, dict, field)
                clip_id = require(clip.get("clip_id"), str, f"{field}.clip_id")
                span = require(clip.get("span"), list, f"{field}.span")
                if len(span) != 2:
                    raise ManifestError(f"{field}.span: expected [start, end]")
                try:
                    start, end = (parse_time(t, f"{field}.span") for t in span)
                except SubtitleError as exc:
                    raise ManifestError(str(exc)) from None
                report.read += 1
                key = clip_id.rsplit(".", 1)[0] if clip_id.lower().endswith(".mp4") else clip_id
                if end <= start:
                    report.drop("empty span")
                    continue
                cut = videos.find(clip_id) if videos.check else None
                if cut is None and whole is None:
                    report.drop("video not found", vid)
                    continue
                text = "" if cues is None else clip_text(cues, start, end, opts.min_overlap_s)
                if opts.subtitles and cues is None:
                    report.note("kept with empty text: the video has no subtitles")
                row_video, row_start, row_end = (cut, None, None) if cut else (whole, start, end)
                yield report.keep(
                    make_row(
                        row_video,
                        row_start,
                        row_end,
                        text,
                        key,
                        dataset,
                        source_id=vid,
                        url=line.get("url"),
                        source_span=[start, end],
                    )
                )
