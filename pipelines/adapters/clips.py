"""Any clip manifest plus whole-video subtitles: each row's text aligned from its video's cues.

For users who already list their clips (``video, start, end[, key, dataset]`` in CSV, TSV,
JSONL or Parquet, as ``pipelines.manifest`` reads them) and hold subtitles per whole video:
``subtitles`` is a folder of ``STEM.vtt/.srt/.json`` files named after each video's file stem,
or one transcript JSON ``{STEM: [{text, start, duration}]}``. A row's own ``text`` is kept when
it has no subtitles; otherwise the text is the de-duplicated cues inside its span.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    make_row,
    span_problem,
)
from pipelines.adapters.subtitle_source import SubtitleSource, hdvila_video_id
from pipelines.manifest import VIDEO_EXTENSIONS, ManifestError, raw_rows, to_clip
from pipelines.subtitles import Cue, clip_text


def _subtitle_id(video: str, subtitles: SubtitleSource) -> str:
    """The id ``video``'s subtitles are under: its file stem (``lecture.part2.mp4`` ->
    ``lecture.part2``), else for an HD-VILA cut clip (``ID.1.mp4``) its whole video's ``ID``."""
    name = video.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name
    whole = hdvila_video_id(stem)
    return whole if whole and not subtitles.has(stem) and subtitles.has(whole) else stem


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if not opts.subtitles:
        raise ManifestError("clips: --subtitles PATH is required (that is what this format adds)")
    subtitles = SubtitleSource(opts.subtitles)
    cache: dict[str, list[Cue] | None] = {}
    for uri in sources:
        for index, (line, raw) in enumerate(raw_rows(uri)):
            report.read += 1
            clip = to_clip(index, line, raw, allow_empty_text=True)
            if clip.error is not None:  # "line 7: start is not a number: 'x'" -> one reason
                report.drop(f"bad row: {clip.error.reason.split(': ')[1]}")
                continue
            problem = None if None in (clip.start, clip.end) else span_problem(clip.start, clip.end)
            if problem:  # no cue lies inside [2, 1]: the row would keep empty text, not its own
                report.drop(problem)
                continue
            video = clip.video
            if videos is not None and "/" not in video:
                found = videos.find(video)
                if found is None:
                    report.drop("video not found", video)
                    continue
                video = found
            stem = _subtitle_id(clip.video, subtitles)
            if stem not in cache:
                cache[stem] = subtitles.cues(stem)
            cues = cache[stem]
            if cues is None:
                report.note("kept its own text: the video has no subtitles")
                text = clip.text or ""
            else:
                text = clip_text(cues, clip.start, clip.end, opts.min_overlap_s)
            extra: dict[str, Any] = {}
            if cues is not None and clip.text:
                extra["original_text"] = clip.text
            yield report.keep(
                make_row(
                    video,
                    clip.start,
                    clip.end,
                    text,
                    clip.source_key or clip.key,
                    clip.dataset or opts.dataset or "clips",
                    **extra,
                )
            )
