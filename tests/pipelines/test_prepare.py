"""End to end: manifest -> shards on the real engines, with hostile rows, resume and SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import webdataset as wds

from benchmarks.commands import prepare_command
from clipvip.cli import main
from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare
from pipelines.tasks import RunMismatch
from shards import iter_samples
from shards.index import load_index
from shards.store import Store


@pytest.fixture(scope="module")
def manifest(videos, tmp_path_factory) -> Path:
    """Good rows of several codecs and spans, and every kind of bad row."""
    d = tmp_path_factory.mktemp("manifest")
    good = [
        {"key": "bars_whole", "video": str(videos["h264"]), "text": "colour bars with a tone"},
        {
            "key": "test_span",
            "video": str(videos["h264_long"]),
            "start": 1.0,
            "end": 3.5,
            "text": "um so here",
        },
        {  # the same clip again (a second sentence): shares test_span's cut, frame and caption
            "key": "test_span_twin",
            "video": str(videos["h264_long"]),
            "start": 1.0,
            "end": 3.5,
            "text": "the same span told again",
        },
        {  # a hostile id, far longer than a tar member name may be
            "key": "orig.id/with:odd chars" + "-long" * 40,
            "video": str(videos["h264_long"]),
            "start": 4.0,
            "text": "tail",
        },
        {"video": str(videos["mpeg4_avi"]), "text": "rgb in an avi", "dataset": "demo"},
        {"video": str(videos["vp9_webm"]), "start": 0.5, "end": 2.5, "text": "fractal zoom"},
        {"key": "nodur", "video": str(videos["no_duration"]), "text": "live stream layout"},
    ]
    bad = [
        {"key": "../../escape", "video": str(videos["corrupt"]), "text": "corrupt"},
        {"key": "empty_file", "video": str(videos["empty"]), "text": "zero bytes"},
        {"key": "audio", "video": str(videos["audio_only"]), "text": "only sound"},
        {"key": "missing", "video": str(d / "nope.mp4"), "text": "missing"},
        {
            "key": "late",
            "video": str(videos["h264"]),
            "start": 50,
            "end": 60,
            "text": "past the end",
        },
        {"key": "notext", "video": str(videos["h264"]), "text": ""},
        {"key": "bars_whole", "video": str(videos["h264"]), "text": "duplicate key"},
        {"key": "image", "video": str(videos["jpeg_as_mp4"]), "text": "a jpeg named mp4"},
    ]
    lines = [json.dumps(r).encode() for r in good + bad]
    lines.insert(
        3, b'{"key": "latin", "video": "%s", "text": "caf\xe9"}' % str(videos["h264"]).encode()
    )
    lines.insert(5, b"{this line is broken")
    path = d / "manifest.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


ROWS, GOOD = 17, 7


def _run(manifest, out, runner="local", **cfg):
    config = PrepareConfig(
        out=str(out), name="t", shard_size=cfg.pop("shard_size", 4), frame_short_side=96, **cfg
    )
    return prepare(
        str(manifest),
        config,
        EngineOptions(runner=runner, workers=cfg.pop("workers", None)),
        progress=False,
    )


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def _fields(out: Path) -> dict[str, tuple]:
    return {
        s["key"]: (
            s["mp4"],
            s["jpg"],
            s["txt"],
            s.get("caption.txt"),
            json.dumps(s["json"], sort_keys=True),
        )
        for s in iter_samples(str(out))
    }


@pytest.fixture(scope="module")
def clean_run(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "run"
    summary = _run(manifest, out)
    return out, summary


def test_every_row_is_a_sample_or_a_recorded_failure(clean_run):
    out, summary = clean_run
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    samples = list(iter_samples(str(out)))
    assert summary["rows"] == ROWS and summary["complete"]
    assert len(samples) == GOOD and len(errors) == ROWS - GOOD
    assert summary["samples"] + summary["failed"] == ROWS
    rows = sorted([s["json"]["row"] for s in samples] + [e["row"] for e in errors])
    assert rows == list(range(ROWS)), "each input row exactly once"
    reasons = {e["key"]: (e["stage"], e["reason"]) for e in errors}
    assert reasons["latin"][1].endswith("text is not valid UTF-8")
    assert "unreadable JSON line" in next(r for s, r in reasons.values() if "JSON" in r)
    assert reasons["audio"] == ("probe", "no video stream (audio-only file)")
    assert reasons["missing"][1].startswith("file not found")
    assert "duplicate key 'bars_whole'" in reasons["bars_whole#dup15"][1]
    escape = next(k for k in reasons if k.startswith("escape-"))
    assert reasons[escape][0] == "probe" and "/" not in escape and "." not in escape
    assert set(summary["failed_by_stage"]) == {"manifest", "probe"}


def test_samples_hold_all_fields_and_open_with_plain_webdataset(clean_run):
    out, _ = clean_run
    index = json.loads((out / "index.json").read_text())
    urls = [str(out / s["url"]) for s in index["shardlist"]]
    assert sum(s["nsamples"] for s in index["shardlist"]) == GOOD
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(samples) == GOOD
    for s in samples:
        assert {"mp4", "jpg", "txt", "caption.txt", "json"} <= set(s)
        assert s["jpg"].size[1] == 96 or s["jpg"].size[0] == 96
        assert 0 < len(s["caption.txt"].split()) <= 16
        meta = s["json"]
        assert meta["middle_frame"]["index"] == meta["clip"]["num_frames"] // 2
        assert meta["caption_model"] == "random-tiny" and meta["source"]["duration"] > 0
    odd = next(s for s in samples if s["json"]["source_key"].startswith("orig.id/with:odd chars"))
    assert "." not in odd["__key__"] and odd["json"]["span"] == [4.0, None]
    assert len(odd["__key__"]) <= 80 and len(odd["json"]["source_key"]) == 222
    span, twin = (
        next(s for s in samples if s["__key__"] == k) for k in ("test_span", "test_span_twin")
    )
    assert (twin["mp4"], twin["caption.txt"]) == (span["mp4"], span["caption.txt"])
    assert twin["txt"] != span["txt"]


def test_rerun_skips_finished_tasks_and_changes_nothing(clean_run, manifest):
    out, first = clean_run
    before = _files(out)
    again = _run(manifest, out)
    assert again["resumed_tasks"] == first["tasks"]
    assert _files(out) == before
    assert (again["samples"], again["failed"]) == (first["samples"], first["failed"])


def test_another_manifest_into_the_same_folder_is_refused(clean_run, tmp_path, videos):
    out, _ = clean_run
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"video": str(videos["h264"]), "text": "x"}) + "\n")
    with pytest.raises(RunMismatch, match="another manifest"):
        _run(other, out)


def test_run_killed_with_sigkill_resumes_to_exactly_the_clean_samples(
    clean_run, manifest, tmp_path
):
    clean_out, _ = clean_run
    out = tmp_path / "killed"
    cmd = prepare_command(
        manifest,
        out,
        "--name",
        "t",
        "--shard-size",
        "4",
        "--frame-short-side",
        "96",
        "--runner",
        "local",
        "--no-progress",
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while (
        not list((out / "stats").glob("*.json"))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: one task done, the next in flight
    proc.wait()
    assert not (out / "stats.json").exists(), "the kill must land before the run finished"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    assert _files(out) == _files(clean_out), "byte-identical shards, each sample exactly once"
    assert len((out / "errors.jsonl").read_text().splitlines()) == ROWS - GOOD


def test_no_captioner_means_no_caption_field_and_ray_writes_in_the_cpu_task(videos, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(f"video,text\n{videos['h264']},bars\n{videos['h264_long']},test\n")
    _run(m, tmp_path / "out", captioner="none", shard_size=1)
    samples = list(iter_samples(str(tmp_path / "out")))
    assert len(samples) == 2
    assert all("caption.txt" not in s and s["json"]["caption_model"] is None for s in samples)
    # Ray runs both CPU phases in one task when nothing is captioned: the same shards
    ray_summary = _run(m, tmp_path / "ray", runner="ray", captioner="none", shard_size=1)
    assert ray_summary["samples"] == 2
    assert _files(tmp_path / "ray") == _files(tmp_path / "out")


@pytest.mark.slow
def test_beam_and_ray_write_the_same_samples(clean_run, manifest, tmp_path):
    clean_out, _ = clean_run
    beam = _run(manifest, tmp_path / "beam", runner="beam")
    ray_summary = _run(manifest, tmp_path / "ray", runner="ray")
    assert beam["samples"] == ray_summary["samples"] == GOOD
    reference = _fields(clean_out)
    assert _fields(tmp_path / "beam") == reference
    assert _fields(tmp_path / "ray") == reference
    assert _files(tmp_path / "beam") == _files(tmp_path / "ray") == _files(clean_out)


def test_prepare_format_runs_a_dataset_adapter_and_keeps_its_metadata(videos, tmp_path):
    folder = tmp_path / "msrvtt_videos"
    folder.mkdir()
    (folder / "video7.mp4").write_bytes(videos["h264"].read_bytes())
    (folder / "video9.mp4").write_bytes(videos["h264_long"].read_bytes())
    csv = tmp_path / "MSRVTT_JSFUSION_test.csv"
    csv.write_text(
        "key,vid_key,video_id,sentence\nret0,msr7,video7,a test card with colour bars\n"
        "ret1,msr9,video9,a moving test pattern\n"
    )
    out = tmp_path / "run"
    code = main(
        [
            "prepare",
            str(csv),
            "--format",
            "msrvtt",
            "--videos",
            str(folder),
            "--out",
            str(out),
            "--runner",
            "local",
            "--captioner",
            "none",
            "--no-progress",
        ]
    )
    assert code == 0
    samples = {s["txt"]: s["json"] for s in iter_samples(str(out))}
    assert set(samples) == {"a test card with colour bars", "a moving test pattern"}
    assert all(meta["extra"] for meta in samples.values()), "adapter columns reach the sample JSON"
    assert (out / "inputs" / "manifest.parquet").is_file()


def test_rows_of_one_clip_share_one_cut_frame_and_caption(videos, tmp_path):
    """MSR-VTT's sentences written one row each: rows with the same video and span are one
    clip, cut, framed and captioned once (the first row of the task), each sample with its own
    text and key, the bytes those of the first row run alone."""
    video = str(videos["h264_long"])
    rows = [
        {"key": f"s{i}", "video": video, "start": 1.0, "end": 3.0, "text": f"sentence {i}"}
        for i in range(3)
    ]
    rows.append({"key": "other", "video": video, "start": 1.0, "end": 2.5, "text": "a span"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = _run(manifest, tmp_path / "out", shard_size=8)
    assert (summary["samples"], summary["failed"]) == (4, 0)
    got = {s["key"]: s for s in iter_samples(str(tmp_path / "out"))}
    for field in ("mp4", "jpg", "caption.txt"):
        assert got["s0"][field] == got["s1"][field] == got["s2"][field], field
    assert got["s0"]["mp4"] != got["other"]["mp4"]
    assert [got[f"s{i}"]["txt"] for i in range(3)] == [f"sentence {i}" for i in range(3)]
    alone = tmp_path / "alone.jsonl"
    alone.write_text(json.dumps(rows[1]) + "\n")
    _run(alone, tmp_path / "alone", shard_size=8)
    (single,) = iter_samples(str(tmp_path / "alone"))
    for field in ("mp4", "jpg", "caption.txt"):
        assert single[field] == got["s1"][field], field
    assert {**single["json"], "row": 1} == got["s1"]["json"]


def test_a_rows_twin_takes_its_outputs_once_or_its_failure(videos):
    from pipelines.record import Clip
    from pipelines.tasks import run_stages

    video = str(videos["h264_long"])
    rows = [Clip(key=f"s{i}", row=i, video=video, start=1.0, end=3.0) for i in range(3)]
    run_stages(rows, PrepareConfig(captioner="ofa:random-tiny"))  # one with a CPU input stage
    lead = rows[0]
    assert lead.mp4 and lead.jpg and {"clip", "middle_frame", "caption_input"} <= set(lead.timings)
    for twin in rows[1:]:  # the lead's bytes themselves, no stage run for the twin
        assert twin.mp4 is lead.mp4 and twin.jpg is lead.jpg
        assert twin.clip_info == lead.clip_info and twin.frame_time == lead.frame_time
        assert not {"clip", "middle_frame", "caption_input"} & set(twin.timings)
        assert twin.caption_input is None, "no frame copy travels to the captioner for a twin"
    bad = [Clip(key=f"b{i}", row=i, video="/no/such/video.mp4", start=1.0) for i in range(2)]
    run_stages(bad, PrepareConfig(captioner="none"))
    assert bad[0].error == bad[1].error and bad[1].error.stage == "probe"
    lead = Clip(key="a", row=0, video="v.mp4", start=1.0, end=2.0)
    lead.fail("middle_frame", "no frame decoded")
    twin = Clip(key="b", row=1, video="v.mp4", start=1.0, end=2.0).share(lead)
    assert (twin.error.stage, twin.error.reason) == ("middle_frame", "no frame decoded")


def _a_missing_b(videos, folder: Path) -> Path:
    """A manifest of rows a, m, b in ``folder``: a's and b's videos there, m's not (yet)."""
    for name in ("a", "b"):
        shutil.copy(videos["h264"], folder / f"{name}.mp4")
    rows = [{"key": k, "video": str(folder / f"{k}.mp4"), "text": k} for k in ("a", "m", "b")]
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _retry(manifest, out, stages, **cfg):
    config = PrepareConfig(out=str(out), name="t", shard_size=8, captioner="none", **cfg)
    engine = EngineOptions(runner="local", retry_stages=frozenset(stages))
    return prepare(str(manifest), config, engine, progress=False)


def test_retry_failed_turns_rows_fixed_since_into_samples_and_nothing_else(videos, tmp_path):
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    first = _retry(manifest, out, ())
    assert (first["samples"], first["failed_by_stage"]) == (2, {"probe": 1})
    before = _fields(out)
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")  # the missing video arrives
    assert _retry(manifest, out, ())["failed"] == 1, "a plain rerun only resumes"
    assert _retry(manifest, out, {"caption"})["reopened_tasks"] == 0, "no failure there"
    again = _retry(manifest, out, {"probe"})
    assert (again["samples"], again["failed"], again["reopened_tasks"]) == (3, 0, 1)
    after = _fields(out)
    assert {k: after[k] for k in before} == before, "the rows that worked: the same bytes"
    assert list(after) == ["a", "m", "b"], "manifest order, the new sample in its place"
    assert (out / "errors.jsonl").read_text() == "" and not (out / "retry").exists()
    stats = json.loads((out / "stats" / "000000.json").read_text())
    assert (stats["rows"], stats["written"], stats["carried"]) == (3, 3, 2), "only m was redone"


def test_retry_failed_keeps_earlier_samples_whose_videos_are_gone_since(videos, tmp_path):
    """A retry redoes the failed rows only: a and b are copied from the earlier tars, so their
    videos may be gone (a scratch disk cleaned, a bucket expired) and they are still there."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    _retry(manifest, out, ())
    before = _fields(out)
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")
    (tmp_path / "a.mp4").unlink()
    (tmp_path / "b.mp4").unlink()
    summary = _retry(manifest, out, {"probe"})
    assert (summary["samples"], summary["failed"]) == (3, 0)
    after = _fields(out)
    assert {k: after[k] for k in before} == before


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["beam", "ray"])
def test_retry_failed_carries_earlier_samples_on_each_engine(videos, tmp_path, runner):
    """The carried samples travel with the task through the engine's phases (pickled through
    Beam's and Ray's transport) and land in manifest order with their captions unchanged."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    config = PrepareConfig(out=str(out), name="t", shard_size=8, captioner="random-tiny")
    prepare(str(manifest), config, EngineOptions(runner=runner, workers=2), progress=False)
    before = _fields(out)
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")
    retry = EngineOptions(runner=runner, workers=2, retry_stages=frozenset({"probe"}))
    summary = prepare(str(manifest), config, retry, progress=False)
    assert (summary["samples"], summary["failed"]) == (3, 0)
    after = _fields(out)
    assert list(after) == ["a", "m", "b"] and {k: after[k] for k in before} == before
    assert after["m"][3], "the redone row is captioned"


def test_retry_failed_remakes_what_it_cannot_read_back_and_removes_stale_parts(
    videos, tmp_path, caplog
):
    """One sample a part (a tiny --shard-bytes): a in part 0, b in part 1. Then b's part is
    damaged and b's video goes, and m is still missing. The retry carries a, cannot read b
    back so makes it again (it fails now: no video), and writes only part 0: the damaged
    part 1 is removed, so globbing the folder sees exactly the index's samples."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    assert _retry(manifest, out, (), shard_bytes=1)["shards"] == 2
    part1 = out / "shards" / "t-000000-1.tar"
    part1.write_bytes(part1.read_bytes()[:5000])  # cut inside b's mp4
    (tmp_path / "b.mp4").unlink()
    summary = _retry(manifest, out, {"probe"}, shard_bytes=1)
    assert (summary["samples"], summary["failed"]) == (1, 2)
    assert "1 sample(s) of its earlier attempt could not be read back" in caplog.text
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted((e["key"], e["stage"]) for e in errors) == [("b", "probe"), ("m", "probe")]
    on_disk = sorted(p.name for p in (out / "shards").glob("*.tar"))
    indexed = [
        Path(s["url"]).name for s in json.loads((out / "index.json").read_text())["shardlist"]
    ]
    assert on_disk == indexed and len(on_disk) == 1
    shard = str(out / "shards" / on_disk[0])
    assert [s["__key__"] for s in wds.WebDataset([shard], shardshuffle=False)] == ["a"]


@pytest.mark.parametrize("killed_at", ["t-000000-2.tar", "stats/000000.json"])
def test_a_retry_killed_while_writing_resumes_without_losing_a_sample(
    videos, tmp_path, monkeypatch, killed_at
):
    """One sample a part: a in part 0, b in part 1; m arrives, b's video goes. The retry writes
    a, m, b as parts 0, 1, 2, m over b's old part, and is killed before part 2 (b's only copy
    then is the one the retry kept) or at its stats file. The rerun still carries b."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    _retry(manifest, out, (), shard_bytes=1)
    before = _fields(out)
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")
    (tmp_path / "b.mp4").unlink()
    put_bytes, put_file = Store.put_bytes, Store.put_file

    def killed(real):
        def put(self, rel, data):
            if rel.endswith(killed_at):
                raise KeyboardInterrupt
            return real(self, rel, data)

        return put

    with monkeypatch.context() as patch:
        patch.setattr(Store, "put_bytes", killed(put_bytes))
        patch.setattr(Store, "put_file", killed(put_file))
        with pytest.raises(KeyboardInterrupt):
            _retry(manifest, out, {"probe"}, shard_bytes=1)
    # the earlier run's index.json listed a, b as parts 0, 1; part 1 holds m now
    assert not (out / "index.json").exists() and not (out / "stats.json").exists()
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_index(str(out))
    summary = _retry(manifest, out, {"probe"}, shard_bytes=1)
    assert (summary["samples"], summary["failed"]) == (3, 0)
    after = _fields(out)
    assert list(after) == ["a", "m", "b"] and {k: after[k] for k in before} == before
    assert not (out / "retry").exists()


def test_a_reopened_task_of_other_settings_is_refused_once_run_json_is_gone(
    videos, tmp_path, monkeypatch
):
    """A retry killed mid-task leaves the task's stats under retry/ only. With run.json then
    deleted, a run with another --crf must not copy the crf-23 samples listed there into a
    folder whose new run.json says crf 40; with the old settings it resumes and carries them."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    _retry(manifest, out, (), shard_bytes=1)
    before = _fields(out)
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")
    put_file = Store.put_file

    def killed(self, rel, data):
        if rel.endswith("t-000000-1.tar"):
            raise KeyboardInterrupt
        return put_file(self, rel, data)

    with monkeypatch.context() as patch:
        patch.setattr(Store, "put_file", killed)
        with pytest.raises(KeyboardInterrupt):
            _retry(manifest, out, {"probe"}, shard_bytes=1)
    assert (out / "retry" / "000000.json").exists() and not list((out / "stats").glob("*.json"))
    (out / "run.json").unlink()
    with pytest.raises(RunMismatch, match=r"task 0 in retry/"):
        _retry(manifest, out, (), shard_bytes=1, crf=40)
    summary = _retry(manifest, out, (), shard_bytes=1)
    assert (summary["samples"], summary["failed"]) == (3, 0)
    after = _fields(out)
    assert {k: after[k] for k in before} == before, "a and b carried byte for byte"


def test_an_unreadable_reopened_task_counts_as_foreign_and_is_named_by_its_file(tmp_path):
    from pipelines.tasks import check_orphaned_tasks

    store = Store(str(tmp_path))
    store.put_bytes("retry/000003.json", b"{cut short")
    with pytest.raises(RunMismatch, match=r"0 finished and 1 reopened.*task 000003 in retry/"):
        check_orphaned_tasks(store, "any fingerprint", num_tasks=5)


def test_a_write_killed_before_its_rename_leaves_no_temp_file_after_the_rerun(videos, tmp_path):
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    _retry(manifest, out, ())
    (out / "stats" / ".000000.json.abc123.tmp").write_text("{")
    (out / ".index.json.def456.tmp").write_text("{")
    _retry(manifest, out, ())
    assert not list(out.glob(".*.tmp")) and not list((out / "stats").glob(".*.tmp"))


def test_retry_benchmark_runs_and_prints_the_ratio(tmp_path, capsys):
    """The benchmark's smoke run: tiny, so CI checks it still works, never how fast."""
    from benchmarks.retry import main

    main(["--rows", "4", "--failed", "1", "--rounds", "1", "--work", str(tmp_path)])
    last = capsys.readouterr().out.splitlines()[-1]
    assert "whole task" in last and "carry" in last and "(the same samples)" in last


def test_a_retry_after_an_interrupted_run_is_a_first_attempt(videos, tmp_path):
    """An interrupted run keeps attempts/ (a finished one removes it): a task reopened by
    --retry-failed then counted attempt 2 and was reported as rerun after a death."""
    manifest = _a_missing_b(videos, tmp_path)
    out = tmp_path / "out"
    _retry(manifest, out, ())
    (out / "attempts").mkdir()
    (out / "attempts" / "000000").write_text("1\n")  # as a run killed elsewhere leaves it
    shutil.copy(videos["h264_long"], tmp_path / "m.mp4")
    again = _retry(manifest, out, {"probe"})
    assert again["samples"] == 3 and again["tasks_retried"] == 0
    assert json.loads((out / "stats" / "000000.json").read_text())["attempt"] == 1
