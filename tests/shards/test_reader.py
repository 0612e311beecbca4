"""Reading a run: a run in which every row failed has no shards and reads as no samples."""

import json
from pathlib import Path

from shards import ClipShardDataset, ShardSpec, Store, iter_samples, write_shards
from shards.index import make_index


def _empty_run(root) -> str:
    """What `clipvip prepare` leaves when every row failed: index.json with no shards."""
    store = Store(str(root))
    infos = write_shards([], store, ShardSpec("x", 0))
    shards = [{"url": i.url, "nsamples": i.nsamples} for i in infos]
    store.put_bytes("index.json", json.dumps(make_index(shards, "x")).encode())
    return str(root)


def test_a_run_without_shards_yields_no_samples(tmp_path):
    run = _empty_run(tmp_path)
    assert json.loads((tmp_path / "index.json").read_text())["shardlist"] == []
    assert list(iter_samples(run)) == []
    assert list(iter_samples([])) == []


def test_the_torch_dataset_of_a_run_without_shards_is_empty(tmp_path):
    run = _empty_run(tmp_path)
    assert list(ClipShardDataset(run, split_by_node=False)) == []
    assert list(ClipShardDataset(run, shuffle=8, split_by_node=False)) == []


def _run_of(root, n: int) -> tuple[str, str]:
    """A run folder with one shard of ``n`` samples; (run, the shard's path)."""
    from shards import Sample

    store = Store(str(root))
    samples = [
        Sample(f"k{i}", {"jpg": b"j", "json": b"{}", "mp4": b"m" * 600, "txt": b"t"})
        for i in range(n)
    ]
    infos = write_shards(samples, store, ShardSpec("x", n))
    shards = [{"url": i.url, "nsamples": i.nsamples} for i in infos]
    store.put_bytes("index.json", json.dumps(make_index(shards, "x")).encode())
    return str(root), store.url(infos[0].url)


def test_a_shard_cut_at_a_member_boundary_stops_the_reader_naming_it(tmp_path):
    """A tar cut between two samples reads, to Python's tar reader, as a shorter whole tar."""
    import tarfile

    import pytest

    from shards import ShortShardError

    run, shard = _run_of(tmp_path, 3)
    with tarfile.open(shard) as tar:
        third = [m for m in tar.getmembers() if m.name.startswith("k2.")][0]
    path = Path(shard)
    path.write_bytes(path.read_bytes()[: third.offset])  # samples k0 and k1 whole, k2 gone
    with pytest.raises(ShortShardError, match=r"x-\d+\.tar ended after 2 of the 3 samples"):
        list(iter_samples(run))
    with pytest.raises(ShortShardError, match="ended after 2 of the 3"):
        list(ClipShardDataset(run, split_by_node=False))


def test_a_list_of_tars_states_no_counts_and_reads_as_it_is(tmp_path):
    run, shard = _run_of(tmp_path, 3)
    assert [s["key"] for s in iter_samples([shard])] == ["k0", "k1", "k2"]
    assert [s["key"] for s in iter_samples(run)] == ["k0", "k1", "k2"]


def test_without_a_shuffle_buffer_the_shards_are_read_in_index_order(tmp_path):
    """shuffle=0 is evaluation's setting: webdataset's shard list shuffles whenever it is given
    a seed, so the reader must give it none."""
    from shards import Sample

    store = Store(str(tmp_path))
    shards = []
    for task in range(11):
        sample = Sample(f"k{task:02d}", {"jpg": b"j", "json": b"{}", "mp4": b"m", "txt": b"t"})
        for info in write_shards([sample], store, ShardSpec("x", task)):
            shards.append({"url": info.url, "nsamples": info.nsamples})
    store.put_bytes("index.json", json.dumps(make_index(shards, "x")).encode())
    in_order = [f"k{task:02d}" for task in range(11)]
    for seed in (0, 1, 7):
        read = ClipShardDataset(str(tmp_path), split_by_node=False, seed=seed)
        assert [s["key"] for s in read] == in_order
    shuffled = ClipShardDataset(str(tmp_path), shuffle=4, split_by_node=False, seed=1)
    keys = [s["key"] for s in shuffled]
    assert sorted(keys) == in_order and keys != in_order


def test_object_store_shards_open_through_fsspec_gs_included():
    """webdataset maps gs:// to `gsutil cat`, which the images do not have; fsspec reads
    every object store with the credentials the rest of the run uses."""
    from webdataset.gopen import gopen_schemes

    from shards import reader

    for scheme in ("gs", "gcs", "s3", "az"):
        assert gopen_schemes[scheme] is reader._gopen_fsspec, scheme


def test_iter_samples_reads_every_shard_under_torchrun_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run, _ = _run_of(tmp_path, 3)
    assert [s["key"] for s in iter_samples(run)] == ["k0", "k1", "k2"]


def test_the_metadata_reader_keys_a_repacked_shard_as_webdataset_does(tmp_path):
    """``tar -C dir -cf x.tar .`` names members ``./k0.jpg``: webdataset keys them ``./k0``,
    and so must the report's metadata pass (it took the key as empty and refused the run)."""
    import subprocess
    import tarfile

    from shards.members import iter_metadata

    run, shard = _run_of(tmp_path / "run", 3)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(shard) as tar:
        tar.extractall(unpacked, filter="data")
    subprocess.run(["tar", "-C", str(unpacked), "-cf", shard, "--sort=name", "."], check=True)
    full = {s["key"]: sorted(set(s) - {"key", "url"}) for s in iter_samples(run)}
    meta = {s["key"]: sorted(set(s) - {"key", "url"}) for s in iter_metadata(run)}
    assert sorted(full) == sorted(meta) == ["./k0", "./k1", "./k2"]
    assert all(meta[k] == [f for f in full[k] if f != "mp4"] for k in full)


def test_the_metadata_reader_names_a_shard_cut_inside_a_member_it_reads(tmp_path):
    import tarfile

    import pytest

    from shards import ShortShardError
    from shards.members import iter_metadata

    run, shard = _run_of(tmp_path, 3)
    with tarfile.open(shard) as tar:
        json_member = [m for m in tar.getmembers() if m.name == "k1.json"][0]
    path = Path(shard)
    # cut inside k1.json's data (its 512-byte data block follows the header)
    path.write_bytes(path.read_bytes()[: json_member.offset_data + 1])
    with pytest.raises(ShortShardError, match="is not a whole tar"):
        list(iter_metadata(run))
