"""A shard's members read with plain ``tarfile``: the count checks every reader applies, and
the metadata pass of reports and status.

No webdataset and no torch here (importing webdataset imports torch: 3 s and 300 MB per
process), so the pipeline's workers and ``clipvip report`` stay light; ``shards.reader`` builds
the streaming readers on top.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fsspec

from shards.format import FIELDS
from shards.index import shard_list

Decoded = dict[str, Any]
# Members every sample of a run has (``prepare`` writes them even when empty); the caption is
# absent under --captioner none. Sorted order is write order, so a cut tar's last sample lacks
# at least its .txt.
REQUIRED = tuple(f for f in FIELDS if f != "caption.txt")


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


def decode_raw(sample: dict[str, Any]) -> Decoded:
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
        yield decode_raw({k: v for k, v in raw.items() if v is not None})
