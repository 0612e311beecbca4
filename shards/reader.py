"""Reading clipvip shards with the plain ``webdataset`` library.

``iter_samples`` is for scripts and analysis; ``ClipShardDataset`` is the torch
``IterableDataset`` the trainer streams, split across nodes (ranks) and data-loader workers so
that every shard is read by exactly one reader per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fsspec
import torch.utils.data
import webdataset as wds
from webdataset.gopen import gopen_schemes

from shards.index import shard_list
from shards.members import Decoded, checked_counts, decode_raw

OBJECT_STORES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2")


def _gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any):
    """Let plain webdataset stream shards from object storage through fsspec (same credentials)."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs.open(path, mode, block_size=max(bufsize, 8 * 1024 * 1024))


for _scheme in OBJECT_STORES:  # replacing webdataset's own gs opener, which runs `gsutil cat`
    gopen_schemes[_scheme] = _gopen_fsspec


def iter_samples(source: str | Sequence[str]) -> Iterator[Decoded]:
    """Every sample of a run folder (or tar list) in shard order: ``key``, ``txt``,
    ``caption.txt``, ``json`` (dict), ``jpg`` and ``mp4`` (bytes).

    A run in which every row failed has an empty shard list; it yields no samples (webdataset
    itself cannot be built over no shards: it indexes the first URL).
    """
    urls, counts = shard_list(source)
    if not urls:
        return
    # every shard, whatever RANK/WORLD_SIZE or loader worker it runs in: this reads a whole run
    samples = wds.WebDataset(
        urls, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None
    )
    for sample in checked_counts(counts)(iter(samples)):
        yield decode_raw(sample)


class ClipShardDataset(torch.utils.data.IterableDataset):
    """Streams decoded samples, each shard to one (node, worker); ``transform`` maps a sample.

    ``shuffle`` > 0 shuffles shards and keeps a sample buffer of that size (training); 0 keeps
    the order (evaluation). ``split_by_node`` uses the torch.distributed rank when initialised.
    """

    def __init__(
        self,
        source: str | Sequence[str],
        transform: Callable[[Decoded], Any] | None = None,
        shuffle: int = 0,
        split_by_node: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.urls, self.counts = shard_list(source)
        self.transform = transform
        self.shuffle = shuffle
        self.split_by_node = split_by_node
        self.seed = seed

    def pipeline(self) -> wds.DataPipeline:
        # SimpleShardList shuffles whenever it has a seed: none keeps the index's order
        order_seed = self.seed if self.shuffle else None
        stages: list[Any] = [wds.SimpleShardList(self.urls, seed=order_seed)]
        if self.shuffle:
            stages.append(wds.shuffle(len(self.urls), seed=self.seed))
        if self.split_by_node:
            stages.append(wds.split_by_node)
        stages += [wds.split_by_worker, wds.tarfile_to_samples(), checked_counts(self.counts)]
        stages.append(wds.map(decode_raw))
        if self.shuffle:
            stages.append(wds.shuffle(self.shuffle, seed=self.seed))
        if self.transform is not None:
            stages.append(wds.map(self.transform))
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[Any]:
        if not self.urls:  # a run with no shards: no samples (webdataset fails on an empty list)
            return iter(())
        return iter(self.pipeline())
