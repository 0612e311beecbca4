"""``clipvip manifest`` end to end: files in, a manifest and report out, `prepare` reads it."""

from __future__ import annotations

import json

import pytest

from clipvip.cli import main
from pipelines.manifest import read_manifest


def test_manifest_command_writes_parquet_and_report(tmp_path, video_folder, capsys):
    (tmp_path / "t.csv").write_text(
        "key,vid_key,video_id,sentence\nr0,m,video1,a cat\nr1,m,video2,x\n"
    )
    videos = video_folder(tmp_path / "v", ["video1.mp4"])
    out = tmp_path / "out" / "msrvtt.parquet"
    rc = main(
        ["manifest", "msrvtt", str(tmp_path / "t.csv"), "--videos", str(videos), "--out", str(out)]
    )
    assert rc == 0
    clips = read_manifest(str(out))
    assert [(c.key, c.text, c.dataset) for c in clips] == [("video1", "a cat", "msrvtt")]
    report = json.loads((tmp_path / "out" / "msrvtt.parquet.report.json").read_text())
    assert report["read"] == 2 and report["kept"] == 1
    assert report["dropped"] == {"video not found": 1}
    assert "msrvtt: read 2, kept 1" in capsys.readouterr().out


def test_manifest_command_user_errors_are_one_line(tmp_path, capsys):
    rc = main(
        ["manifest", "msrvtt", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m.parquet")]
    )
    assert rc == 2
    assert "--videos DIR is required" in capsys.readouterr().err
    (tmp_path / "v").mkdir()
    rc = main(
        [
            "manifest",
            "msrvtt",
            str(tmp_path / "none.csv"),
            "--videos",
            str(tmp_path / "v"),
            "--out",
            str(tmp_path / "m.parquet"),
        ]
    )
    assert rc == 2
    assert "none.csv: file not found" in capsys.readouterr().err


def test_out_naming_a_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("videoid,contentUrl,duration,page_dir,name\n1,u,1,p,x\n")
    (tmp_path / "isdir.parquet").mkdir()
    rc = main(
        ["manifest", "webvid", str(tmp_path / "t.csv"), "--out", str(tmp_path / "isdir.parquet")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"clipvip: error: {tmp_path / 'isdir.parquet'}: is a folder; give the manifest's file name\n"
    )


def test_no_rows_kept_exits_1_without_suggesting_prepare(tmp_path, video_folder, capsys):
    (tmp_path / "t.csv").write_text("key,vid_key,video_id,sentence\nr0,m,video1,a cat\n")
    videos = video_folder(tmp_path / "v", [])
    out = tmp_path / "m.jsonl"
    rc = main(
        ["manifest", "msrvtt", str(tmp_path / "t.csv"), "--videos", str(videos), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert rc == 1 and "kept 0" in printed and "(0 rows)" in printed
    assert "next:" not in printed


def test_manifest_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["manifest", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--videos",
        "--mode",
        "--per-sentence",
        "--subtitles",
        "--extract-dir",
        "--text-from",
        "--no-check-videos",
        "--min-overlap",
        "examples:",
    ):
        assert option in text


@pytest.mark.slow
@pytest.mark.shared_data
def test_video2dataset_manifest_prepares_into_shards(shared_file, tmp_path):
    from pipelines.config import PrepareConfig
    from pipelines.prepare import EngineOptions, prepare
    from shards import iter_samples

    shard = shared_file("shards", "video2dataset_return_all_test.tar")
    manifest = tmp_path / "v2d.jsonl"
    rc = main(
        [
            "manifest",
            "video2dataset",
            str(shard),
            "--out",
            str(manifest),
            "--text-from",
            "subtitles",
        ]
    )
    assert rc == 0 and (tmp_path / "v2d_videos").is_dir()
    cfg = PrepareConfig(
        out=str(tmp_path / "run"), shard_size=4, captioner="none", frame_short_side=64
    )
    summary = prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    samples = list(iter_samples(str(tmp_path / "run")))
    assert summary["complete"]
    assert sorted(s["key"] for s in samples) == ["0000008_00001", "0000030_00005", "0000038_00003"]
    assert {s["key"]: s["txt"] for s in samples}["0000038_00003"] == "haha"
    assert all(s["mp4"] and s["jpg"][:3] == b"\xff\xd8\xff" for s in samples)


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf", "soon"])
def test_a_negative_or_non_numeric_min_overlap_is_refused_at_parsing(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "manifest",
                "hdvila",
                str(tmp_path / "x.jsonl"),
                "--out",
                str(tmp_path / "m.jsonl"),
                "--min-overlap",
                value,
            ]
        )
    assert exit_.value.code == 2
    assert "--min-overlap" in capsys.readouterr().err


def test_manifest_split_flag_reaches_the_msrvtt_adapter(tmp_path, video_folder):
    data = {
        "videos": [
            {"video_id": "video1", "split": "train"},
            {"video_id": "video2", "split": "test"},
        ],
        "sentences": [
            {"video_id": "video1", "caption": "a cat", "sen_id": 0},
            {"video_id": "video2", "caption": "a dog", "sen_id": 0},
        ],
    }
    (tmp_path / "d.json").write_text(json.dumps(data))
    videos = video_folder(tmp_path / "v", ["video1.mp4", "video2.mp4"])
    out = tmp_path / "m.jsonl"
    argv = ["manifest", "msrvtt", str(tmp_path / "d.json"), "--videos", str(videos)]
    assert main([*argv, "--out", str(out), "--split", "train"]) == 0
    assert [c.key for c in read_manifest(str(out))] == ["video1"]
    report = json.loads((tmp_path / "m.jsonl.report.json").read_text())
    assert report["dropped"] == {"not in --split train": 1}
    assert main(["manifest", "didemo", str(tmp_path / "d.json"), "--videos", str(videos),
                 "--out", str(out), "--split", "train"]) == 2  # fmt: skip
