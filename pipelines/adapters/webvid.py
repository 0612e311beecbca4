"""WebVid: the release CSV ``videoid, contentUrl, duration, page_dir, name``.

Each row is one short stock clip whose ``name`` is its caption. Videos are looked up in
``--videos`` as ``page_dir/videoid.mp4`` or ``videoid.mp4`` (the layouts video2dataset and the
official script produce); without ``--videos`` the row points at ``contentUrl`` itself.
``duration`` (ISO 8601 ``PT00H00M11S`` or seconds) is kept as a metadata column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    clean_sentence,
    iter_csv,
    make_row,
)

COLUMNS = ("videoid", "name")
_ISO = re.compile(r"^P(?:T)?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def parse_duration(value: str) -> float | None:
    """Seconds from ``PT00H00M11S`` or a plain number; None when absent or unreadable.

    ``duration`` is only metadata, so ``nan``/``inf`` (which ``float`` reads) are unreadable
    here, not a reason to stop: a NaN duration would read back as a number in every later step.
    """
    value = value.strip()
    match = _ISO.match(value)
    if match and any(match.groups()):
        h, m, s = (float(g or 0) for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    else:
        try:
            seconds = float(value)
        except ValueError:
            return None
    return seconds if math.isfinite(seconds) else None


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    dataset = opts.dataset or "webvid"
    for uri in sources:
        for _, fields in iter_csv(uri, COLUMNS):  # streamed: WebVid-10M is 10M lines
            report.read += 1
            vid = fields["videoid"].strip()
            if not vid:
                report.drop("no videoid")
                continue
            page = (fields.get("page_dir") or "").strip()
            url = (fields.get("contentUrl") or "").strip()
            if videos is not None:
                path = videos.find(f"{page}/{vid}" if page else vid, vid)
            else:
                path = url or None
            if path is None:
                report.drop("video not found" if videos is not None else "no contentUrl", vid)
                continue
            yield report.keep(
                make_row(
                    path,
                    None,
                    None,
                    clean_sentence(fields["name"]),
                    vid,
                    dataset,
                    source_id=vid,
                    url=url or None,
                    duration=parse_duration(fields.get("duration") or ""),
                )
            )
