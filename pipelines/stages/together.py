"""The clip stage for a video's rows together: one ffmpeg run decodes the video once and writes
every span's clip, byte for byte the clip ``cut_clip`` writes for each row alone.

Why: HD-VILA-100M cuts ~30 clips from each video, and a task's rows come in manifest order, so
a task meets a video's spans one after another. Cut one by one, each clip pays an ffmpeg start,
an index read, a seek and the decode from the keyframe before its start (half a GOP on
average, at the source's full frame rate) before it decodes its own frames; cut together, the
video is decoded once from the first start on (``docs/prepare.md`` has the measurement).

Which rows: spans re-encoded at a new frame rate (``--fps``, as CLIP-ViP's pretraining clips:
without the ``fps`` filter the shifted branch leaves the encoder another frame rate to go by,
and the bytes differ, measured), not whole videos, of one file, in a container whose seek
lands on a keyframe (``cut.KEYFRAME_SEEKING``), in start order, while the next span
starts at most ``GAP_S`` past the furthest end so far (a longer gap is cheaper to seek over
than to decode), at most ``MAX_GROUP`` to a run (each output holds an encoder in memory).
Every other row, and every row of a run that fails, is left to ``cut_clip``: the same bytes,
and the error of the one bad row instead of the group's.

How the bytes stay the same: ``cut_clip`` seeks with ``-ss S``; ffmpeg then shifts the stream's
timestamps by ``-(S + file start)`` (microseconds rescaled to the stream's time base, rounded to
nearest) and drops frames before 0, runs the ``-vf`` chain, then stops at ``-t``. Here the
input seeks to the first span's start S0 and each output's branch shifts on by the difference
of the two rounded offsets (``setpts``, whole ticks), drops frames before 0, runs the same chain
and gets the same ``-t``, encoder and container options. Decoding from an earlier keyframe
gives the same frames (tests compare the bytes of every grouped clip with its own cut).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import av

from pipelines.config import PrepareConfig
from pipelines.ff import INPUT_PROTOCOLS, PYAV_OPTIONS, Limits, ToolError, input_url, run_tool
from pipelines.record import Clip
from pipelines.stages.base import StageError
from pipelines.stages.cut import CutPlan, container_options, encoder_options, finish, plan_cut

GAP_S = 10.0
MAX_GROUP = 8

Group = list[tuple[Clip, CutPlan]]


def groups(clips: Sequence[Clip], cfg: PrepareConfig) -> list[Group]:
    """The runs of two or more rows to cut together (see the module's docstring)."""
    if cfg.fps is None:
        return []  # nothing is re-encoded at a new frame rate
    by_stream: dict[tuple[str, int], Group] = {}
    for clip in clips:
        if not clip.ok or clip.mp4 is not None:
            continue
        try:
            plan = plan_cut(clip, cfg)
        except Exception:  # noqa: BLE001 - cut_clip meets it again and records it for the row
            continue
        if plan.copy or plan.whole or not plan.keyframe_seeking or not plan.resample:
            continue
        by_stream.setdefault((plan.path, plan.stream_index), []).append((clip, plan))
    found: list[Group] = []
    for items in by_stream.values():
        items.sort(key=lambda item: (item[1].start, item[0].row))
        run: Group = []
        reach = 0.0
        for clip, plan in items:
            if run and (plan.start - reach > GAP_S or len(run) == MAX_GROUP):
                found.append(run)
                run = []
            reach = max(reach, plan.end) if run else plan.end
            run.append((clip, plan))
        found.append(run)
    return [run for run in found if len(run) > 1]


def _micros(seconds: float) -> int:
    """``-ss`` as ffmpeg parses the text ``cut_clip`` gives it (6 decimals) into microseconds."""
    return int(Decimal(f"{seconds:.6f}") * 1_000_000)


def _ticks(micros: int, time_base: Fraction) -> int:
    """``av_rescale_q`` from microseconds to ``time_base`` ticks: to nearest, ties away from 0."""
    num, den = abs(micros) * time_base.denominator, 1_000_000 * time_base.numerator
    return (num + den // 2) // den * (-1 if micros < 0 else 1)


def _command(group: Group, cfg: PrepareConfig, folder: Path) -> list[str]:
    first = group[0][1]
    with av.open(input_url(first.path), container_options=PYAV_OPTIONS) as container:
        file_start = container.start_time or 0  # microseconds
        time_base = container.streams[first.stream_index].time_base
    # cut_clip gives -ss only for a start after 0; without it ffmpeg still shifts by the file's
    # start, and drops nothing before 0.
    seek = first.start > 0
    origin = _ticks(_micros(first.start) + file_start, time_base)
    labels = "".join(f"[in{k}]" for k in range(len(group)))
    graph = [f"[0:{first.stream_index}]split={len(group)}{labels}"]
    outputs: list[str] = []
    for k, (_, plan) in enumerate(group):
        shift = _ticks(_micros(plan.start) + file_start, time_base) - origin
        trim = ["trim=start=0"] if plan.start > 0 else []
        chain = ",".join([f"setpts=PTS-{shift}", *trim, plan.filters])
        graph.append(f"[in{k}]{chain}[out{k}]")
        options = container_options() | encoder_options(cfg) | {"t": f"{plan.end - plan.start:.6f}"}
        outputs += ["-map", f"[out{k}]"]
        for key, value in options.items():
            outputs += [f"-{key}"] if value is None else [f"-{key}", value]
        # cut_clip writes to a pipe; a file the muxer cannot seek in gets the same bytes.
        outputs += ["-seekable", "0", str(folder / f"{k}.mp4")]
    head = ["ffmpeg", "-nostdin", "-v", "error", "-threads", str(cfg.ffmpeg_threads)]
    if seek:
        head += ["-ss", f"{first.start:.6f}"]
    head += ["-protocol_whitelist", INPUT_PROTOCOLS]
    return [*head, "-i", input_url(first.path), "-filter_complex", ";".join(graph), *outputs]


def cut_together(clips: Sequence[Clip], cfg: PrepareConfig) -> int:
    """Cut the clips of every group in ``clips`` (see ``groups``); return how many were cut.
    A clip cut here has its ``mp4`` set; the others are untouched, for ``cut_clip``. Every row
    of a group, cut or not, gets its share of the run's time under ``clip``: a run that failed
    cost those seconds too, and per-video timings sum the rows' (``cut_clip`` adds its own)."""
    done = 0
    for group in groups(clips, cfg):
        t0 = time.perf_counter()
        limits = Limits(cfg.tool_timeout_s * len(group), cfg.tool_memory_mb)
        with tempfile.TemporaryDirectory(prefix="clipvip_cut_") as folder:
            try:
                run_tool(_command(group, cfg, Path(folder)), limits)
            except (ToolError, av.FFmpegError, OSError):
                _credit(group, t0)
                continue  # every row of the group goes to cut_clip, which names the bad one
            _credit(group, t0)
            for k, (clip, plan) in enumerate(group):
                out = Path(folder) / f"{k}.mp4"
                try:
                    finish(clip, plan, out.read_bytes() if out.exists() else b"")
                except StageError:
                    continue  # an empty output: cut_clip runs the row alone and says why
                done += 1
    return done


def _credit(group: Group, t0: float) -> None:
    """Split the seconds since ``t0`` evenly over the group's rows under ``clip``, so that no
    second the shared run cost (succeeded or not) is left out of the rows' sums."""
    share = (time.perf_counter() - t0) / len(group)
    for clip, _ in group:
        clip.timings["clip"] = clip.timings.get("clip", 0.0) + share
