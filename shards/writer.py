"""Deterministic, atomic WebDataset tar writing.

The same samples always give byte-identical tars: members sorted within a sample, mtime 0, owner
root, mode 0644, USTAR headers. A shard is written to a scratch file and appears under its final
name in one step (``Store.put_file``), so a crash never leaves a half tar under a real name.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from shards.format import Sample
from shards.store import Store


@dataclass(slots=True, frozen=True)
class ShardSpec:
    """How one unit of work names and caps its shards.

    Unit ``task`` writes ``shards/{name}-{task:06d}.tar``; when the tar file would grow past
    ``max_bytes`` (headers and padding counted) the unit continues in ``{name}-{task:06d}-1.tar``,
    ``-2`` ... so names stay deterministic. Only a part holding a single sample larger than the
    cap exceeds it.
    """

    name: str
    task: int
    max_bytes: int = 1_000_000_000

    def rel_path(self, part: int) -> str:
        suffix = f"-{part}" if part else ""
        return f"shards/{self.name}-{self.task:06d}{suffix}.tar"


@dataclass(slots=True, frozen=True)
class ShardInfo:
    url: str  # relative to the run directory
    nsamples: int
    nbytes: int


def tar_size(sample: Sample) -> int:
    """Bytes ``sample`` takes in a tar: a 512-byte header per member, data padded to 512."""
    return sum(
        tarfile.BLOCKSIZE + -(-len(v) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        for v in sample.fields.values()
    )


def _file_size(member_bytes: int) -> int:
    """A tar's size on disk once closed: two zero blocks end it, then padding to a record."""
    closed = member_bytes + 2 * tarfile.BLOCKSIZE
    return -(-closed // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _member(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class _Part:
    def __init__(self, scratch: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix=".shard.", suffix=".tar.tmp", dir=scratch)
        self.file = os.fdopen(fd, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - open across add() calls
        self.nsamples = 0
        self.nbytes = 0

    def add(self, sample: Sample) -> None:
        for ext in sorted(sample.fields):
            data = sample.fields[ext]
            self.tar.addfile(_member(f"{sample.key}.{ext}", data), io.BytesIO(data))
        self.nsamples += 1
        self.nbytes += tar_size(sample)

    def close(self) -> None:
        self.tar.close()
        self.file.close()


def write_shards(samples: Iterable[Sample], store: Store, spec: ShardSpec) -> list[ShardInfo]:
    """Write ``samples`` in order as one or more tars; return what was written.

    A unit with no samples writes no tar. Any previous tar of the same name is replaced, which is
    what makes re-running an unfinished unit safe.
    """
    scratch = store.scratch_dir()
    written: list[ShardInfo] = []
    part: _Part | None = None
    index = 0

    def finish(p: _Part) -> None:
        p.close()
        rel = spec.rel_path(index)
        size = os.path.getsize(p.path)
        store.put_file(rel, p.path)
        written.append(ShardInfo(url=rel, nsamples=p.nsamples, nbytes=size))

    try:
        for sample in samples:
            if (
                part is not None
                and part.nsamples
                and _file_size(part.nbytes + tar_size(sample)) > spec.max_bytes
            ):
                finish(part)
                part = None
                index += 1
            if part is None:
                part = _Part(scratch)
            part.add(sample)
        if part is not None:
            finish(part)
            part = None
    finally:
        if part is not None:
            part.close()
            os.unlink(part.path)
    return written
