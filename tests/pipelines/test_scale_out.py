"""Beam with worker processes, and object storage through a real S3 API (moto) on loopback."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare
from shards import Store, iter_samples


def _manifest(tmp_path, rows):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_beam_with_two_worker_processes_writes_what_the_plain_loop_writes(videos, tmp_path):
    rows = [
        {"key": f"k{i}", "video": str(videos[v]), "text": v}
        for i, v in enumerate(["h264", "h264_long", "mpeg4_avi", "vp9_webm", "corrupt"])
    ]
    m = _manifest(tmp_path, rows)
    runs = {}
    for name, engine in {
        "loop": EngineOptions(runner="local"),
        "beam2": EngineOptions(runner="beam", workers=2),
    }.items():
        cfg = PrepareConfig(out=str(tmp_path / name), shard_size=1, frame_short_side=64)
        summary = prepare(str(m), cfg, engine, progress=False)
        assert (summary["samples"], summary["failed"]) == (4, 1)
        runs[name] = {p.name: p.read_bytes() for p in (tmp_path / name / "shards").glob("*.tar")}
    assert runs["beam2"] == runs["loop"] and len(runs["loop"]) == 4


@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in the process, across servers: each test starts from none
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    fs.mkdir("bucket")
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_videos_from_a_bucket_shards_to_a_bucket_and_resume_there(s3, videos, tmp_path):
    s3.put_file(str(videos["h264"]), "bucket/videos/bars.mp4")
    s3.put_file(str(videos["vp9_webm"]), "bucket/videos/mandel.webm")
    rows = [
        {
            "key": "bars",
            "video": "s3://bucket/videos/bars.mp4",
            "start": 0.5,
            "end": 2.5,
            "text": "bars",
        },
        {"key": "gone", "video": "s3://bucket/videos/missing.mp4", "text": "not uploaded yet"},
        {"key": "mandel", "video": "s3://bucket/videos/mandel.webm", "text": "fractal"},
    ]
    s3.pipe_file("bucket/in/m.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    cfg = PrepareConfig(out="s3://bucket/run", shard_size=2, frame_short_side=64, captioner="none")
    first = prepare("s3://bucket/in/m.jsonl", cfg, EngineOptions(runner="local"), progress=False)
    assert (first["samples"], first["failed"]) == (2, 1) and first["complete"]
    listing = sorted(p.rsplit("/", 1)[-1] for p in s3.find("bucket/run"))
    assert {
        "index.json",
        "stats.json",
        "errors.jsonl",
        "clips-000000.tar",
        "000000.json",
        "000001.json",
    } <= set(listing)
    assert not any(name.endswith(".tmp") for name in listing), (
        "no scratch file ever lands in the bucket"
    )
    errors = s3.cat_file("bucket/run/errors.jsonl").decode()
    assert "file not found: s3://bucket/videos/missing.mp4" in errors
    assert {s["key"] for s in iter_samples("s3://bucket/run")} == {"bars", "mandel"}
    again = prepare("s3://bucket/in/m.jsonl", cfg, EngineOptions(runner="local"), progress=False)
    assert again["resumed_tasks"] == 2 and again["samples"] == 2

    # the video arrives: --retry-failed redoes that row only, bars is copied from the bucket's
    # tar (the retry keeps a server-side copy of the part it overwrites until it is done)
    bars = next(s for s in iter_samples("s3://bucket/run") if s["key"] == "bars")
    s3.put_file(str(videos["h264_long"]), "bucket/videos/missing.mp4")
    retry = EngineOptions(runner="local", retry_stages=frozenset({"probe"}))
    third = prepare("s3://bucket/in/m.jsonl", cfg, retry, progress=False)
    assert (third["samples"], third["failed"], third["reopened_tasks"]) == (3, 0, 1)
    got = {s["key"]: s for s in iter_samples("s3://bucket/run")}
    assert list(got) == ["bars", "gone", "mandel"] and got["bars"] == bars
    assert not s3.exists("bucket/run/retry")


def test_copying_a_video_from_a_bucket_asks_for_its_size_once(s3, videos, monkeypatch):
    """One HEAD per video, not two: at 100M clips the extra request is a bill and a round trip."""
    from s3fs import core

    from pipelines import source

    s3.put_file(str(videos["h264"]), "bucket/videos/once.mp4")
    calls: list[str] = []
    real = core.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):
        calls.append(method)
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(core.S3FileSystem, "_call_s3", counted)
    local = source.local_path("s3://bucket/videos/once.mp4", max_bytes=10**9)
    assert Path(local).read_bytes() == videos["h264"].read_bytes()
    assert calls.count("head_object") == 1 and set(calls) == {"head_object", "get_object"}
    with pytest.raises(source.StageError, match="not a regular file: s3://bucket/videos$"):
        source.local_path("s3://bucket/videos")


@pytest.mark.slow
def test_a_run_killed_while_writing_to_a_bucket_resumes_to_the_clean_run(
    s3, videos, tmp_path, fault_report
):
    """SIGKILL the whole run once its first tar is in the bucket; the rerun there ends with the
    samples of an uninterrupted run, each once, and no scratch object left behind."""
    names = ["h264", "h264_long", "mpeg4_avi", "vp9_webm", "corrupt", "h264", "h264_long"]
    rows = []
    for i, name in enumerate(names):
        uri = f"s3://bucket/videos/{i}{videos[name].suffix}"
        s3.put_file(str(videos[name]), uri)
        rows.append({"key": f"k{i}", "video": uri, "text": name})
    manifest = _manifest(tmp_path, rows)
    args = ["--shard-size", "1", "--frame-short-side", "64", "--runner", "local"]
    clean = _cli(str(manifest), "--out", str(tmp_path / "clean"), *args)
    assert clean.returncode == 0, clean.stderr[-2000:]

    out = "s3://bucket/killed"
    cmd = [sys.executable, "-m", "clipvip", "prepare", str(manifest), "--out", out, *args]
    run = subprocess.Popen(
        [*cmd, "--no-progress", "--captioner", "none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not s3.glob("bucket/killed/shards/*.tar") and time.monotonic() < deadline:
            assert run.poll() is None, "the run ended before its first tar appeared"
            time.sleep(0.05)
            s3.invalidate_cache()
        still_working = run.poll() is None
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait()
    assert still_working, "the kill came after the run had finished: it proves nothing"
    s3.invalidate_cache()
    written_before = len(s3.glob("bucket/killed/shards/*.tar"))
    assert 1 <= written_before < len(rows) - 1  # killed mid-run: rows were left to do

    again = _cli(str(manifest), "--out", out, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    s3.invalidate_cache()

    def fields(sample: dict) -> dict:
        return {k: v for k, v in sample.items() if k != "url"}  # where its tar is

    want = {s["key"]: fields(s) for s in iter_samples(str(tmp_path / "clean"))}
    got = [fields(s) for s in iter_samples(out)]
    assert len(got) == len({s["key"] for s in got}) == len(want) == len(rows) - 1
    assert {s["key"]: s for s in got} == want  # byte for byte per field
    errors = s3.cat_file("bucket/killed/errors.jsonl").decode().splitlines()
    assert [json.loads(e)["key"] for e in errors] == ["k4"]
    assert not [p for p in s3.find("bucket/killed") if ".tmp" in p.rsplit("/", 1)[-1]]
    fault_report.append(
        f"S3 run killed with {written_before} of {len(rows)} tars in the bucket: rerun equal to "
        f"the clean run, samples lost 0, duplicates 0"
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clipvip", "prepare", *args, "--no-progress", "--captioner", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_beam_runner_name_selects_the_beam_engine_on_that_runner():
    from pipelines.cli import split_runner

    assert split_runner("DataflowRunner") == ("beam", ["--runner=DataflowRunner"])
    assert split_runner("ray") == ("ray", [])


def test_prism_runner_offline_fails_with_how_to_fix_it(videos, tmp_path):
    """Prism fetches its Go binary from GitHub at start-up: offline that must read as advice."""
    m = _manifest(tmp_path, [{"key": "a", "video": str(videos["h264"]), "text": "bars"}])
    done = _cli(str(m), "--out", str(tmp_path / "out"), "--runner", "PrismRunner")
    if done.returncode == 0:  # a machine that can fetch (or has cached) the binary: it just works
        assert {s["key"] for s in iter_samples(str(tmp_path / "out"))} == {"a"}
        return
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--prism_location" in done.stderr and "Traceback" not in done.stderr


def test_a_ray_address_where_nothing_listens_fails_in_seconds(videos, tmp_path):
    """Ray alone retries for minutes; _cli's timeout (300 s) fails the test if that comes back."""
    m = _manifest(tmp_path, [{"key": "a", "video": str(videos["h264"]), "text": "bars"}])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    done = _cli(
        str(m),
        "--out",
        str(tmp_path / "out"),
        "--runner",
        "ray",
        "--ray-address",
        f"127.0.0.1:{port}",
    )
    assert done.returncode == 2 and "no Ray cluster answers" in done.stderr, done.stderr[-2000:]


def test_caption_accelerator_is_a_resource_hint_on_the_caption_step_only():
    from pipelines.beam_caption import caption_step

    spec = "type:nvidia-l4;count:1;install-nvidia-driver"
    hinted = caption_step(PrepareConfig(), accelerator=spec).get_resource_hints()
    assert hinted == {"beam:resources:accelerator:v1": spec.encode()}
    assert caption_step(PrepareConfig()).get_resource_hints() == {}


def test_a_store_sees_what_other_processes_wrote_after_it_listed(s3):
    """A driver lists stats/ at plan time; its workers (other processes) then write there. fsspec
    caches listings per process: the driver must still see them, or a finished run on a bucket
    reads as incomplete."""
    import s3fs

    store = Store("s3://bucket/run")
    store.put_bytes("stats/0.json", b"{}")
    assert store.list("stats") == ["0.json"]
    worker = s3fs.S3FileSystem(skip_instance_cache=True)  # another process's view
    worker.pipe_file("bucket/run/stats/1.json", b'{"rows": 1}')
    worker.pipe_file("bucket/run/stats/0.json", b'{"rows": 22}')  # rewritten, longer
    assert store.list("stats") == ["0.json", "1.json"]
    assert store.exists("stats/1.json")
    assert store.read_bytes("stats/0.json") == b'{"rows": 22}'
    assert store.read_many(["stats/0.json", "stats/1.json"])["stats/1.json"] == b'{"rows": 1}'


@pytest.mark.slow
def test_a_bucket_run_resumed_by_beam_worker_processes_ends_complete(s3, videos, tmp_path):
    """The driver lists stats/ when it plans and Beam's worker processes write the missing
    tasks' stats: the end-of-run merge must see them (it read fsspec's cached listing and
    called the finished run incomplete, indexing only the tasks found at plan time)."""
    s3.put_file(str(videos["h264"]), "bucket/videos/bars.mp4")
    rows = [
        {"key": f"k{i}", "video": "s3://bucket/videos/bars.mp4", "start": i, "end": i + 1.0}
        for i in range(4)
    ]
    s3.pipe_file(
        "bucket/in/m.jsonl",
        "".join(json.dumps({**r, "text": r["key"]}) + "\n" for r in rows).encode(),
    )
    cfg = PrepareConfig(out="s3://bucket/run", shard_size=1, frame_short_side=64, captioner="none")
    first = prepare("s3://bucket/in/m.jsonl", cfg, EngineOptions(runner="local"), progress=False)
    assert first["complete"] and first["samples"] == 4
    for task in (1, 3):
        s3.rm(f"bucket/run/stats/{task:06d}.json")
    engine = EngineOptions(runner="beam", workers=2)
    again = prepare("s3://bucket/in/m.jsonl", cfg, engine, progress=False)
    assert (again["complete"], again["tasks_done"], again["samples"]) == (True, 4, 4)
    assert again["resumed_tasks"] == 2
    assert sorted(s["key"] for s in iter_samples("s3://bucket/run")) == ["k0", "k1", "k2", "k3"]
