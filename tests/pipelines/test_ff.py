"""Running ffmpeg's tools: a missing binary says how to install it, with or without the cap."""

from __future__ import annotations

import pytest

from pipelines.ff import Limits, ToolError, run_tool


@pytest.mark.parametrize("memory_mb", [0, 512], ids=["no cap", "under the memory cap"])
def test_a_missing_tool_says_it_is_not_installed(memory_mb):
    """Under the cap the tool runs through ``sh -c 'ulimit -v ...; exec'``, where a missing binary
    is sh's exit 127, not Python's FileNotFoundError; before, that read as 'failed: sh: exec'."""
    with pytest.raises(ToolError, match=r"^ffmpeg-nowhere is not installed \(Debian: apt-get"):
        run_tool(["ffmpeg-nowhere", "-version"], Limits(timeout_s=30, memory_mb=memory_mb))


def test_a_tool_that_exits_127_itself_is_reported_as_a_failure(tmp_path):
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho 'bad input' >&2\nexit 127\n")
    tool.chmod(0o755)
    with pytest.raises(ToolError, match=r"^tool failed: bad input$"):
        run_tool([str(tool)], Limits(timeout_s=30, memory_mb=512))
