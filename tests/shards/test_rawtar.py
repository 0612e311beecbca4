"""Reading samples back from a tar, bytes as written: what a --retry-failed task carries."""

import io

from shards import ShardSpec, Store, write_shards
from shards.rawtar import read_samples

from .test_writer import _samples


def _tar(tmp_path, samples) -> bytes:
    store = Store(str(tmp_path))
    (info,) = write_shards(samples, store, ShardSpec("x", 0))
    return (tmp_path / info.url).read_bytes()


def test_the_asked_samples_come_back_with_their_exact_bytes(tmp_path):
    samples = _samples(4)
    data = _tar(tmp_path, samples)
    got = list(read_samples(io.BytesIO(data), {"clip_001", "clip_003"}))
    assert got == [samples[1], samples[3]]


def test_a_tar_cut_anywhere_gives_only_complete_samples_before_the_cut(tmp_path):
    """Cut at every 100th byte (inside headers, inside data, between samples, inside the
    end-of-archive blocks): what comes back is always a prefix of the samples, each whole."""
    samples = _samples(3)
    data = _tar(tmp_path, samples)
    keys = {s.key for s in samples}
    seen_lengths = set()
    for cut in range(0, len(data) + 1, 100):
        got = list(read_samples(io.BytesIO(data[:cut]), keys))
        assert got == samples[: len(got)], f"cut at {cut}"
        seen_lengths.add(len(got))
    assert seen_lengths == {0, 1, 2, 3}


def test_garbage_is_no_sample_and_no_error():
    assert list(read_samples(io.BytesIO(b"not a tar at all" * 100), {"clip_000"})) == []
