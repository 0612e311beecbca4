"""DiDeMo: the release JSON, a list of ``{video, description, times: [[s, e], ...]}``.

``times`` holds each annotator's moment as 5-second segment indices (integers 0-5, inclusive),
so a moment spans ``[5 * s, 5 * (e + 1))`` seconds. ``clip`` mode: one row per description, the
moment most annotators agreed on (ties: the earliest, then the shortest). ``paragraph`` mode:
one row per video with every description joined in moment order, the whole video as the span:
how CLIP-ViP evaluates DiDeMo (paragraph-to-video retrieval).

The last segment runs to the video's end, as DiDeMo's evaluation treats it: videos are at most
30 s and rarely a multiple of 5 s, so ``5 * (e + 1)`` would end past a 27 s video and the probe
stage would reject the clip. A moment ending in the last segment therefore gets ``end`` None
(the video's end). The last segment is ``num_segments - 1`` where the item gives
``num_segments`` (the LocalizingMoments release does), else segment 5. A moment starting after
the last segment ``num_segments`` allows is dropped, counted. Without ``num_segments`` the
adapter cannot know a video is short: a moment ending before segment 5 ends at
``5 * (e + 1)`` s, and on a video shorter than that (the release's videos are 25-30 s, so a
truncated download) the probe stage records it as failed, naming the span and the duration.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    clean_sentence,
    finite_number,
    load_json,
    make_row,
    require,
)
from pipelines.manifest import ManifestError

SEGMENT_S = 5.0


LAST_SEGMENT = 5  # DiDeMo videos are cut to at most 30 s: six 5-second segments


def segment_index(value: object, where: str) -> int:
    """A segment index, an integer 0..5: ``1.7`` would silently truncate and ``6`` span 30-35 s
    of a video that has no such segment, so either stops naming the field."""
    number = finite_number(value, where, "segment index")
    if not number.is_integer() or not 0 <= number <= LAST_SEGMENT:
        raise ManifestError(f"{where}: not a segment index 0-{LAST_SEGMENT}: {json.dumps(value)}")
    return int(number)


def moment(times: list[list[int]], where: str) -> tuple[int, int]:
    """The annotators' consensus moment as (first segment, last segment)."""
    pairs: list[tuple[int, int]] = []
    for i, pair in enumerate(require(times, list, where)):
        require(pair, list, f"{where}[{i}]")
        if len(pair) != 2:
            raise ManifestError(f"{where}[{i}]: expected [start_segment, end_segment]")
        s, e = (segment_index(t, f"{where}[{i}]") for t in pair)
        if s > e:
            raise ManifestError(f"{where}[{i}]: segments {s}..{e} are not a moment")
        pairs.append((s, e))
    if not pairs:
        raise ManifestError(f"{where}: no annotator times")
    votes = Counter(pairs)
    return min(votes, key=lambda p: (-votes[p], p[0], p[1] - p[0]))


def last_segment(item: dict, where: str) -> int:
    """The video's last segment: ``num_segments - 1`` where the release gives it, else 5."""
    if item.get("num_segments") is None:
        return LAST_SEGMENT
    count = finite_number(item["num_segments"], where, "segment count")
    if not count.is_integer() or not 1 <= count <= LAST_SEGMENT + 1:
        raise ManifestError(f"{where}: not a segment count 1-{LAST_SEGMENT + 1}: {count:g}")
    return int(count) - 1


def moment_span(s: int, e: int, last: int) -> tuple[float, float | None]:
    """Seconds of segments ``s..e``; one ending in the ``last`` segment runs to the video's end
    (None), which is shorter than the 5-second grid says."""
    return s * SEGMENT_S, None if e >= last else (e + 1) * SEGMENT_S


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("didemo: --videos DIR is required (the folder of downloaded videos)")
    if opts.mode not in ("clip", "paragraph"):
        raise ManifestError(f"didemo: unknown mode {opts.mode!r} (use clip or paragraph)")
    dataset = opts.dataset or "didemo"
    # per video: (moment, description, annotation id, the video's last segment)
    by_video: dict[str, list[tuple[tuple[int, int], str, str, int]]] = {}
    for uri in sources:
        items = require(load_json(uri), list, uri)
        for i, item in enumerate(items):
            where = f"{uri}: [{i}]"
            require(item, dict, where)
            video = require(item.get("video"), str, f"{where}.video")
            text = clean_sentence(require(item.get("description"), str, f"{where}.description"))
            span = moment(item.get("times"), f"{where}.times")
            ann = str(item.get("annotation_id", i))
            last = last_segment(item, f"{where}.num_segments")
            by_video.setdefault(video, []).append((span, text, ann, last))
    for video, moments in by_video.items():
        stem = video.rsplit(".", 1)[0]
        # unchecked (--no-check-videos): DIR/STEM.EXT with --video-ext, as for every format;
        # the release's own extension (.mov, .avi) is rarely what was downloaded or converted
        path = videos.find(video, stem) if videos.check else videos.find(stem)
        if opts.mode == "paragraph":
            report.read += 1
            if path is None:
                report.drop("video not found", video)
                continue
            sentences = [m[1] for m in sorted(moments, key=lambda m: m[0])]
            yield report.keep(
                make_row(
                    path,
                    None,
                    None,
                    " ".join(sentences),
                    stem,
                    dataset,
                    source_id=video,
                    sentences=sentences,
                )
            )
            continue
        for (s, e), text, ann, last in moments:
            report.read += 1
            if path is None:
                report.drop("video not found", video)
                continue
            if s > last:  # the release's own num_segments says the video ends before it
                report.drop("moment after the video's last segment (num_segments)", video)
                continue
            start, end = moment_span(s, e, last)
            yield report.keep(
                make_row(
                    path,
                    start,
                    end,
                    text,
                    f"{stem}-{ann}",
                    dataset,
                    source_id=video,
                    sentences=[text],
                )
            )
