"""Reading back the exact bytes of samples that ``write_shards`` put in a tar.

``prepare --retry-failed`` redoes only a task's failed rows; the rows an earlier attempt wrote
are copied from its tars member for member, with no decode and no re-encode, so they are the
same bytes and cost a read instead of a cut, a frame decode and a caption.
"""

from __future__ import annotations

import tarfile
from collections.abc import Container, Iterator
from typing import IO

from shards.format import Sample

# ``write_shards`` writes a sample's members in sorted field order, so ``txt`` comes last in
# every sample (after caption.txt, jpg, json, mp4): a sample that has these is complete, and one
# cut short by a damaged tar lacks at least ``txt``.
REQUIRED_FIELDS = frozenset({"jpg", "json", "mp4", "txt"})


def read_samples(fileobj: IO[bytes], keys: Container[str]) -> Iterator[Sample]:
    """The complete samples of ``keys`` in the tar ``fileobj``, in tar order, bytes as stored.

    A damaged tar (truncated, garbage) yields the complete samples before the damage and stops
    there, quietly: a sample that cannot be read back is simply not carried and is made again.
    """
    key: str | None = None
    fields: dict[str, bytes] = {}

    def complete() -> Sample | None:
        if key is not None and key in keys and fields.keys() >= REQUIRED_FIELDS:
            return Sample(key, dict(fields))
        return None

    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name, _, ext = member.name.partition(".")
                if name != key:
                    if (done := complete()) is not None:
                        yield done
                    key, fields = name, {}
                if name in keys:
                    f = tar.extractfile(member)
                    fields[ext] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return  # the damaged rest, the sample it cut included, is left out
    if (done := complete()) is not None:
        yield done
