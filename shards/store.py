"""Where a run's outputs live: a local folder or any fsspec URI (``s3://bucket/prefix``).

Everything is written whole and then made visible under its final name: locally a temp file
renamed with ``os.replace`` (``publish``); on object stores one upload (a PUT, or for a file
of 100 MiB and more with s3fs a multipart upload: either way the object appears only when it
completes); on other remote filesystems (sftp, hdfs, smb), where an upload is visible while it
runs, a hidden temp name then a rename. Readers therefore never see a partial shard or stats file.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

# Filesystems whose objects appear only once an upload completes (and "memory", whose writes
# are whole values): everything else gets a temp name and a rename.
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}


@functools.cache
def _umask() -> int:
    """This process's umask: from /proc where Linux shows it (reading it elsewhere means
    setting it, which another thread could see in between)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str, final: Path) -> None:
    """Rename the finished local file ``tmp`` to ``final``, readable and durable.

    Readable: a temp file is made private (0600) and a rename keeps that, so the shards and
    index of a run were unreadable to a trainer running as another user (or container UID);
    they get the mode a plainly created file gets. Durable: the bytes reach the disk before the
    name points at them, and the rename before whatever the caller writes next (a task's stats
    file says its shards exist; after a host crash they must).
    """
    os.chmod(tmp, 0o666 & ~_umask())
    _fsync(tmp)
    os.replace(tmp, final)
    _fsync(final.parent, os.O_RDONLY | os.O_DIRECTORY)


def absolute(location: str | os.PathLike) -> str:
    """``location`` as another process or node must read it: a local path absolute, with any
    ``file://`` dropped (a worker, a resume or an ``evaluate`` may run in another working
    folder); a URI as given, less a trailing slash."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        return text.rstrip("/")
    return os.path.abspath(text.removeprefix("file://"))


class Store:
    """A run directory addressed by relative paths (``shards/x-000000.tar``, ``stats/3.json``).

    Opening one creates nothing: each write makes the folders it needs. Readers (``status``,
    ``train``, ``report``) open a store too, and a typo in their path must not leave a new empty
    folder behind that a second try then takes for a run.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self.local = isinstance(self.fs, LocalFileSystem)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.object_store = bool(OBJECT_STORES & set(protocols))

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` (what fsspec calls it; a plain path when local)."""
        return f"{self._base}/{rel}" if rel else self._base

    def url(self, rel: str) -> str:
        """A URI that other tools (webdataset, fsspec) open."""
        if self.local:
            return self.path(rel)
        return f"{self.root}/{rel}"

    def _fresh(self, p: str) -> str:
        """``p``, with what this process remembers of it forgotten.

        fsspec's object-store filesystems cache folder listings (and the sizes in them) for the
        life of the process, while other processes (Beam and Ray workers, a second run) write
        the same run: a driver that listed ``stats/`` at plan time then missed the stats its
        workers wrote, and called a finished run incomplete. Reads here are few and each is a
        request anyway, so they always ask the store.
        """
        if not self.local:
            self.fs.invalidate_cache(p)
        return p

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._fresh(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self._fresh(self.path(rel)), "rb") as f:
            return f.read()

    def open(self, rel: str) -> IO[bytes]:
        """``rel`` for streaming reads (a shard of a gigabyte need not sit in memory whole)."""
        return self.fs.open(self._fresh(self.path(rel)), "rb")

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        """Several small files at once: on object storage fsspec fetches them concurrently, which
        turns the end-of-run merge of 100k task files from an hour of GETs into minutes."""
        if not rels:
            return {}
        paths = {self._fresh(self.path(r)): r for r in rels}
        got = self.fs.cat(list(paths), on_error="raise")  # a list in: a dict out
        return {paths[p]: data for p, data in got.items()}

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def list(self, rel: str) -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        p = self._fresh(self.path(rel))
        if not self.fs.exists(p):
            return []
        return sorted(os.path.basename(x.rstrip("/")) for x in self.fs.ls(p, detail=False))

    def remove_partial_writes(self, rel: str = "") -> None:
        """Remove the hidden ``.NAME.*.tmp`` files that ``put_bytes`` (and a renamed upload)
        leave directly under ``rel`` when killed before their rename. Only while no writer
        can be at work there (a driver holding the run's lock, before its tasks start)."""
        for name in self.list(rel):
            if name.startswith(".") and name.endswith(".tmp"):
                self.remove(f"{rel}/{name}" if rel else name)

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` so that ``rel`` appears complete or not at all."""
        if self.local:
            final = Path(self.path(rel))
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                publish(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        elif self.object_store:
            self.fs.pipe_file(self.path(rel), data)
        else:
            self._renamed(rel, lambda tmp: self.fs.pipe_file(tmp, data))

    def _renamed(self, rel: str, write) -> None:
        """Write ``rel`` on a remote filesystem that shows uploads as they run: ``write`` to a
        hidden name beside it, then rename.

        A rename onto an existing name is refused by SMB (fsspec renames without replace) and
        is a silent no-op on HDFS (its RENAME answers false), while reruns rewrite run.json,
        stats and retried shards: so an existing ``rel`` is removed first (for that moment it
        is absent, never partial) and the rename is checked. The temp name is unique per
        writer (pods in different containers share pids)."""
        final = self.path(rel)
        head, _, name = final.rpartition("/")
        tmp = f"{head}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            write(tmp)
            if self.fs.exists(final):
                self.fs.rm(final)
            self.fs.mv(tmp, final)
            self.fs.invalidate_cache(head)
            if self.fs.exists(tmp) or not self.fs.exists(final):
                raise OSError(f"renaming {tmp} to {final} did not take effect")
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def put_file(self, rel: str, local_path: str) -> None:
        """Move a finished local file to ``rel`` atomically (rename locally, one upload to an
        object store, upload then rename elsewhere)."""
        if self.local:
            final = Path(self.path(rel))
            final.parent.mkdir(parents=True, exist_ok=True)
            publish(local_path, final)
            return
        if self.object_store:
            self.fs.put_file(local_path, self.path(rel))
        else:
            self._renamed(rel, lambda tmp: self.fs.put_file(local_path, tmp))
        os.unlink(local_path)

    def copy(self, src: str, dst: str) -> None:
        """A second name for ``src`` that later writes to ``src`` do not change: a hard link
        locally (no bytes copied; ``put_file`` replaces, never rewrites, a file), a server-side
        copy on object storage. ``dst`` appears whole or not at all."""
        if self.local:
            final = Path(self.path(dst))
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.link")
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.path(src), tmp)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(self.path(src), tmp)
            publish(str(tmp), final)
        elif self.object_store:
            self.fs.copy(self.path(src), self.path(dst))
        else:
            self._renamed(dst, lambda tmp: self.fs.copy(self.path(src), tmp))

    def scratch_dir(self) -> str:
        """A local folder for files on their way to this store (same filesystem when local)."""
        if self.local:
            d = Path(self.path("_tmp"))
            d.mkdir(parents=True, exist_ok=True)
            return str(d)
        return tempfile.gettempdir()

    def remove(self, rel: str) -> None:
        p = self.path(rel)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)
