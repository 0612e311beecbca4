"""video2dataset shards as input: payloads extracted, JPEG-as-.mp4 samples dropped with reason."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from pipelines.adapters import build_manifest, write_manifest_parquet
from pipelines.adapters.video2dataset import sniff
from pipelines.manifest import ManifestError, read_manifest

MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64


def write_shard(path, samples: list[tuple[str, dict[str, bytes]]]) -> str:
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return str(path)


def meta(**fields) -> bytes:
    return json.dumps({"status": "success", **fields}).encode()


def test_payload_magic_bytes():
    assert sniff(MP4) == ("mp4", "MP4/QuickTime video")
    assert sniff(JPEG) == (None, "JPEG image")
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 20)[0] == "webm"
    assert sniff(b"") == (None, "empty file")


def test_samples_become_extracted_files_and_rows(tmp_path):
    subs = [
        {"start": "00:00:09.000", "end": "00:00:11.000", "lines": ["hi there"]},
        {"start": "00:00:11.000", "end": "00:00:13.000", "lines": ["hi there", "friends"]},
        {"start": "00:01:00.000", "end": "00:01:02.000", "lines": ["later"]},
    ]
    shard = write_shard(
        tmp_path / "00000.tar",
        [
            (
                "k1",
                {
                    "mp4": MP4,
                    "txt": b" a  caption ",
                    "json": meta(url="u1", clips=[[10.0, 20.0]], clip_subtitles=subs),
                },
            ),
            ("k2", {"mp4": JPEG, "txt": b"an image", "json": meta()}),
            (
                "k3",
                {
                    "mp4": MP4,
                    "json": json.dumps(
                        {"status": "failed_to_download", "error_message": "HTTP 404"}
                    ).encode(),
                },
            ),
            ("k4", {"txt": b"no video", "json": meta()}),
        ],
    )
    out = tmp_path / "videos"
    rows, report = build_manifest("video2dataset", [shard], None, extract_dir=str(out))
    assert [(r["key"], r["text"], r["subtitles"], r["source_span"]) for r in rows] == [
        ("k1", "a caption", "hi there friends", [10.0, 20.0])
    ]
    assert (out / "00000" / "k1.mp4").read_bytes() == MP4
    assert (report.read, report.kept, report.extracted) == (4, 1, 1)
    assert dict(report.dropped) == {
        ".mp4 payload is a JPEG image, not a video": 1,
        "video2dataset status failed_to_download: HTTP 404": 1,
        "no video in the sample": 1,
    }
    rows, report = build_manifest(
        "video2dataset", [shard], None, extract_dir=str(out), text_from="subtitles"
    )
    assert rows[0]["text"] == "hi there friends" and report.extracted == 0  # rerun reuses files


def test_per_sample_error_messages_are_bounded_in_the_report(tmp_path):
    """Each failed download names its URL: 300 of them give 100 reasons and one 'other' count."""
    from pipelines.adapters.base import MAX_REASONS, OTHER_REASONS, REASON_CHARS

    failed = [
        (f"k{i}", {"json": meta(status="failed_to_download", error_message=f"HTTP 404 u/{i}")})
        for i in range(3 * MAX_REASONS)
    ]
    long_message = meta(status="error", error_message="x" * 10_000)
    shard = write_shard(tmp_path / "0.tar", [("long", {"json": long_message}), *failed])
    _, report = build_manifest("video2dataset", [shard], None, extract_dir=str(tmp_path / "x"))
    assert report.read == sum(report.dropped.values()) == 3 * MAX_REASONS + 1
    assert len(report.dropped) == MAX_REASONS + 1
    assert report.dropped[OTHER_REASONS] == 2 * MAX_REASONS + 1
    long_reason = next(r for r in report.dropped if r.startswith("video2dataset status error"))
    assert len(long_reason) == REASON_CHARS and long_reason.endswith("…")


def test_broken_sample_json_and_non_tar_name_the_file(tmp_path):
    shard = write_shard(tmp_path / "s.tar", [("k1", {"mp4": MP4, "json": b"{nope"})])
    with pytest.raises(ManifestError, match=r"s\.tar: k1\.json: not valid JSON"):
        build_manifest("video2dataset", [shard], None, extract_dir=str(tmp_path / "x"))
    (tmp_path / "t.tar").write_bytes(b"this is not a tar file at all" * 30)
    with pytest.raises(ManifestError, match=r"t\.tar: not a readable tar shard"):
        build_manifest(
            "video2dataset", [str(tmp_path / "t.tar")], None, extract_dir=str(tmp_path / "x")
        )


@pytest.mark.shared_data
def test_real_video2dataset_shard(shared_file, tmp_path):
    shard = shared_file("shards", "video2dataset_return_all_test.tar")
    rows, report = build_manifest(
        "video2dataset", [str(shard)], None, extract_dir=str(tmp_path / "x")
    )
    assert (report.read, report.kept) == (6, 3)
    assert dict(report.dropped) == {".mp4 payload is a JPEG image, not a video": 3}
    assert sorted(r["key"] for r in rows) == ["0000008_00001", "0000030_00005", "0000038_00003"]
    by_key = {r["key"]: r for r in rows}
    assert by_key["0000038_00003"]["subtitles"] == "haha"  # the [Music] line is dropped
    assert by_key["0000038_00003"]["source_span"] == [3564.04, 3571.96]
    assert all(r["subtitles"] for r in rows)
    manifest = tmp_path / "m.parquet"
    write_manifest_parquet(rows, manifest)
    clips = read_manifest(str(manifest))
    assert [c.key for c in clips] == [r["key"] for r in rows] and all(c.ok for c in clips)


def test_extracted_video_paths_are_absolute_so_prepare_can_run_from_any_folder(
    tmp_path, monkeypatch
):
    shard = write_shard(tmp_path / "00000.tar", [("k1", {"mp4": MP4, "txt": b"t"})])
    monkeypatch.chdir(tmp_path)
    rows, _ = build_manifest("video2dataset", [shard], None, extract_dir="sub/v_videos")
    assert rows[0]["video"] == str(tmp_path / "sub" / "v_videos" / "00000" / "k1.mp4")


def test_videos_folder_does_not_apply_to_shards_and_says_so(tmp_path):
    shard = write_shard(tmp_path / "00000.tar", [("k1", {"mp4": MP4, "txt": b"t"})])
    with pytest.raises(ManifestError, match=r"video2dataset: option\(s\) --videos do not apply"):
        build_manifest("video2dataset", [shard], str(tmp_path), extract_dir=str(tmp_path / "x"))


def test_key_txt_that_is_not_utf8_drops_that_sample_with_the_reason(tmp_path):
    shard = write_shard(
        tmp_path / "s.tar",
        [("k1", {"mp4": MP4, "txt": b"caf\xe9"}), ("k2", {"mp4": MP4, "txt": b"fine"})],
    )
    rows, report = build_manifest("video2dataset", [shard], None, extract_dir=str(tmp_path / "x"))
    assert [r["key"] for r in rows] == ["k2"]
    assert report.dropped == {"txt is not UTF-8 text (byte 3 is 0xe9)": 1}
    assert not list((tmp_path / "x").rglob("k1.*")), "a dropped sample's video is not extracted"
    # the text comes from the subtitles instead: KEY.txt is not read, so not refused
    rows, _ = build_manifest(
        "video2dataset", [shard], None, extract_dir=str(tmp_path / "x"), text_from="subtitles"
    )
    assert [r["key"] for r in rows] == ["k1", "k2"]


def test_a_nan_clip_span_stops_naming_the_field(tmp_path):
    member = b'{"status": "success", "clips": [[NaN, 20.0]]}'
    shard = write_shard(tmp_path / "s.tar", [("k1", {"mp4": MP4, "json": member})])
    with pytest.raises(ManifestError) as info:
        build_manifest("video2dataset", [shard], None, extract_dir=str(tmp_path / "x"))
    assert str(info.value) == f"{shard}: k1.json: clips[0][0]: not a time: NaN"
