"""``Store`` publishes every file whole under its final name, whatever the filesystem.

An object store (s3, gs, az) shows an object only once its upload completes, so one upload is
enough; a filesystem that shows a file while it is written (sftp, hdfs, smb) must get a hidden
temp name and a rename. The second kind is stood in for by a memory filesystem that records
which names were visible while each upload ran.
"""

from __future__ import annotations

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from shards.store import Store


class VisibleWhileWritingFS(MemoryFileSystem):
    """A memory filesystem under a protocol that is not an object store; each upload records
    the names under its folder that a reader could see while it ran."""

    protocol = "showsuploads"
    seen_during_upload: list[set[str]] = []

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace(f"{cls.protocol}://", "memory://", 1))

    def put_file(self, lpath, rpath, **kwargs):
        super().put_file(lpath, rpath, **kwargs)
        # the last moment of the upload: on sftp or hdfs, whatever name it wrote is readable
        self.seen_during_upload.append(set(self.ls(rpath.rsplit("/", 1)[0], detail=False)))


@pytest.fixture
def shows_uploads():
    fsspec.register_implementation("showsuploads", VisibleWhileWritingFS, clobber=True)
    VisibleWhileWritingFS.seen_during_upload.clear()
    yield VisibleWhileWritingFS
    VisibleWhileWritingFS.store.clear()
    VisibleWhileWritingFS.pseudo_dirs[:] = [""]


def test_a_filesystem_that_shows_uploads_gets_the_shard_under_a_temp_name_then_a_rename(
    shows_uploads, tmp_path
):
    store = Store("showsuploads://run")
    assert not store.object_store
    store.put_bytes("shards/keep.txt", b"already there")
    local = tmp_path / "x-000000.tar"
    local.write_bytes(b"tar bytes")

    store.put_file("shards/x-000000.tar", str(local))

    (during,) = shows_uploads.seen_during_upload
    assert not any(name.endswith("x-000000.tar") for name in during)  # never half-visible
    assert store.read_bytes("shards/x-000000.tar") == b"tar bytes"
    assert store.list("shards") == ["keep.txt", "x-000000.tar"]  # no temp left behind
    assert not local.exists()


def test_put_bytes_and_copy_on_such_a_filesystem_leave_only_final_names(shows_uploads):
    store = Store("showsuploads://run")
    store.put_bytes("stats/0.json", b"{}")
    store.copy("stats/0.json", "stats/1.json")
    assert store.list("stats") == ["0.json", "1.json"]
    assert store.read_bytes("stats/1.json") == b"{}"


def test_object_stores_and_memory_upload_straight_to_the_final_name():
    assert Store("s3://bucket/run").object_store
    assert Store("memory://store-test/run").object_store
    assert not Store(".").object_store  # local: os.replace, see publish


class NoClobberFS(VisibleWhileWritingFS):
    """Renames as SMB does through fsspec: never onto an existing name."""

    protocol = "noclobber"

    def mv(self, path1, path2, **kwargs):
        if self.exists(path2):
            raise FileExistsError(path2)
        return super().mv(path1, path2, **kwargs)


def test_rewriting_a_file_on_a_filesystem_that_renames_without_replacing_works(shows_uploads):
    """Reruns rewrite run.json, stats and retried shards: SMB refused every second write."""
    fsspec.register_implementation("noclobber", NoClobberFS, clobber=True)
    store = Store("noclobber://run")
    store.put_bytes("run.json", b"v1")
    store.put_bytes("run.json", b"v2")
    assert store.read_bytes("run.json") == b"v2"
    assert store.list("") == ["run.json"]
