import io
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from shards import Sample, ShardSpec, Store, iter_samples, write_shards
from shards.index import make_index


def _jpg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="JPEG")
    return buf.getvalue()


def _samples(n: int):
    return [
        Sample(
            f"clip_{i:03d}",
            {
                "txt": f"text {i}".encode(),
                "jpg": _jpg((i * 40, 0, 0)),
                "json": b'{"i": %d}' % i,
                "caption.txt": b"a caption",
                "mp4": b"\x00" * 100,
            },
        )
        for i in range(n)
    ]


def test_same_samples_give_byte_identical_tars(tmp_path):
    a = write_shards(_samples(3), Store(str(tmp_path / "a")), ShardSpec("x", 0))
    b = write_shards(_samples(3), Store(str(tmp_path / "b")), ShardSpec("x", 0))
    assert (tmp_path / "a" / a[0].url).read_bytes() == (tmp_path / "b" / b[0].url).read_bytes()


def test_members_are_adjacent_sorted_with_fixed_metadata(tmp_path):
    (info,) = write_shards(_samples(2), Store(str(tmp_path)), ShardSpec("x", 7))
    assert info.url == "shards/x-000007.tar" and info.nsamples == 2
    with tarfile.open(tmp_path / info.url) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:5] == [f"clip_000.{e}" for e in ("caption.txt", "jpg", "json", "mp4", "txt")]
    assert names[5:] == [f"clip_001.{e}" for e in ("caption.txt", "jpg", "json", "mp4", "txt")]
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}


def test_byte_cap_starts_new_parts_and_leaves_no_temp_files(tmp_path):
    infos = write_shards(_samples(5), Store(str(tmp_path)), ShardSpec("x", 1, max_bytes=2000))
    assert [i.url for i in infos][:2] == ["shards/x-000001.tar", "shards/x-000001-1.tar"]
    assert sum(i.nsamples for i in infos) == 5
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".tar"]
    assert leftovers == []


def test_byte_cap_bounds_the_tar_file_headers_and_padding_included(tmp_path):
    sizes = [300, 9000, 5000, 12000, 700, 4000, 25000, 100]
    samples = [
        Sample(f"s{i}", {"mp4": bytes(n), "txt": b"t" * (i + 1)}) for i, n in enumerate(sizes)
    ]
    infos = write_shards(samples, Store(str(tmp_path)), ShardSpec("x", 0, max_bytes=20480))
    assert sum(i.nsamples for i in infos) == len(sizes) and len(infos) > 2
    for info in infos:
        size = (tmp_path / info.url).stat().st_size
        assert size == info.nbytes
        assert size <= 20480 or info.nsamples == 1, "only a lone oversized sample passes the cap"


def test_plain_webdataset_reads_the_shards(tmp_path):
    infos = write_shards(_samples(3), Store(str(tmp_path)), ShardSpec("x", 0))
    ds = wds.WebDataset([str(tmp_path / i.url) for i in infos], shardshuffle=False).decode("pil")
    samples = list(ds)
    assert [s["__key__"] for s in samples] == ["clip_000", "clip_001", "clip_002"]
    assert isinstance(samples[1]["jpg"], Image.Image) and samples[1]["txt"] == "text 1"
    assert samples[2]["caption.txt"] == "a caption" and samples[2]["json"] == {"i": 2}


def test_index_and_reader_iterate_a_run_folder(tmp_path):
    store = Store(str(tmp_path))
    infos = write_shards(_samples(4), store, ShardSpec("x", 0, max_bytes=3000))
    index = make_index([{"url": i.url, "nsamples": i.nsamples} for i in infos], "x")
    store.put_bytes("index.json", __import__("json").dumps(index).encode())
    assert index["__kind__"] == "wids-shard-index-v1"
    keys = [s["key"] for s in iter_samples(str(tmp_path))]
    assert keys == [f"clip_{i:03d}" for i in range(4)]


def test_a_key_too_long_for_a_tar_member_name_is_refused_before_any_write():
    with pytest.raises(ValueError, match="exceeds the 100-byte tar member name"):
        Sample("k" * 90, {"caption.txt": b"", "txt": b""})


@pytest.mark.parametrize("key", ["a.b", "../x", "a/b", ""])
def test_unsafe_keys_are_refused(key):
    with pytest.raises(ValueError, match="unsafe sample key"):
        Sample(key, {"txt": b""})


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_published_files_get_the_mode_a_plain_file_gets_not_a_temp_files(tmp_path, umask):
    """Temp files are 0600 and a rename keeps that: a trainer running as another user could
    not read a run's shards. Shards, small files and copies follow the umask instead."""
    import os
    import stat

    from shards import store as store_module

    old = os.umask(umask)
    store_module._umask.cache_clear()
    try:
        store = Store(str(tmp_path / "run"))
        sample = Sample("k0", {"jpg": b"j", "json": b"{}", "mp4": b"m", "txt": b"t"})
        [info] = write_shards([sample], store, ShardSpec("x", 0))
        store.put_bytes("index.json", b"{}")
        store.copy(info.url, "kept/x.tar")
    finally:
        os.umask(old)
        store_module._umask.cache_clear()
    for rel in (info.url, "index.json", "kept/x.tar"):
        mode = stat.S_IMODE((tmp_path / "run" / rel).stat().st_mode)
        assert mode == 0o666 & ~umask, (rel, oct(mode))
