"""DiDeMo: the release JSON, a list of ``{video, description, times: [[s, e], ...]}``.

``times`` holds each annotator's moment as 5-second segment indices (0-5, inclusive), so a
moment spans ``[5 * s, 5 * (e + 1))`` seconds. ``clip`` mode: one row per description, the
moment most annotators agreed on (ties: the earliest, then the shortest). ``paragraph`` mode:
one row per video with every description joined in moment order, the whole video as the span:
how CLIP-ViP evaluates DiDeMo (paragraph-to-video retrieval). DiDeMo videos are at most 30 s;
the last segment may end after the video, which the cut stage clamps.
"""

from __future__ import annotations

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


def moment(times: list[list[int]], where: str) -> tuple[int, int]:
    """The annotators' consensus moment as (first segment, last segment)."""
    pairs: list[tuple[int, int]] = []
    for i, pair in enumerate(require(times, list, where)):
        require(pair, list, f"{where}[{i}]")
        if len(pair) != 2:
            raise ManifestError(f"{where}[{i}]: expected [start_segment, end_segment]")
        s, e = (int(finite_number(t, f"{where}[{i}]", "segment index")) for t in pair)
        if not 0 <= s <= e:
            raise ManifestError(f"{where}[{i}]: segments {s}..{e} are not a moment")
        pairs.append((s, e))
    if not pairs:
        raise ManifestError(f"{where}: no annotator times")
    votes = Counter(pairs)
    return min(votes, key=lambda p: (-votes[p], p[0], p[1] - p[0]))


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("didemo: --videos DIR is required (the folder of downloaded videos)")
    if opts.mode not in ("clip", "paragraph"):
        raise ManifestError(f"didemo: unknown mode {opts.mode!r} (use clip or paragraph)")
    dataset = opts.dataset or "didemo"
    by_video: dict[str, list[tuple[tuple[int, int], str, str]]] = {}
    for uri in sources:
        items = require(load_json(uri), list, uri)
        for i, item in enumerate(items):
            where = f"{uri}: [{i}]"
            require(item, dict, where)
            video = require(item.get("video"), str, f"{where}.video")
            text = clean_sentence(require(item.get("description"), str, f"{where}.description"))
            span = moment(item.get("times"), f"{where}.times")
            ann = str(item.get("annotation_id", i))
            by_video.setdefault(video, []).append((span, text, ann))
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
            sentences = [t for _, t, _ in sorted(moments, key=lambda m: m[0])]
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
        for (s, e), text, ann in moments:
            report.read += 1
            if path is None:
                report.drop("video not found", video)
                continue
            yield report.keep(
                make_row(
                    path,
                    s * SEGMENT_S,
                    (e + 1) * SEGMENT_S,
                    text,
                    f"{stem}-{ann}",
                    dataset,
                    source_id=video,
                    sentences=[text],
                )
            )
