"""A processed task split for the trip through the caption workers, and joined for the writer.

Why: the caption step needs the clips' metadata and the captioner's input frames; the clip bytes
(the mp4, and the JPEG where frames made from it replace it) are for the writer only. Sent
whole, a task of 1,000 clips for OFA-large (1,000 frames of 480x480x3 plus 1,000 clips of 200 KB,
~920 MB) is copied out of the engine's buffers into Python objects, unpickled, pickled and copied
back, all in the process that should be feeding the GPU. Split, the caption worker unpickles a
few hundred KB of clip records, views the frames where they lie and passes the payload on as an
opaque value it never reads (``pipelines.ray`` keeps it an Arrow column end to end).

A parcel is a plain dict of columns (what Ray Data rows are):
``task`` (the pickled ``Task`` without clip bytes or frames), ``frames`` (the frames back to back,
uint8), ``frame_index`` (JSON: which clip each frame belongs to, one frame's shape; a string, so
every row has the same column types however many frames it has) and ``payload`` (the pickled
``([(mp4, jpg), ...] in clip order, carried samples)``: a ``--retry-failed`` task's samples
copied from its earlier tars ride there too, never unpickled by the caption worker).
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np

from pipelines.tasks import Task

FRAME_COLUMNS = ("frames", "frame_index")


def pack(task: Task) -> dict[str, Any]:
    """Split a task that went through the CPU stages. The JPEG stays with a clip that has no
    frame (a captioner without an ``ImagePrep`` decodes the JPEG itself)."""
    payload = []
    owners = [i for i, clip in enumerate(task.clips) if clip.caption_input is not None]
    for clip in task.clips:
        keep_jpg = clip.ok and clip.caption_input is None
        payload.append((clip.mp4, None if keep_jpg else clip.jpg))
        clip.mp4 = None
        if not keep_jpg:
            clip.jpg = None
    frames, shape = _move_frames(task, owners)
    carried, task.carried = task.carried, []
    return {
        "task": task.to_bytes(),
        "frames": frames,
        "frame_index": json.dumps({"clips": owners, "shape": shape}),
        "payload": pickle.dumps((payload, carried), protocol=pickle.HIGHEST_PROTOCOL),
    }


def _move_frames(task: Task, owners: list[int]) -> tuple[bytearray, list[int]]:
    """The frames of ``owners`` back to back in one buffer, each freed once copied: the worker
    holds one copy of a task's frames at a time (690 MB for 1,000 frames at 480 px), not the
    two or three ``np.stack(...).tobytes()`` would."""
    if not owners:
        return bytearray(), []
    shape = task.clips[owners[0]].caption_input.shape
    frames = bytearray(len(owners) * int(np.prod(shape)))
    view = np.frombuffer(frames, dtype=np.uint8).reshape(len(owners), *shape)
    for j, i in enumerate(owners):
        frame = np.asarray(task.clips[i].caption_input)
        if frame.shape != shape or frame.dtype != np.uint8:  # no silent broadcast or cast
            raise ValueError(
                f"clip {task.clips[i].key}: captioner input {frame.dtype}{frame.shape}, "
                f"expected uint8{shape} like the task's other frames"
            )
        view[j] = frame
        task.clips[i].caption_input = None
    return frames, list(shape)


def for_caption(task: Any, frames: Any, frame_index: str) -> Task:
    """The light task with each clip's frame put back, for the caption worker.

    ``task`` and ``frames`` may be any buffer (bytes, an Arrow buffer): the frames are viewed,
    read-only, not copied; the captioner stacks its batch anyway.
    """
    light = Task.from_bytes(task)
    index = json.loads(frame_index)
    if index["clips"]:
        view = np.frombuffer(frames, dtype=np.uint8).reshape(len(index["clips"]), *index["shape"])
        for j, i in enumerate(index["clips"]):
            light.clips[i].caption_input = view[j]
    return light


def join(task: Any, payload: Any) -> Task:
    """The task with its clip bytes back, for the writer. A clip that failed on the way (in
    captioning) stays without them, as ``Clip.fail`` leaves every failed clip."""
    whole = Task.from_bytes(task)
    clip_bytes, whole.carried = pickle.loads(payload)
    for clip, (mp4, jpg) in zip(whole.clips, clip_bytes, strict=True):
        if not clip.ok:
            continue
        clip.mp4 = mp4
        if jpg is not None:
            clip.jpg = jpg
    return whole
