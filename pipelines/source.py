"""Opening source videos given as local paths or fsspec URIs.

ffmpeg needs a seekable local file. Local paths are used in place; remote URIs (``s3://``,
``gs://``, ``https://``) are copied once into a small per-process cache, because consecutive rows
usually cut several clips from the same video (HD-VILA has ~30 clips per video).

A copy is bounded like every ffmpeg call is: by size (``max_bytes``; checked against the size the
store states before any byte moves, and again while copying, since an HTTP server may state none
or lie) and by a wall-clock deadline checked between chunks. Without them one hostile or huge
object in a bucket fills a worker's disk or holds it for hours. A read that blocks outright is
bounded by the filesystem's own socket timeouts (botocore's 60 s read timeout under s3fs,
aiohttp's under gcsfs and HTTP), so the deadline is reached at most one such timeout late.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import fsspec

from pipelines.config import PrepareConfig
from pipelines.errors import StageError

_CACHE: OrderedDict[str, str] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4
_CACHE_DIR: str | None = None
FETCH_CHUNK = 32 << 20  # bytes per read while copying a remote video (see _fetch)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _cache_dir() -> str:
    """This process's cache folder, ``clipvip-src-<pid>-*`` in the temp folder.

    It is removed at exit; a worker that an engine kills (Ray and Beam end their workers with a
    signal, so no ``atexit`` runs) leaves its copies behind, up to ``_CACHE_SIZE`` whole videos.
    So a new cache first removes the folders of processes that no longer run.
    """
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _sweep_dead_caches(tempfile.gettempdir())
        _CACHE_DIR = tempfile.mkdtemp(prefix=f"clipvip-src-{os.getpid()}-")
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return _CACHE_DIR


def _sweep_dead_caches(parent: str) -> None:
    """Remove ``clipvip-src-<pid>-*`` folders under ``parent`` whose process has ended."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name.removeprefix("clipvip-src-").partition("-")[0]
        if not name.startswith("clipvip-src-") or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a pid out of range
        return True
    return True


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
        rest = unquote(path[len(prefix) :]).replace("\\", "/")
        # after percent-decoding, as the HTTP client does (%2e%2e/ is ../ to it); and no fsspec
        # chain (``::``), which would open another filesystem behind the allowed address
        if not path.startswith(prefix) or "::" in path or {"..", "."} & set(rest.split("/")):
            raise StageError(f"address is outside the allowed input root {input_root}")
        return
    if not is_local(path):
        raise StageError(f"a remote address, outside the allowed input root {input_root}")
    try:
        real = Path(path.removeprefix("file://")).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL in the path
        raise StageError(f"cannot resolve the path: {exc}") from None
    root = Path(input_root.removeprefix("file://")).resolve()
    if real != root and root not in real.parents:
        raise StageError(f"path is outside the allowed input root {input_root}")


def local_path(uri: str, *, timeout_s: float | None = None, max_bytes: int = 0) -> str:
    """A local file holding the video at ``uri``; raises ``StageError`` when it is unreadable.

    A remote video is copied (once per process, see the module docstring) within ``timeout_s``
    seconds and ``max_bytes`` bytes (0: no cap); a copy that exceeds either fails the row and
    leaves nothing on disk.
    """
    if is_local(uri):
        path = uri.removeprefix("file://")
        if not os.path.exists(path):
            raise StageError(f"file not found: {path}")
        if not os.path.isfile(path):
            raise StageError(f"not a regular file: {path}")
        if os.path.getsize(path) == 0:
            raise StageError("empty file (0 bytes)")
        return path
    with _CACHE_LOCK:  # worker threads share this process's cache (Beam's multi_threading)
        if uri in _CACHE:
            _CACHE.move_to_end(uri)
            return _CACHE[uri]
    suffix = Path(uri.split("?", 1)[0]).suffix[:10]
    fd, dest = tempfile.mkstemp(suffix=suffix, dir=_cache_dir())
    os.close(fd)
    try:
        _fetch(uri, dest, timeout_s, max_bytes)
    except BaseException:
        os.unlink(dest)
        raise
    with _CACHE_LOCK:
        _CACHE[uri] = dest
        while len(_CACHE) > _CACHE_SIZE:
            _, old = _CACHE.popitem(last=False)
            Path(old).unlink(missing_ok=True)
    return dest


def video_file(uri: str, cfg: PrepareConfig) -> str:
    """``local_path`` of ``uri`` within the run's fetch bounds (``--fetch-timeout``,
    ``--fetch-max-mb``)."""
    return local_path(uri, timeout_s=cfg.fetch_timeout_s, max_bytes=cfg.fetch_max_mb << 20)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"  # the unit of --fetch-max-mb, as of --tool-memory-mb


def _is_dir(fs: Any, path: str) -> bool:
    """Whether ``path`` is a folder (asked only after an open failed, to name the reason)."""
    try:
        return bool(fs.isdir(path))
    except Exception:  # noqa: BLE001 - the open's own error is reported instead
        return False


def _fetch(uri: str, dest: str, timeout_s: float | None, max_bytes: int) -> None:
    """Copy ``uri`` to ``dest`` in ``FETCH_CHUNK`` reads, within the size cap and the deadline.

    32 MB reads copy about as fast as ``fs.get_file`` (a 200 MB object through s3fs from a
    loopback S3, interleaved: 1.76-2.00 s against 1.53-2.09 s); 8 MB reads took 2.5-2.9 s.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    over = f"over the cap of {_mb(max_bytes)} (--fetch-max-mb)" if max_bytes else ""
    copied = 0
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ValueError as exc:  # "Protocol not known: foo"
        raise StageError(f"cannot read {uri}: {exc}") from None
    except ImportError as exc:  # s3:// without s3fs installed
        raise StageError(f"cannot read {uri}: {exc}") from None
    except OSError as exc:  # a filesystem that connects when made (ftp://)
        raise StageError(f"cannot connect for {uri}: {exc}") from None
    try:
        # The size comes from the opened file: s3fs and HTTP ask the store for it on open
        # anyway, so a separate ``fs.info`` would cost one more request per video.
        with fs.open(path, "rb", block_size=FETCH_CHUNK) as src:
            stated = getattr(src, "size", None)
            stated = stated if isinstance(stated, int) else None
            if max_bytes and stated is not None and stated > max_bytes:
                raise StageError(f"remote video is {_mb(stated)}, {over}; not copied")
            with open(dest, "wb") as dst:
                while chunk := src.read(FETCH_CHUNK):
                    copied += len(chunk)
                    if max_bytes and copied > max_bytes:
                        raise StageError(
                            f"remote video grew past {_mb(max_bytes)} while copying (it stated "
                            f"{'no size' if stated is None else _mb(stated)}), {over}"
                        )
                    if deadline is not None and time.monotonic() > deadline:
                        raise StageError(
                            f"copying the remote video took longer than {timeout_s:g} s "
                            f"(--fetch-timeout) with {_mb(copied)} copied; stopped"
                        )
                    dst.write(chunk)
    except (FileNotFoundError, IsADirectoryError) as exc:
        # fsspec's HTTP store answers "not found" for a host it cannot reach too; the cause
        # tells them apart (a refused connection or an unknown name is an OSError, a 404 not).
        cause = exc.__cause__
        if isinstance(cause, OSError | TimeoutError) and not isinstance(cause, FileNotFoundError):
            raise StageError(f"cannot connect for {uri}: {cause}") from exc
        if _is_dir(fs, path):
            raise StageError(f"not a regular file: {uri}") from exc
        raise StageError(f"file not found: {uri}") from exc
    except OSError as exc:
        raise StageError(f"cannot copy {uri}: {exc}") from exc
    if copied == 0:
        # Object stores open a "folder" (a key prefix) as an empty object.
        if _is_dir(fs, path):
            raise StageError(f"not a regular file: {uri}")
        raise StageError("empty file (0 bytes)")
