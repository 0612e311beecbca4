"""What one sample of a clipvip shard holds.

``KEY.mp4`` the clip, ``KEY.jpg`` its middle frame, ``KEY.txt`` the source text (UTF-8),
``KEY.caption.txt`` the auxiliary caption (absent with ``--captioner none``), ``KEY.json`` the
metadata. Keys contain no dots: WebDataset splits a member name at its first dot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELDS = ("caption.txt", "jpg", "json", "mp4", "txt")
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_MEMBER_NAME = 100  # bytes of a USTAR header's name field; the names here have no "/"


@dataclass(slots=True, frozen=True)
class Sample:
    """A key and its fields (extension -> bytes); members are written in sorted field order."""

    key: str
    fields: dict[str, bytes]

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"unsafe sample key {self.key!r}: only [A-Za-z0-9_-] may appear")
        for ext in self.fields:
            if "/" in ext or ext.startswith(".") or not ext:
                raise ValueError(f"unsafe field name {ext!r} for sample {self.key!r}")
            if len(f"{self.key}.{ext}".encode()) > MAX_MEMBER_NAME:
                raise ValueError(
                    f"sample key {self.key!r} too long: {self.key}.{ext} exceeds the "
                    f"{MAX_MEMBER_NAME}-byte tar member name"
                )

    @property
    def nbytes(self) -> int:
        return sum(len(v) for v in self.fields.values())
