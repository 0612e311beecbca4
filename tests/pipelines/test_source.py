"""Remote videos are copied to the worker within a size cap and a deadline, and a copy that breaks
either fails its row and leaves nothing on disk.

The stores are real fsspec filesystems: ``memory://`` and two subclasses of it registered for
these tests, one that states no size (as an HTTP server without Content-Length) and one whose
reads are slow (a stalled bucket). The S3 path itself runs against moto in test_scale_out.py.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from pipelines import source
from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES, StageError, apply

from .conftest import make_video


class _Renamed(MemoryFileSystem):
    """The memory store under another protocol name (it strips only ``memory://`` itself)."""

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace(f"{cls.protocol}://", "memory://", 1))


class _SizelessFile(MemoryFile):
    size = None


class SizelessFS(_Renamed):
    """A store that states no size, like an HTTP server that sends no Content-Length."""

    protocol = "sizeless"

    def info(self, path, **kwargs):
        return {**super().info(path, **kwargs), "size": None}

    def _open(self, path, mode="rb", **kwargs):
        return _SizelessFile(None, path, super()._open(path, mode, **kwargs).getvalue())


class SlowFS(_Renamed):
    """A store whose every read takes 0.1 s."""

    protocol = "slowmem"

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        read = f.read

        def slow_read(n=-1):
            time.sleep(0.1)
            return read(n)

        f.read = slow_read
        return f


for fs_class in (SizelessFS, SlowFS):
    fsspec.register_implementation(fs_class.protocol, fs_class, clobber=True)


def put(protocol: str, data: bytes, suffix: str = ".mp4") -> str:
    """Store ``data`` under a fresh name in the shared in-memory store; its URI."""
    path = f"/clipvip-test/{uuid.uuid4().hex}{suffix}"
    MemoryFileSystem.store[path] = MemoryFile(None, path, data)
    return f"{protocol}://{path.lstrip('/')}"


def cached_files() -> set[str]:
    return {p.name for p in Path(source._cache_dir()).iterdir()}


@pytest.fixture
def video_bytes(tmp_path) -> bytes:
    return make_video(tmp_path / "v.mp4", seconds=2.0).read_bytes()


def run_cpu_stages(video: str, **cfg) -> Clip:
    clip = Clip(key="k", row=0, video=video, text="t")
    config = PrepareConfig(out="unused", **cfg)
    for name, stage in CPU_STAGES:
        apply(name, stage, clip, config)
    return clip


def test_a_remote_video_gives_the_same_clip_and_frame_as_the_local_file(video_bytes, tmp_path):
    local = tmp_path / "same.mp4"
    local.write_bytes(video_bytes)
    remote = run_cpu_stages(put("memory", video_bytes))
    here = run_cpu_stages(str(local))
    assert remote.ok and here.ok
    assert (remote.mp4, remote.jpg) == (here.mp4, here.jpg)


def test_a_video_stated_over_the_cap_fails_before_a_byte_is_copied(video_bytes, monkeypatch):
    uri = put("memory", video_bytes)
    reads = []
    monkeypatch.setattr(MemoryFile, "read", lambda self, n=-1: reads.append(n) or b"")
    before = cached_files()
    with pytest.raises(StageError, match=r"remote video is .* MiB, over the cap .*--fetch-max-mb"):
        source.local_path(uri, max_bytes=len(video_bytes) - 1)
    assert reads == [] and cached_files() == before


def test_a_video_with_no_stated_size_is_stopped_when_it_grows_past_the_cap(
    video_bytes, monkeypatch
):
    monkeypatch.setattr(source, "FETCH_CHUNK", 4096)
    uri = put("sizeless", video_bytes)
    before = cached_files()
    with pytest.raises(StageError, match="grew past .* while copying .*stated no size"):
        source.local_path(uri, max_bytes=len(video_bytes) // 2)
    assert cached_files() == before  # the partial copy is gone
    assert source.local_path(uri, max_bytes=len(video_bytes)) in {
        str(Path(source._cache_dir()) / name) for name in cached_files()
    }  # at the cap exactly it is copied


def test_a_copy_slower_than_the_deadline_fails_and_leaves_nothing(video_bytes, monkeypatch):
    monkeypatch.setattr(source, "FETCH_CHUNK", max(1, len(video_bytes) // 20))
    uri = put("slowmem", video_bytes)
    before = cached_files()
    with pytest.raises(StageError, match=r"took longer than 0.3 s \(--fetch-timeout\)"):
        source.local_path(uri, timeout_s=0.3)
    assert cached_files() == before


def test_fetch_limits_come_from_the_run_and_fail_only_that_row(video_bytes):
    big = run_cpu_stages(put("memory", video_bytes + b"\0" * (1 << 20)), fetch_max_mb=1)
    assert big.error.stage == "probe" and "--fetch-max-mb" in big.error.reason
    missing = run_cpu_stages("memory://clipvip-test/no-such-video.mp4")
    assert missing.error.reason == "file not found: memory://clipvip-test/no-such-video.mp4"
    small = run_cpu_stages(put("memory", video_bytes), fetch_max_mb=1)
    assert small.ok


def test_an_empty_remote_object_is_an_empty_file():
    with pytest.raises(StageError, match=r"empty file \(0 bytes\)"):
        source.local_path(put("memory", b""))


def test_a_remote_folder_is_not_a_regular_file(video_bytes):
    uri = put("memory", video_bytes)
    folder = uri.rsplit("/", 1)[0]
    with pytest.raises(StageError, match=f"not a regular file: {folder}$"):
        source.local_path(folder)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("foo://x/v.mp4", "cannot read foo://x/v.mp4: Protocol not known: foo"),
        ("ftp://127.0.0.1:9/v.mp4", "cannot connect for ftp://127.0.0.1:9/v.mp4"),
    ],
)
def test_an_address_nothing_can_read_fails_its_row_with_a_reason(uri, reason):
    clip = run_cpu_stages(uri)
    assert clip.error.stage == "probe" and clip.error.reason.startswith(reason)


def test_a_link_loop_under_the_input_root_fails_its_row(tmp_path):
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    clip = run_cpu_stages(str(loop), extra={"input_root": str(tmp_path)})
    assert clip.error.stage == "probe"
    assert clip.error.reason.startswith("cannot resolve the path")


def test_a_new_cache_removes_the_copies_a_killed_worker_left_and_keeps_live_ones(tmp_path):
    """Ray and Beam end workers with a signal, so their ``atexit`` cleanup never runs."""
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f"clipvip-src-{ended.stdout.strip()}-abc123"
    live = tmp_path / f"clipvip-src-{os.getpid()}-def456"
    other = tmp_path / "clipvip-src-notapid"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "video.mp4").write_bytes(b"x" * 10)
    source._sweep_dead_caches(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_the_cache_folder_is_named_after_its_process():
    assert Path(source._cache_dir()).name.startswith(f"clipvip-src-{os.getpid()}-")


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving ``tmp_path``; its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_video_is_copied_and_a_missing_one_reads_as_not_found(http_root, video_bytes):
    folder, base = http_root
    (folder / "here.mp4").write_bytes(video_bytes)
    assert Path(source.local_path(f"{base}/here.mp4", timeout_s=30)).read_bytes() == video_bytes
    with pytest.raises(StageError, match=f"^file not found: {base}/gone.mp4$"):
        source.local_path(f"{base}/gone.mp4", timeout_s=30)


def test_a_host_that_refuses_the_connection_is_not_reported_as_a_missing_file():
    import socket

    with socket.socket() as s:  # a loopback port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StageError, match=rf"^cannot connect for http://127\.0\.0\.1:{port}/v\.mp4"):
        source.local_path(f"http://127.0.0.1:{port}/v.mp4", timeout_s=30)


@pytest.mark.parametrize(
    "address",
    [
        "http://h/videos/%2e%2e/admin.mp4",  # the HTTP client decodes it to /admin.mp4
        "http://h/videos/%2E%2E%2Fadmin.mp4",
        "http://h/videos/a/..%2f..%2fadmin.mp4",
        "http://h/videos/a\\..\\..\\admin.mp4",
        "s3://bucket/videos/a.mp4::file:///etc/passwd",  # an fsspec chain: another filesystem
    ],
)
def test_an_address_root_refuses_encoded_and_chained_escapes(address):
    root = "s3://bucket/videos" if address.startswith("s3") else "http://h/videos"
    with pytest.raises(StageError, match="outside the allowed input root"):
        source.check_allowed(address, root)
    source.check_allowed(f"{root}/ok%20name.mp4", root)  # other escapes are ordinary names


def test_a_file_colon_path_is_opened_where_it_was_checked(tmp_path, monkeypatch):
    """``file:/X`` as a manifest path is the relative path it reads as, checked and opened as
    that: FFmpeg was given it as written and opened /X, outside --input-root."""
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    outside.mkdir()
    make_video(outside / "secret.mp4", size="640x480", seconds=1)
    decoy = root / "file:" / str(outside / "secret.mp4").lstrip("/")
    decoy.parent.mkdir(parents=True)
    make_video(decoy, size="320x240", seconds=1)
    monkeypatch.chdir(root)
    clip = run_cpu_stages(f"file:{outside / 'secret.mp4'}", extra={"input_root": str(root)})
    assert clip.ok, clip.error
    assert (clip.info.width, clip.info.height) == (320, 240)  # the decoy inside the root


def test_input_root_as_a_file_uri_or_a_relative_folder_admits_what_lies_under_it(
    tmp_path, monkeypatch
):
    """``--input-root file:///dir`` refused every row (the root was read as a relative path
    named ``file:``), and a relative root meant a different folder in each worker's working
    folder: the CLI now hands workers an absolute local path."""
    from pipelines.cli import input_root

    inside = tmp_path / "videos" / "a.mp4"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    source.check_allowed(str(inside), f"file://{tmp_path / 'videos'}")
    with pytest.raises(StageError, match="outside the allowed input root"):
        source.check_allowed(str(tmp_path / "b.mp4"), f"file://{tmp_path / 'videos'}")

    monkeypatch.chdir(tmp_path)
    assert input_root("videos") == str(tmp_path / "videos")
    assert input_root(f"file://{tmp_path}/videos/") == str(tmp_path / "videos")
    assert input_root("s3://bucket/videos") == "s3://bucket/videos"
