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

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    iter_jsonl,
    make_row,
    require,
    span_problem,
)
from pipelines.adapters.subtitle_source import SubtitleSource
from pipelines.manifest import ManifestError
from pipelines.subtitles import SubtitleError, clip_text, parse_time


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("hdvila: --videos DIR is required (the folder of downloaded videos)")
    subtitles = SubtitleSource(opts.subtitles)
    dataset = opts.dataset or "hdvila"
    # a video is counted once however many of its clips are kept (docs/adapters.md)
    no_subtitles = "videos with no subtitles (their clips kept with empty text)"
    for uri in sources:
        for lineno, line in iter_jsonl(uri):
            where = f"{uri}:{lineno}"
            vid = require(line.get("video_id"), str, f"{where}: field 'video_id'")
            clips = require(line.get("clip"), list, f"{where}: field 'clip'")
            cues = subtitles.cues(vid) if opts.subtitles else None
            whole = videos.find(vid)
            noted = False
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
                if problem := span_problem(start, end):
                    report.drop(problem)
                    continue
                cut = videos.find(clip_id) if videos.check else None
                if cut is None and whole is None:
                    report.drop("video not found", vid)
                    continue
                text = "" if cues is None else clip_text(cues, start, end, opts.min_overlap_s)
                if opts.subtitles and cues is None and not noted:
                    report.note(no_subtitles)
                    noted = True
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
