"""Staging: the manifest streamed once into per-task row groups; engines carry indices only."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest

from pipelines import staging
from pipelines import tasks as T
from pipelines.config import PrepareConfig
from pipelines.keys import derive_key
from pipelines.manifest import read_manifest


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _all_staged(cfg, num_tasks):
    return [c for i in range(num_tasks) for c in staging.load_clips(cfg, i)]


def _summary(clips):
    return [
        (c.row, c.key, c.video, c.text, c.error and (c.error.stage, c.error.reason)) for c in clips
    ]


ROWS = [
    {"key": "a", "video": "/v/1.mp4", "text": "one"},
    {"key": "b", "video": "/v/2.mp4", "text": "two"},
    {"key": "a", "video": "/v/3.mp4", "text": "a again, next task"},
    {"video": "/v/4.mp4", "start": 1, "end": 2, "text": "derived key"},
    {"key": "c", "video": "/v/\udcff.mp4", "text": "undecodable path"},
    {"key": "b", "video": "/v/5.mp4", "text": ""},
    {"video": "/v/4.mp4", "start": 1, "end": 2, "text": "derived key, again"},
]


def test_staged_rows_load_exactly_as_read_manifest_reads_them(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in ROWS), errors="surrogateescape")
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=2)
    staged = staging.stage(str(m), cfg)
    assert (staged.rows, staged.tasks) == (7, 4)
    clips = _all_staged(cfg, staged.tasks)
    assert _summary(clips) == _summary(read_manifest(str(m)))
    reasons = {c.key: c.error.reason for c in clips if c.error}
    assert "duplicate key 'a' (first used by row 0)" in reasons["a#dup2"]
    # no key given: the key names the clip, and a second text of that clip is its second sample
    derived, again = clips[3], clips[6]
    assert derived.ok and again.ok and again.key == f"{derived.key}-2"
    assert not any("first used by row 3" in r for r in reasons.values())


def test_hash_collisions_never_fail_rows_whose_keys_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_key_hash", lambda key: 7)  # every key collides
    m = _write(tmp_path / "m.jsonl", [{"key": k, "video": "/v.mp4", "text": "t"} for k in "xyzxw"])
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=2)
    staged = staging.stage(str(m), cfg)
    failed = [c.key for c in _all_staged(cfg, staged.tasks) if c.error]
    assert failed == ["x#dup3"]


def test_staging_streams_a_large_manifest_in_bounded_memory(tmp_path):
    n = 50_000
    m = tmp_path / "big.jsonl"
    with open(m, "w") as f:
        for i in range(n):
            f.write(json.dumps({"key": f"k{i}", "video": f"/v/{i}.mp4", "text": f"sentence {i}"}))
            f.write("\n")
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=1000)
    tracemalloc.start()
    plan = T.plan(str(m), cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (plan.total_rows, plan.num_tasks, plan.tasks[:3]) == (n, 50, [0, 1, 2])
    assert all(isinstance(t, int) for t in plan.tasks), "engines carry task indices, not rows"
    # Holding the rows as clips takes ~40 MB here; streaming keeps one task plus 8 B a row.
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    last = T.load_task(49, cfg)
    assert [c.key for c in last.clips][-1] == f"k{n - 1}" and len(last.clips) == 1000


def test_a_rerun_of_the_same_file_reuses_the_staged_rows_without_reading_it(tmp_path, monkeypatch):
    m = _write(tmp_path / "m.jsonl", ROWS[:2])
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=1)
    T.plan(str(m), cfg)

    def fail(*_):
        raise AssertionError("the manifest was read again")

    monkeypatch.setattr(staging, "fingerprint", fail)
    monkeypatch.setattr(staging, "stage", fail)
    assert T.plan(str(m), cfg).num_tasks == 2


def test_a_touched_manifest_is_checked_and_a_changed_one_refused(tmp_path):
    m = _write(tmp_path / "m.jsonl", ROWS[:2])
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=1)
    T.plan(str(m), cfg)
    st = m.stat()
    os.utime(m, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new stamp
    assert T.plan(str(m), cfg).num_tasks == 2
    _write(m, ROWS[:3])
    with pytest.raises(T.RunMismatch):
        T.plan(str(m), cfg)
    assert [c.key for c in staging.load_clips(cfg, 1)] == ["b"], "staged rows left as they were"


def _as_an_older_clipvip_left_it(out, manifest, cfg):
    """Rewrite run.json as a clipvip before --crf/--fast-decode wrote it (no such settings,
    its fingerprint taken over the settings it had)."""
    path = out / "run.json"
    run = json.loads(path.read_text())
    for key in ("crf", "fast_decode"):
        del run["settings"][key]
    run["fingerprint"] = staging.fingerprint(str(manifest), cfg, False, run["settings"])[0][1]
    run["identity"] = None
    path.write_text(json.dumps(run))


def test_a_run_of_an_older_clipvip_resumes_when_its_settings_are_matched(tmp_path):
    m = _write(tmp_path / "m.jsonl", ROWS[:2])
    out = tmp_path / "out"
    T.plan(str(m), PrepareConfig(out=str(out), shard_size=1, fast_decode=False))
    _as_an_older_clipvip_left_it(out, m, PrepareConfig(out=str(out)))

    # today's default encodes with --tune fastdecode; the old run did not: mixing is refused,
    # and the message says which option resumes it
    with pytest.raises(T.RunMismatch, match=r"pass --no-fast-decode \(not --fast-decode\)"):
        T.plan(str(m), PrepareConfig(out=str(out), shard_size=1))
    resumed = T.plan(str(m), PrepareConfig(out=str(out), shard_size=1, fast_decode=False))
    assert resumed.num_tasks == 2
    run = json.loads((out / "run.json").read_text())
    assert (run["settings"]["crf"], run["settings"]["fast_decode"]) == (23, False)


def test_a_mismatch_says_whether_the_manifest_or_which_settings_differ(tmp_path):
    m = _write(tmp_path / "m.jsonl", ROWS[:2])
    out = tmp_path / "out"
    T.plan(str(m), PrepareConfig(out=str(out), shard_size=1))
    other = PrepareConfig(out=str(out), shard_size=1, jpeg_quality=80, frame_short_side=None)
    with pytest.raises(T.RunMismatch) as info:
        T.plan(str(m), other)
    assert "--jpeg-quality 95 (not --jpeg-quality 80)" in str(info.value)
    assert "--frame-short-side 480 (not --frame-short-side 0)" in str(info.value)
    assert "another manifest" not in str(info.value)
    with pytest.raises(T.RunMismatch, match="another manifest"):
        T.plan(str(_write(tmp_path / "m2.jsonl", ROWS[:3])), PrepareConfig(out=str(out)))


def test_staging_cut_short_is_redone_from_scratch(tmp_path, monkeypatch):
    m = _write(
        tmp_path / "m.jsonl", [{"key": f"k{i}", "video": "/v.mp4", "text": "t"} for i in range(5)]
    )
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=2)
    real = staging.iter_clips

    def dies_midway(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(staging, "iter_clips", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        T.plan(str(m), cfg)
    assert not (tmp_path / "out" / T.RUN_FILE).exists(), "no run.json before the rows are staged"
    monkeypatch.setattr(staging, "iter_clips", real)
    plan = T.plan(str(m), cfg)
    assert plan.num_tasks == 3
    assert [c.key for i in range(3) for c in staging.load_clips(cfg, i)] == [
        f"k{i}" for i in range(5)
    ]


# the sample settings of the first released run format (e4a6583); every later one needs a legacy
# value, or every run made before it could never be resumed by a clipvip that has it
FIRST_SAMPLE_SETTINGS = {
    "name", "shard_size", "shard_bytes", "fps", "max_short_side", "frame_short_side",
    "jpeg_quality", "captioner", "caption_max_words", "allow_empty_text", "ffmpeg_threads",
}  # fmt: skip


def test_every_sample_setting_added_since_the_first_run_format_has_a_legacy_value():
    from pipelines.config import LEGACY_SETTINGS, SAMPLE_SETTINGS

    assert set(SAMPLE_SETTINGS) - FIRST_SAMPLE_SETTINGS == set(LEGACY_SETTINGS)


def test_another_text_of_a_clip_never_takes_a_key_another_row_was_given(tmp_path):
    # A manifest mixing rows from an earlier run (keys given, KEY-2 among them) with new rows
    # without keys: the clip's second text must not become a second sample named KEY-2.
    derived = derive_key("/v/4.mp4", 1.0, 2.0)
    rows = [
        {"video": "/v/4.mp4", "start": 1, "end": 2, "text": "first text"},
        {"key": f"{derived}-2", "video": "/v/9.mp4", "text": "a given key"},
        {"video": "/v/4.mp4", "start": 1, "end": 2, "text": "second text"},
        {"video": "/v/4.mp4", "start": 1, "end": 2, "text": "third text"},
        {"key": f"{derived}-3", "video": "/v/8.mp4", "text": "given after the repeat"},
    ]
    m = _write(tmp_path / "m.jsonl", rows)
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=2)
    staged = staging.stage(str(m), cfg)
    clips = _all_staged(cfg, staged.tasks)
    assert _summary(clips) == _summary(read_manifest(str(m)))
    keys = [c.key for c in clips]
    assert all(c.ok for c in clips) and len(set(keys)) == len(keys)
    assert keys[:2] == [derived, f"{derived}-2"] and keys[4] == f"{derived}-3"
    assert keys[2].startswith(f"{derived}-2-") and keys[3].startswith(f"{derived}-3-")


def test_a_repeated_clip_keeps_key_n_when_no_row_holds_it(tmp_path):
    rows = [{"video": "/v/4.mp4", "text": f"text {i}"} for i in range(3)]
    clips = read_manifest(str(_write(tmp_path / "m.jsonl", rows)))
    base = derive_key("/v/4.mp4", None, None)
    assert [c.key for c in clips] == [base, f"{base}-2", f"{base}-3"]


def test_a_run_staged_before_repeat_keys_were_checked_loads_as_it_was(tmp_path):
    # duplicates.json written by an older version holds [line, first row, n], no key
    m = _write(tmp_path / "m.jsonl", [{"video": "/v/4.mp4", "text": t} for t in "ab"])
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=2)
    staging.stage(str(m), cfg)
    dup = tmp_path / "out" / staging.DUPLICATES
    dup.write_text(json.dumps({"1": [2, 0, 2]}))
    base = derive_key("/v/4.mp4", None, None)
    assert [c.key for c in staging.load_clips(cfg, 0)] == [base, f"{base}-2"]
