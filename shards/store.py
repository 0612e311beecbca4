"""Where a run's outputs live: a local folder or any fsspec URI (``s3://bucket/prefix``).

Everything is written whole and then made visible under its final name: locally a temp file
renamed with ``os.replace``; on object stores a single PUT (an object never appears half
written). Readers therefore never see a partial shard or stats file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem


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

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` (what fsspec calls it; a plain path when local)."""
        return f"{self._base}/{rel}" if rel else self._base

    def url(self, rel: str) -> str:
        """A URI that other tools (webdataset, fsspec) open."""
        if self.local:
            return self.path(rel)
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            return f.read()

    def open(self, rel: str) -> IO[bytes]:
        """``rel`` for streaming reads (a shard of a gigabyte need not sit in memory whole)."""
        return self.fs.open(self.path(rel), "rb")

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        """Several small files at once: on object storage fsspec fetches them concurrently, which
        turns the end-of-run merge of 100k task files from an hour of GETs into minutes."""
        if not rels:
            return {}
        paths = {self.path(r): r for r in rels}
        got = self.fs.cat(list(paths), on_error="raise")  # a list in: a dict out
        return {paths[p]: data for p, data in got.items()}

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def list(self, rel: str) -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        p = self.path(rel)
        if not self.fs.exists(p):
            return []
        return sorted(os.path.basename(x.rstrip("/")) for x in self.fs.ls(p, detail=False))

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` so that ``rel`` appears complete or not at all."""
        if self.local:
            final = Path(self.path(rel))
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            self.fs.pipe_file(self.path(rel), data)

    def put_file(self, rel: str, local_path: str) -> None:
        """Move a finished local file to ``rel`` atomically (rename locally, one upload remotely)."""
        if self.local:
            final = Path(self.path(rel))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local_path, final)
        else:
            self.fs.put_file(local_path, self.path(rel))
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
            os.replace(tmp, final)
        else:
            self.fs.copy(self.path(src), self.path(dst))

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
