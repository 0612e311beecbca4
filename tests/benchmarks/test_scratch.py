"""A benchmark keeps the folder the user named and removes the temporary one it made."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scratch import scratch_folder


def test_a_temporary_scratch_folder_is_removed_even_when_the_benchmark_fails():
    seen: list[Path] = []
    with pytest.raises(RuntimeError), scratch_folder(None, "clipvip-test-scratch-") as folder:
        seen.append(folder)
        (folder / "weights.bin").write_bytes(b"0" * 1024)
        raise RuntimeError("benchmark broke")
    assert seen and not seen[0].exists()


def test_a_named_scratch_folder_is_created_and_kept(tmp_path):
    named = tmp_path / "keep" / "here"
    with scratch_folder(str(named), "unused-") as folder:
        (folder / "benchmark.json").write_text("{}")
    assert folder == named and (named / "benchmark.json").read_text() == "{}"
