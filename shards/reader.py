"""Reading clipvip shards with the plain ``webdataset`` library.

``iter_samples`` is for scripts and analysis; ``ClipShardDataset`` is the torch
``IterableDataset`` the trainer streams, split across nodes (ranks) and data-loader workers so
that every shard is read by exactly one reader per epoch.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fsspec
import torch.utils.data
import webdataset as wds
from webdataset.gopen import gopen_schemes

from shards.format import FIELDS
from shards.index import shard_list

Decoded = dict[str, Any]
# Members every sample of a run has (``prepare`` writes them even when empty); the caption is
# absent under --captioner none. Sorted order is write order, so a cut tar's last sample lacks
# at least its .txt.
REQUIRED = tuple(f for f in FIELDS if f != "caption.txt")
OBJECT_STORES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2")


def _gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any):
    """Let plain webdataset stream shards from object storage through fsspec (same credentials)."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs.open(path, mode, block_size=max(bufsize, 8 * 1024 * 1024))


for _scheme in OBJECT_STORES:  # replacing webdataset's own gs opener, which runs `gsutil cat`
    gopen_schemes[_scheme] = _gopen_fsspec


class ShortShardError(ValueError):
    """A shard ended before the number of samples its index entry states."""


def checked_counts(expected: dict[str, int]) -> Callable[[Iterator[dict]], Iterator[dict]]:
    """A pipeline stage that passes raw samples on and stops on a shard that ends early: fewer
    samples than ``expected`` (a run's index), or a last sample without all of its members.

    Python's tar reader takes a tar cut between two members for a shorter whole one: without
    this, a shard truncated by a failed copy silently trains (or scores) on part of the data.
    A shard is read whole by one worker, so the count is complete when its samples stop.
    """

    def stage(samples: Iterator[dict]) -> Iterator[dict]:
        url, n = None, 0
        for sample in samples:
            if sample.get("__url__") != url:
                _check(url, n, expected)
                url, n = sample.get("__url__"), 0
            n += 1
            lost = [f".{f}" for f in REQUIRED if f not in sample]
            if lost and url in expected:  # the cut fell inside this sample's members
                raise ShortShardError(
                    f"{url} was cut short inside sample {sample.get('__key__')} (no "
                    f"{', '.join(lost)}): copy it again, or rerun `clipvip prepare` without it"
                )
            yield sample
        _check(url, n, expected)

    return stage


def _check(url: str | None, n: int, expected: dict[str, int]) -> None:
    want = expected.get(url) if url is not None else None
    if want is not None and n < want:
        raise ShortShardError(
            f"{url} ended after {n} of the {want} samples index.json lists: the tar was cut "
            "short (a failed copy?); copy it again, or rerun `clipvip prepare` without it"
        )


def _decode(sample: dict[str, Any]) -> Decoded:
    """Raw webdataset sample -> python values; images and clips stay bytes (decode where used)."""
    out: Decoded = {"key": sample["__key__"], "url": sample.get("__url__")}
    for ext, value in sample.items():
        if ext.startswith("__"):
            continue
        if ext == "json":
            out["json"] = json.loads(value)
        elif ext.endswith("txt"):
            out[ext] = value.decode("utf-8")
        else:
            out[ext] = value
    return out


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
        yield _decode(sample)


def _skip_clips(position: int, ext: str) -> bool:
    return ext != "mp4"


def _tar_members(url: str) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """``(name, read)`` for each file in the tar at ``url``; ``read()`` fetches that member's
    bytes. Opened seekable (``"r:"``, not the streaming ``"r|"``), a member nobody reads is
    skipped by a seek: locally its bytes never leave the disk; on object storage fsspec reads
    ahead a block at most."""
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for member in tar:
                    if member.isfile():
                        yield member.name, lambda m=member: _read(tar, m, url)
        except tarfile.ReadError as exc:
            raise _not_whole(url, exc) from None


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, url: str) -> bytes:
    """A member's bytes; a tar cut inside them is the same ``ShortShardError`` as one cut
    between members (the caller reads lazily, outside the loop that catches that)."""
    try:
        data = tar.extractfile(member).read()
    except tarfile.ReadError as exc:
        raise _not_whole(url, exc) from None
    if len(data) != member.size:
        raise _not_whole(url, f"{member.name} holds {len(data)} of {member.size} bytes")
    return data


def _not_whole(url: str, why: object) -> ShortShardError:
    return ShortShardError(
        f"{url} is not a whole tar ({why}): copy it again, or rerun `clipvip prepare` without it"
    )


# webdataset's own split of a member name: the key runs to the first dot of the base name
# (a folder prefix such as ``./`` belongs to the key), the rest is the field, lowercased
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _raw_members(urls: Sequence[str], wanted: Callable[[int, str], bool]) -> Iterator[dict]:
    """Raw samples as webdataset groups them (``__key__``, ``__url__``, one entry per member);
    a member ``wanted`` refuses is present with the value None, so ``checked_counts`` still
    sees that the sample had it."""
    position = 0
    for url in urls:
        sample: dict | None = None
        for name, read in _tar_members(url):
            match = _MEMBER.match(name)
            if match is None:  # no field extension: webdataset skips such members too
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                    position += 1
                sample = {"__key__": key, "__url__": url}
            sample[ext] = read() if wanted(position, ext) else None
        if sample is not None:
            yield sample
            position += 1


def iter_metadata(
    source: str | Sequence[str], wanted: Callable[[int, str], bool] = _skip_clips
) -> Iterator[Decoded]:
    """The samples of ``source`` as ``iter_samples`` gives them, with only the members that
    ``wanted(position, ext)`` accepts read: by default everything but the ``.mp4`` clips,
    which are nearly all of a shard's bytes and which a summary of the corpus never looks at.
    ``position`` counts samples across all shards in order from 0, so a caller can keep the
    frames (``jpg``) of a few chosen samples only. A refused member is absent from the
    sample; a shard cut short raises ``ShortShardError`` as with ``iter_samples``."""
    urls, counts = shard_list(source)
    for raw in checked_counts(counts)(_raw_members(urls, wanted)):
        yield _decode({k: v for k, v in raw.items() if v is not None})


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
        stages.append(wds.map(_decode))
        if self.shuffle:
            stages.append(wds.shuffle(self.shuffle, seed=self.seed))
        if self.transform is not None:
            stages.append(wds.map(self.transform))
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[Any]:
        if not self.urls:  # a run with no shards: no samples (webdataset fails on an empty list)
            return iter(())
        return iter(self.pipeline())
