"""Sample keys that are safe as tar member names and as WebDataset keys.

WebDataset splits a member name at its first dot into key and extension, and a key with ``/`` or
``..`` could name a path outside the sample. So keys keep only ``[A-Za-z0-9_-]``; when cleaning
changed a given key, a short hash of the original is appended so two different ids never collide.

Keys are at most ``MAX_KEY`` characters: a tar (USTAR) member name holds 100 bytes, and the
longest member is ``KEY.caption.txt``; a longer id is cut and hashed like an unsafe one.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_KEY = 80  # + ".caption.txt" = 92 <= 100, the USTAR name field
_DIGEST = 10


def key_digest(text: str, n: int = _DIGEST) -> str:
    """A short hex digest: what keeps cleaned, cut and derived keys apart."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def safe_key(raw: str) -> str:
    """Clean a user-given key; identical input always gives the identical key."""
    cleaned = _UNSAFE.sub("_", raw).strip("_-")
    if cleaned == raw and 0 < len(cleaned) <= MAX_KEY:
        return cleaned
    stem = cleaned[: MAX_KEY - 1 - _DIGEST].rstrip("_-")
    return f"{stem or 'key'}-{key_digest(raw)}"


def derive_key(video: str, start: float | None, end: float | None) -> str:
    """A key for a row without one: the video's stem plus a hash of video and span."""
    stem = video.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip("_-")[:40] or "clip"
    span = f"{video}|{'' if start is None else repr(float(start))}|{'' if end is None else repr(float(end))}"
    return f"{stem}-{key_digest(span)}"
