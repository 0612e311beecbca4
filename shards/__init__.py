"""The WebDataset shard format of clipvip: writer, wids index and reader.

It knows samples (a key and named byte fields), not how they were made.
"""

from shards.format import FIELDS, Sample
from shards.index import ShardIndexError, load_index, shard_urls
from shards.members import ShortShardError
from shards.store import Store
from shards.writer import ShardSpec, write_shards

_READER = ("ClipShardDataset", "iter_samples")


def __getattr__(name: str):
    """The webdataset readers load on first use: webdataset imports torch (3 s, 300 MB), which
    the pipeline's workers, status and report never need."""
    if name in _READER:
        from shards import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'shards' has no attribute {name!r}")


__all__ = [
    "FIELDS",
    "ClipShardDataset",
    "Sample",
    "ShardIndexError",
    "ShardSpec",
    "ShortShardError",
    "Store",
    "iter_samples",
    "load_index",
    "shard_urls",
    "write_shards",
]
