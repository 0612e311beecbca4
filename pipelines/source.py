"""Opening source videos given as local paths or fsspec URIs.

ffmpeg needs a seekable local file. Local paths are used in place; remote URIs (``s3://``,
``gs://``, ``https://``) are copied once into a small per-process cache, because consecutive rows
usually cut several clips from the same video (HD-VILA has ~30 clips per video).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import fsspec

from pipelines.stages.base import StageError

_CACHE: OrderedDict[str, str] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_DIR: str | None = None


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _cache_dir() -> str:
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _CACHE_DIR = tempfile.mkdtemp(prefix="clipvip-src-")
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return _CACHE_DIR


def check_allowed(path: str, input_root: str | None) -> None:
    """Refuse a video outside ``input_root`` (local paths after resolving ``..`` and links).

    A local root admits no remote address (a hostile row could otherwise send the worker to any
    URL); a root that is itself an address (``s3://bucket/videos``) admits the addresses under it,
    none with a ``..`` segment.
    """
    if input_root is None:
        return
    if not is_local(input_root):
        prefix = input_root.rstrip("/") + "/"
        if not path.startswith(prefix) or ".." in path[len(prefix) :].split("/"):
            raise StageError(f"address is outside the allowed input root {input_root}")
        return
    if not is_local(path):
        raise StageError(f"a remote address, outside the allowed input root {input_root}")
    real = Path(path.removeprefix("file://")).resolve()
    root = Path(input_root).resolve()
    if real != root and root not in real.parents:
        raise StageError(f"path is outside the allowed input root {input_root}")


def local_path(uri: str) -> str:
    """A local file holding the video at ``uri``; raises ``StageError`` when it is unreadable."""
    if is_local(uri):
        path = uri.removeprefix("file://")
        if not os.path.exists(path):
            raise StageError(f"file not found: {path}")
        if not os.path.isfile(path):
            raise StageError(f"not a regular file: {path}")
        if os.path.getsize(path) == 0:
            raise StageError("empty file (0 bytes)")
        return path
    if uri in _CACHE:
        _CACHE.move_to_end(uri)
        return _CACHE[uri]
    suffix = Path(uri.split("?", 1)[0]).suffix[:10]
    fd, dest = tempfile.mkstemp(suffix=suffix, dir=_cache_dir())
    os.close(fd)
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        fs.get_file(path, dest)
    except FileNotFoundError as exc:
        os.unlink(dest)
        raise StageError(f"file not found: {uri}") from exc
    except OSError as exc:
        os.unlink(dest)
        raise StageError(f"cannot read {uri}: {exc}") from exc
    if os.path.getsize(dest) == 0:
        os.unlink(dest)
        raise StageError("empty file (0 bytes)")
    _CACHE[uri] = dest
    while len(_CACHE) > _CACHE_SIZE:
        _, old = _CACHE.popitem(last=False)
        Path(old).unlink(missing_ok=True)
    return dest
