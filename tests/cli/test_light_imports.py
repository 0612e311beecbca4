"""Every clipvip command and every pipeline worker starts without importing torch.

torch costs a process about 3 s of CPU and 300 MB before it does anything; the CLI parses
arguments for every command, and each Beam or Ray worker imports the task and engine modules,
so an import of torch there (webdataset imports it; Beam's RunInference module does too) was
paid by ``clipvip --help``, by ``status``, and by every worker of a ``--captioner none`` run.
Measured in a fresh interpreter, as a worker starts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = [
    "clipvip.cli",  # with the whole parser built below
    "pipelines.tasks",
    "pipelines.beam",
    "pipelines.ray",
    "pipelines.status",
    "analysis.report",
    "shards",
]


@pytest.mark.parametrize("module", LIGHT)
def test_module_imports_without_torch(module):
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "from clipvip.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('torch', 'webdataset', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} pulled in {out.stdout.strip()}"


def test_shards_readers_still_load_on_first_use():
    import shards

    assert shards.iter_samples.__module__ == "shards.reader"
    assert shards.ClipShardDataset.__module__ == "shards.reader"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = shards.nope
