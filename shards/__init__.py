"""The WebDataset shard format of clipvip: writer, wids index and reader.

It knows samples (a key and named byte fields), not how they were made.
"""

from shards.format import FIELDS, Sample
from shards.index import ShardIndexError, load_index, shard_urls
from shards.reader import ClipShardDataset, ShortShardError, iter_samples
from shards.store import Store
from shards.writer import ShardSpec, write_shards

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
