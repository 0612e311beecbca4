"""Manifests are streamed: rows reach the file in bounded batches, and the file is what the
whole-table writer made (same rows, types, columns, duplicate keys dropped the same way)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.adapters import build_manifest, iter_manifest, output, write_manifest
from pipelines.adapters.base import iter_csv_lines, iter_lines, read_text
from pipelines.adapters.output import BASE_COLUMNS, stream_manifest, write_manifest_parquet
from pipelines.manifest import ManifestError, read_manifest


def _in_memory_table(rows: list[dict]) -> pa.Table:
    """The writer before streaming: one Python list per column over all rows, one table."""
    extra = sorted({n for row in rows for n in row if n not in BASE_COLUMNS})
    return pa.table(
        {
            name: pa.array([r.get(name) for r in rows], type=getattr(pa, kind)())
            if (kind := BASE_COLUMNS.get(name))
            else pa.array([r.get(name) for r in rows])
            for name in [*BASE_COLUMNS, *extra]
        }
    )


def _hdvila(path, videos: int, clips: int = 5) -> None:
    """Synthetic HD-VILA release lines: the first 150 videos have no url (a null column in the
    first batches), every 50th video repeats earlier clip ids, every 7th clip has an empty span."""
    with open(path, "w") as f:
        for v in range(videos):
            line = {"video_id": f"v{v}", "clip": []}
            if v >= 150:
                line["url"] = f"https://www.youtube.com/watch?v=v{v}"
            for i in range(clips):
                clip_id = f"v{v - 1}.{i}.mp4" if v % 50 == 49 else f"v{v}.{i}.mp4"
                end = i + 1 if (v * clips + i) % 7 else i
                line["clip"].append(
                    {"clip_id": clip_id, "span": [f"0:00:{i:02d}", f"0:00:{end:02d}"]}
                )
            f.write(json.dumps(line) + "\n")


@pytest.fixture
def release(tmp_path):
    path = tmp_path / "hdvila_part0.jsonl"
    _hdvila(path, videos=1_000)  # 5,000 clips
    return path


def test_streamed_manifest_writes_in_batches_and_equals_the_in_memory_one(
    release, tmp_path, monkeypatch
):
    rows_reference, report_reference = build_manifest(
        "hdvila", [str(release)], "/videos", check_videos=False
    )
    duplicates = report_reference.dropped["duplicate key"]
    assert duplicates > 50  # the fixture does what it says
    reference = _in_memory_table(rows_reference)

    pulled = 0
    rows, report = iter_manifest("hdvila", [str(release)], "/videos", check_videos=False)

    def counted():
        nonlocal pulled
        for row in rows:
            pulled += 1
            yield row

    seen_at_write: list[tuple[int, int]] = []  # (rows pulled from the adapter, batch size)
    write = output._ParquetSink.write

    def spy(self, batch):
        seen_at_write.append((pulled, len(batch)))
        write(self, batch)

    monkeypatch.setattr(output._ParquetSink, "write", spy)
    out = tmp_path / "m.parquet"
    written = stream_manifest(counted(), out, batch_rows=512)

    assert len(seen_at_write) == 9 and all(n <= 512 for _, n in seen_at_write)
    # each batch is written when it is read: the adapter is never more than a batch ahead
    assert [p for p, _ in seen_at_write] == [min(512 * (i + 1), pulled) for i in range(9)]
    assert written.rows == reference.num_rows and written.duplicates == duplicates
    got = pq.read_table(out)
    assert got.schema.equals(reference.schema) and got.equals(reference)
    assert got.schema.field("url").type == pa.string()  # null in the first batch, merged
    assert pq.ParquetFile(out).metadata.num_row_groups >= 9
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_write_manifest_keeps_the_report_and_the_rows_of_build_manifest(release, tmp_path):
    rows, reference = build_manifest("hdvila", [str(release)], "/videos", check_videos=False)
    for name in ("m.parquet", "m.jsonl"):
        count, report = write_manifest(
            "hdvila", [str(release)], "/videos", tmp_path / name, batch_rows=300, check_videos=False
        )
        assert count == len(rows) and report.to_dict() == reference.to_dict()
    assert (tmp_path / "m.jsonl").read_text() == "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in rows
    )
    assert pq.read_table(tmp_path / "m.parquet").column("key").to_pylist() == [
        r["key"] for r in rows
    ]
    assert len(read_manifest(str(tmp_path / "m.parquet"))) == len(rows)  # prepare reads it


def test_one_batch_is_byte_identical_to_the_whole_table_writer(release, tmp_path):
    rows, _ = build_manifest("hdvila", [str(release)], "/videos", check_videos=False)
    pq.write_table(_in_memory_table(rows), tmp_path / "reference.parquet")
    write_manifest_parquet(iter(rows), tmp_path / "streamed.parquet")
    count, _ = write_manifest(
        "hdvila", [str(release)], "/videos", tmp_path / "w.parquet", check_videos=False
    )
    reference = (tmp_path / "reference.parquet").read_bytes()
    assert (tmp_path / "streamed.parquet").read_bytes() == reference
    assert (tmp_path / "w.parquet").read_bytes() == reference and count == len(rows)


def test_duplicates_are_settled_by_key_not_by_hash(tmp_path, monkeypatch):
    """Every key hashing alike makes every row a candidate: only equal keys may be dropped."""
    monkeypatch.setattr(output, "_key_hash", lambda key: 42)
    rows = [
        {"video": "a.mp4", "start": None, "end": None, "text": t, "key": k, "dataset": "d"}
        for k, t in [("x", "1"), ("y", "2"), ("x", "3"), ("z", "4"), ("y", "5"), ("w", "6")]
    ]
    for name in ("m.parquet", "m.jsonl"):
        written = stream_manifest(iter(rows), tmp_path / name, batch_rows=2)
        assert written.rows == 4 and written.duplicates == 2
    assert [c.text for c in read_manifest(str(tmp_path / "m.parquet"))] == ["1", "2", "4", "6"]
    assert [c.text for c in read_manifest(str(tmp_path / "m.jsonl"))] == ["1", "2", "4", "6"]


def test_an_error_mid_stream_leaves_neither_file_nor_temp(tmp_path):
    (tmp_path / "m.parquet").write_bytes(b"the previous manifest")

    def rows():
        for i in range(1_000):
            yield {"video": "a.mp4", "text": "t", "key": f"k{i}", "dataset": "d"}
        raise ManifestError("release.jsonl:1001: not a JSON line")

    with pytest.raises(ManifestError, match="1001"):
        stream_manifest(rows(), tmp_path / "m.parquet", batch_rows=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet"]
    assert (tmp_path / "m.parquet").read_bytes() == b"the previous manifest"


def test_columns_new_in_a_later_batch_and_widened_types_merge(tmp_path):
    rows = [
        {"video": "a.mp4", "key": "k0", "text": "", "dataset": "d", "n": 1},
        {"video": "a.mp4", "key": "k1", "text": "", "dataset": "d", "n": 2.5, "meta": {"a": 1}},
        {"video": "a.mp4", "key": "k2", "text": "", "dataset": "d", "meta": {"a": 2, "b": "x"}},
    ]
    write_manifest_parquet(iter(rows), tmp_path / "m.parquet", batch_rows=1)
    got = pq.read_table(tmp_path / "m.parquet")
    assert got.equals(_in_memory_table(rows))
    assert got.column_names == [*BASE_COLUMNS, "meta", "n"]
    with pytest.raises(ManifestError, match="changes type"):
        write_manifest_parquet(iter([*rows, {**rows[0], "n": "three"}]), tmp_path / "x.parquet", 3)


def test_no_rows_still_makes_a_typed_manifest(tmp_path):
    count, report = write_manifest(
        "webvid", [str(_write(tmp_path / "w.csv", "videoid,name\n"))], None, tmp_path / "m.parquet"
    )
    assert count == 0 and report.read == 0
    schema = pq.read_schema(tmp_path / "m.parquet")
    assert schema.names == list(BASE_COLUMNS) and schema.field("start").type == pa.float64()


def _write(path, data: str | bytes):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_streamed_lines_read_as_the_whole_file_did(tmp_path):
    text = '\ufeffa,b\r\n"multi\nline",x\rc,d\n\nlast'
    path = _write(tmp_path / "f.csv", text)
    assert list(iter_csv_lines(str(path))) == list(io.StringIO(read_text(str(path)), newline=""))
    assert "".join(iter_lines(str(path))) == read_text(str(path))
    bad = _write(tmp_path / "bad.jsonl", b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(ManifestError) as whole:
        read_text(str(bad))
    with pytest.raises(ManifestError) as streamed:
        list(iter_lines(str(bad)))
    assert str(streamed.value) == str(whole.value) == f"{bad}:2: not UTF-8 text (byte 16 is 0xff)"
    with pytest.raises(ManifestError, match="file not found"):
        list(iter_lines(str(tmp_path / "none.jsonl")))


def test_out_naming_a_folder_stops_before_any_row_is_read(tmp_path):
    (tmp_path / "isdir.parquet").mkdir()
    read: list[int] = []

    def rows():
        read.append(1)
        yield {"video": "v.mp4", "start": None, "end": None, "text": "t", "key": "k"}

    with pytest.raises(ManifestError, match=r"isdir\.parquet: is a folder"):
        stream_manifest(rows(), tmp_path / "isdir.parquet")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ManifestError, match=r"file is a file, not a folder"):
        stream_manifest(rows(), tmp_path / "file" / "sub" / "m.parquet")
    assert read == [] and (tmp_path / "isdir.parquet").is_dir()


def test_a_dropped_duplicate_with_empty_text_leaves_the_empty_text_count(tmp_path):
    """``kept 15 (17 with empty text)`` was possible: a dropped duplicate stayed counted."""
    (tmp_path / "clips.csv").write_text(
        "video,start,end,key,text\n"
        "a.mp4,0,4,k1,\na.mp4,4,8,k1,\na.mp4,8,12,k2,said\na.mp4,12,16,k2,\na.mp4,16,20,k3,\n"
    )
    (tmp_path / "subs").mkdir()
    args = ("clips", [str(tmp_path / "clips.csv")], None)
    _, report = build_manifest(*args, subtitles=str(tmp_path / "subs"))
    assert (report.kept, report.empty_text, report.dropped["duplicate key"]) == (3, 2, 2)
    for name in ("m.parquet", "m.jsonl"):
        count, report = write_manifest(
            *args, tmp_path / name, batch_rows=2, subtitles=str(tmp_path / "subs")
        )
        assert (count, report.kept, report.empty_text) == (3, 3, 2), name
        assert report.dropped["duplicate key"] == 2
