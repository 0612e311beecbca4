"""Several threads of one worker process using isolation at once each get their own clip back.

Engine workers (Dataflow, Flink, Beam's ``multi_threading`` mode) run several tasks at once in
threads; the isolation child answers one request at a time over one pipe.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines import isolation
from pipelines.config import PrepareConfig
from pipelines.isolation import IsolatedStages
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES

from .test_isolation import make_video

THREADS = 6


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("threads")
    # distinct sizes and lengths: a clip that came back for another thread's row shows it
    return [
        make_video(d / f"v{i}.mp4", f"{64 + 16 * i}x48", seconds=1.0 + 0.4 * i)
        for i in range(THREADS)
    ]


def _run_stages(child: IsolatedStages, video: Path, i: int, cfg: PrepareConfig) -> Clip:
    clip = Clip(key=f"k{i}", row=i, video=str(video), text=f"clip {i}")
    for name, _ in CPU_STAGES:
        clip = child.apply(name, clip, cfg)
    return clip


def _check(results: list[Clip]) -> None:
    for i, clip in enumerate(results):
        assert clip.ok, clip.error
        assert clip.key == f"k{i}"
        assert clip.info.width == 64 + 16 * i
        assert abs(clip.info.duration - (1.0 + 0.4 * i)) < 0.1


def test_threads_sharing_one_instance_each_get_their_own_clip(videos, tmp_path):
    cfg = PrepareConfig(out=str(tmp_path))
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> Clip:
        barrier.wait()
        return _run_stages(child, videos[i], i, cfg)

    with IsolatedStages(timeout_s=60) as child:
        for _ in range(2):  # twice: a mixed-up pipe shows on some rounds only
            with ThreadPoolExecutor(THREADS) as pool:
                _check(list(pool.map(work, range(THREADS))))
        assert child.children_started == 1  # no child died of a garbled request


def test_shared_gives_each_thread_its_own_child(videos, tmp_path):
    cfg = PrepareConfig(out=str(tmp_path))
    barrier = threading.Barrier(THREADS)
    seen: dict[int, IsolatedStages] = {}

    def work(i: int) -> Clip:
        barrier.wait()
        child = isolation.shared()
        assert isolation.shared() is child  # reused within the thread
        seen[i] = child
        return _run_stages(child, videos[i], i, cfg)

    with ThreadPoolExecutor(THREADS) as pool:
        _check(list(pool.map(work, range(THREADS))))
    assert len({id(c) for c in seen.values()}) == THREADS
    for child in seen.values():
        child.close()
