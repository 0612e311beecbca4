"""Reading a run: a run in which every row failed has no shards and reads as no samples."""

import json

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
