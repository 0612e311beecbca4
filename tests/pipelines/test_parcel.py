"""A processed task split for the caption workers and joined for the writer loses nothing, and
the Ray caption actor reads the frames and passes the clip bytes on without copying them."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from captioner import load_captioner
from captioner.registry import input_prep
from pipelines import parcel
from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages.caption import caption_clips, caption_input
from pipelines.tasks import Task, to_sample

SPEC = "ofa:random-tiny"


def _task(frames: bool) -> Task:
    """Four processed clips: three good (mp4, JPEG, and the captioner's frame if ``frames``),
    one failed before captioning."""
    rng = np.random.default_rng(3)
    cfg = PrepareConfig(out="unused", captioner=SPEC)
    clips = []
    for i in range(4):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG")
        clip = Clip(key=f"c{i}", row=i, video=f"v{i}.mp4", mp4=rng.bytes(5_000), jpg=buf.getvalue())
        if frames:
            caption_input(clip, cfg)
        clips.append(clip)
    clips[2].fail("middle_frame", "decoder gave up")
    return Task(7, clips)


def _through_parcel(task: Task, captioner) -> Task:
    row = parcel.pack(task)
    light = parcel.for_caption(row["task"], row["frames"], row["frame_index"])
    caption_clips(light.clips, captioner, batch_size=2)
    return parcel.join(pickle.dumps(light), row["payload"])


def test_carried_samples_ride_in_the_payload_not_in_the_caption_workers_task():
    """A --retry-failed task's samples copied from its earlier tars reach the writer, and the
    caption worker never unpickles their bytes."""
    from shards.format import Sample

    task = _task(frames=True)
    carried = [(9, Sample("old", {"mp4": b"m" * 50_000, "txt": b"t"}))]
    task.carried = list(carried)
    row = parcel.pack(task)
    assert len(row["task"]) < 50_000 and Task.from_bytes(row["task"]).carried == []
    light = parcel.for_caption(row["task"], row["frames"], row["frame_index"])
    assert parcel.join(pickle.dumps(light), row["payload"]).carried == carried


@pytest.mark.parametrize("frames", [True, False], ids=["cpu-made-frames", "jpeg-only"])
def test_pack_then_caption_then_join_writes_the_samples_of_the_whole_task(frames):
    captioner = load_captioner(SPEC)
    direct = _task(frames)
    caption_clips(direct.clips, captioner, batch_size=2)
    joined = _through_parcel(_task(frames), captioner)
    assert [to_sample(c) for c in joined.clips if c.ok] == [
        to_sample(c) for c in direct.clips if c.ok
    ]
    assert [c.failure_row() for c in joined.clips if not c.ok] == [
        c.failure_row() for c in direct.clips if not c.ok
    ]
    assert all(c.caption for c in joined.clips if c.ok)


def test_the_caption_worker_gets_no_clip_bytes_and_the_jpeg_only_when_it_has_no_frame():
    for frames in (True, False):
        row = parcel.pack(_task(frames))
        light = parcel.for_caption(row["task"], row["frames"], row["frame_index"])
        assert all(c.mp4 is None for c in light.clips)
        good = [c for c in light.clips if c.ok]
        if frames:
            size = input_prep(SPEC).size
            assert all(c.jpg is None and c.caption_input.shape == (size, size, 3) for c in good)
            assert len(row["task"]) < 2_000  # clip records only
        else:
            assert all(c.jpg and c.caption_input is None for c in good)
            assert row["frames"] == b""


def test_pack_refuses_a_frame_of_another_shape_instead_of_broadcasting_it():
    task = _task(frames=True)
    task.clips[1].caption_input = task.clips[1].caption_input[:1]  # (1, W, 3) would broadcast
    with pytest.raises(ValueError, match="clip c1: captioner input"):
        parcel.pack(task)


def _column(values: list[bytes], kind: pa.DataType, chunks: int = 1) -> pa.Table:
    step = max(1, len(values) // chunks)
    arrays = [pa.array(values[i : i + step], kind) for i in range(0, len(values), step)]
    return pa.table({"v": pa.chunked_array(arrays, kind)})


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()], ids=str)
def test_binary_value_reads_every_row_of_any_chunking_as_a_view(kind):
    from pipelines.ray import binary_value

    values = [b"alpha", b"", b"gamma" * 1000, b"d"]
    for chunks in (1, 2):
        table = _column(values, kind, chunks)
        assert [bytes(binary_value(table, "v", i)) for i in range(4)] == values
    sliced = _column(values, kind).slice(2, 2)  # a batch cut from a block: offsets shifted
    assert [bytes(binary_value(sliced, "v", i)) for i in range(2)] == values[2:]
    table = _column(values, kind)
    data = table.column("v").chunk(0).buffers()[2]
    view = binary_value(table, "v", 2)
    assert data.address <= view.address < data.address + data.size  # no copy
    with pytest.raises(IndexError):
        binary_value(table, "v", 4)


def test_ray_caption_actor_captions_and_passes_the_payload_column_through_untouched():
    from pipelines.ray import CaptionActor

    actor = CaptionActor.__new__(CaptionActor)  # its __init__ asks Ray for the node id
    actor.cfg = PrepareConfig(out="unused", captioner=SPEC)
    actor.captioner = load_captioner(SPEC)
    actor.node = "node-a"
    row = {**parcel.pack(_task(frames=True)), "cpu_node": "node-b"}
    table = pa.Table.from_pylist([row])
    out = actor(table)
    assert set(out.column_names) == {"payload", "cpu_node", "task", "caption_node"}
    before = table.column("payload").chunk(0).buffers()[2]
    after = out.column("payload").chunk(0).buffers()[2]
    assert after.address == before.address  # the same Arrow memory: never copied into Python
    whole = parcel.join(out.column("task")[0].as_py(), out.column("payload")[0].as_py())
    assert [c.ok for c in whole.clips] == [True, True, False, True]
    assert all(c.caption and c.mp4 and c.jpg for c in whole.clips if c.ok)
    assert out.column("caption_node").to_pylist() == ["node-a"]


@pytest.mark.slow
def test_handoff_benchmark_runs_both_paths_through_ray_and_prints_the_ratio():
    """In its own process: a Ray started here would leave its settings in the test process."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.handoff", "--clips", "8", "--frame", "32"]
        + ["--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "whole task" in proc.stdout and "parcel vs whole task:" in proc.stdout
