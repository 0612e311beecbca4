"""ActivityNet Captions: ``{video_id: {duration, timestamps: [[s, e]], sentences: [...]}}``.

``clip`` mode: one row per captioned segment, its span clamped to ``[0, duration]``; segments
released reversed or empty, or empty after clamping, are dropped and counted, each by its own
reason. ``paragraph`` mode: one row per video,
the whole video, its sentences in time order joined into a paragraph (CLIP-ViP's
paragraph-to-video retrieval). Videos are looked up as ``v_ID`` and as ``ID`` (downloads differ).
"""

from __future__ import annotations

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
    span_problem,
)
from pipelines.manifest import ManifestError


def _segments(uri: str, vid: str, entry: object) -> tuple[float, list[tuple[float, float, str]]]:
    where = f"{uri}: {vid}"
    require(entry, dict, where)
    duration = finite_number(entry.get("duration"), f"{where}.duration", "time")
    stamps = require(entry.get("timestamps"), list, f"{where}.timestamps")
    sentences = require(entry.get("sentences"), list, f"{where}.sentences")
    if len(stamps) != len(sentences):
        raise ManifestError(f"{where}: {len(stamps)} timestamps but {len(sentences)} sentences")
    out = []
    for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
        require(stamp, list, f"{where}.timestamps[{i}]")
        if len(stamp) != 2:
            raise ManifestError(f"{where}.timestamps[{i}]: expected [start, end]")
        s, e = (finite_number(t, f"{where}.timestamps[{i}]", "time") for t in stamp)
        text = require(sentence, str, f"{where}.sentences[{i}]")
        out.append((s, e, clean_sentence(text)))
    return duration, out


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("activitynet: --videos DIR is required (the folder of v_ID.mp4 files)")
    if opts.mode not in ("clip", "paragraph"):
        raise ManifestError(f"activitynet: unknown mode {opts.mode!r} (use clip or paragraph)")
    dataset = opts.dataset or "activitynet"
    for uri in sources:
        data = require(load_json(uri), dict, uri)
        for vid, entry in data.items():
            duration, segments = _segments(uri, vid, entry)
            bare = vid[2:] if vid.startswith("v_") else vid
            path = videos.find(vid, bare)
            sentences = [t for _, _, t in sorted(segments, key=lambda x: (x[0], x[1]))]
            if opts.mode == "paragraph":
                report.read += 1
                if path is None:
                    report.drop("video not found", vid)
                    continue
                yield report.keep(
                    make_row(
                        path,
                        None,
                        None,
                        " ".join(sentences),
                        vid,
                        dataset,
                        source_id=vid,
                        duration=duration,
                        sentences=sentences,
                    )
                )
                continue
            for i, (s, e, text) in enumerate(segments):
                report.read += 1
                start, end = max(0.0, s), min(e, duration) if duration > 0 else e
                if path is None:
                    report.drop("video not found", vid)
                elif problem := span_problem(s, e):  # as released, before clamping
                    report.drop(problem)
                elif end <= start:
                    report.drop("empty span after clamping to the video's duration")
                else:
                    yield report.keep(
                        make_row(
                            path,
                            start,
                            end,
                            text,
                            f"{vid}-{i:03d}",
                            dataset,
                            source_id=vid,
                            duration=duration,
                            sentences=[text],
                        )
                    )
