"""The one record that flows between stages: a ``Clip``.

Every stage takes a ``Clip`` and returns it, filled in further or marked failed. A failed clip
keeps travelling (so it is counted and written to ``errors.jsonl``) but later stages skip it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class Failure:
    """Why a clip did not become a sample: the stage that gave up and a reason a user can read."""

    stage: str
    reason: str


@dataclass(slots=True, frozen=True)
class VideoInfo:
    """What ffprobe says about the source video (``duration`` may be counted, see ``probe``)."""

    duration: float
    fps: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    format_name: str
    num_frames: int | None = None
    duration_source: str = "container"  # "container", "stream" or "counted"
    rotation: int = 0  # degrees a player turns the picture (display matrix), counterclockwise
    stream_index: int = 0  # the file's stream that is the video (not cover art, not a still)
    sar: float = 1.0  # sample aspect ratio: a stored pixel's width over its height (DVD: 64/51)


@dataclass(slots=True)
class Clip:
    """One manifest row on its way to becoming one WebDataset sample.

    ``key`` is already safe as a tar member stem (no dots, no slashes); the row's own id, if it
    had one, stays in ``source_key`` and ends up in the sample's JSON.
    """

    key: str
    row: int
    video: str
    start: float | None = None
    end: float | None = None
    text: str | None = None
    dataset: str | None = None
    source_key: str | None = None
    info: VideoInfo | None = None
    mp4: bytes | None = None
    clip_info: dict[str, Any] = field(default_factory=dict)
    jpg: bytes | None = None
    frame_index: int | None = None
    frame_time: float | None = None
    caption_input: Any = None  # the captioner's input made on a CPU worker (uint8 array)
    caption: str | None = None
    caption_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the manifest's other columns
    timings: dict[str, float] = field(default_factory=dict)
    error: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def source_span(self) -> tuple[str, float | None, float | None]:
        """Which clip of which video the row cuts. Rows with the same one (MSR-VTT's 20
        sentences written one row each) get the same clip, frame and caption bytes."""
        return (self.video, self.start, self.end)

    def share(self, lead: Clip) -> Clip:
        """Take the outputs of ``lead``, a row with the same ``source_span`` that went through
        the stages (or its failure, with the same stage and reason). Not the captioner's
        input: the caption step captions the lead alone and gives the twins its caption, so
        no copy of the frame travels to the caption workers for them."""
        if lead.error is not None:
            return self.fail(lead.error.stage, lead.error.reason)
        self.info, self.mp4, self.clip_info = lead.info, lead.mp4, dict(lead.clip_info)
        self.jpg, self.frame_index, self.frame_time = lead.jpg, lead.frame_index, lead.frame_time
        return self

    def fail(self, stage: str, reason: str) -> Clip:
        """Mark the clip failed and drop the heavy payloads it will never need."""
        self.error = Failure(stage, reason)
        self.mp4 = None
        self.jpg = None
        self.caption_input = None
        return self

    def metadata(self) -> dict[str, Any]:
        """The sample's ``.json``: where it came from and what it is (no payload bytes)."""
        info = asdict(self.info) if self.info else None
        return {
            "key": self.key,
            "source_key": self.source_key,
            "row": self.row,
            "dataset": self.dataset,
            "video": self.video,
            "span": [self.start, self.end],
            "source": info,
            "clip": self.clip_info,
            "middle_frame": {"index": self.frame_index, "time": self.frame_time},
            "caption_model": self.caption_model,
            "extra": self.extra,
        }

    def failure_row(self) -> dict[str, Any]:
        """A line of ``errors.jsonl``."""
        assert self.error is not None
        return {
            "key": self.key,
            "row": self.row,
            # A path that is not valid UTF-8 is shown with U+FFFD, so errors.jsonl stays UTF-8.
            "video": self.video.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            "stage": self.error.stage,
            "reason": self.error.reason,
        }


def split_twins(clips: Iterable[Clip]) -> tuple[list[Clip], list[tuple[Clip, Clip]]]:
    """The rows still ok, as leads (the first row of each ``source_span``) and twins (a later
    row of the same span, with its lead): a stage runs for the leads and the twins take its
    outputs (``Clip.share``)."""
    leads: dict[tuple[str, float | None, float | None], Clip] = {}
    twins: list[tuple[Clip, Clip]] = []
    for clip in clips:
        if not clip.ok:
            continue
        lead = leads.setdefault(clip.source_span, clip)
        if lead is not clip:
            twins.append((clip, lead))
    return list(leads.values()), twins
