"""Running ffmpeg/ffprobe as child processes with a wall-clock timeout and a memory cap.

A hostile file can make a decoder allocate gigabytes or never end; each call here gets an
address-space limit (``RLIMIT_AS``) on the child and a timeout, and a failure comes back as a
``ToolError`` whose message says which tool failed and why, for ``errors.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# What a source may open besides itself. A playlist (HLS, DASH, an ffconcat script) makes the
# demuxer open the files or URLs it names; with only these protocols it cannot reach the network
# (no request to a cloud metadata address from a hostile row), and the probe refuses playlists
# outright (``stages/probe.py``) so nothing outside the row's own file reaches a sample.
INPUT_PROTOCOLS = "file,pipe"
PYAV_OPTIONS = {"protocol_whitelist": INPUT_PROTOCOLS}


def input_url(path: str) -> str:
    """``path`` as FFmpeg must be given a local file: ``file:`` and the absolute path.

    FFmpeg reads ``NAME:REST`` as protocol NAME, so a plain ``t10:00:00.mp4`` fails ("Protocol
    not found") and a file named ``pipe:0`` would read the worker's stdin. ``file:`` always
    names the file itself. Used for ffprobe, ffmpeg and PyAV alike (they share libavformat).

    Always the absolute path, even of a path that already starts with ``file:``: that string is
    what ``--input-root`` was checked against and what was opened, a file ``file:/X`` relative
    to the working folder. Passed on as it was, FFmpeg opened ``/X``, outside the root.
    """
    return "file:" + os.path.abspath(path)


class ToolError(RuntimeError):
    """ffmpeg or ffprobe failed, timed out or ran out of its memory cap."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call limits for child processes; ``memory_mb=0`` disables the address-space cap."""

    timeout_s: float = 300.0
    memory_mb: int = 4096


def with_memory_cap(cmd: Sequence[str], memory_mb: int) -> list[str]:
    """Wrap ``cmd`` so the child starts under an address-space cap.

    A shell's ``ulimit -v`` rather than ``preexec_fn``: engines call this from threads, and
    ``preexec_fn`` is unsafe in a threaded parent (seen here: ffprobe aborting with SIGABRT).
    """
    if memory_mb <= 0:
        return list(cmd)
    return ["/bin/sh", "-c", f'ulimit -v {memory_mb * 1024} && exec "$@"', "sh", *cmd]


def run_tool(cmd: Sequence[str], limits: Limits, stdin: bytes | None = None) -> bytes:
    """Run ``cmd`` and return its stdout; raise ``ToolError`` with the tail of stderr."""
    tool = cmd[0].rsplit("/", 1)[-1]
    try:
        proc = subprocess.run(
            with_memory_cap(cmd, limits.memory_mb),
            input=stdin,
            capture_output=True,
            timeout=limits.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{tool} timed out after {limits.timeout_s:g} s") from exc
    except FileNotFoundError as exc:
        raise ToolError(f"{tool} is not installed (Debian: apt-get install ffmpeg)") from exc
    if proc.returncode == 127 and shutil.which(cmd[0]) is None:  # sh's "exec: not found"
        raise ToolError(f"{tool} is not installed (Debian: apt-get install ffmpeg)")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0:
            detail = f"killed by signal {-proc.returncode} ({detail})"
        raise ToolError(f"{tool} failed: {detail[:300]}")
    return proc.stdout


def ffprobe_json(path: str, limits: Limits, extra: Sequence[str] = ()) -> dict:
    """ffprobe's format and streams as a dict."""
    out = run_tool(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            *extra,
            "-protocol_whitelist",
            INPUT_PROTOCOLS,
            input_url(path),
        ],
        limits,
    )
    try:
        return json.loads(out.decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raise ToolError(f"ffprobe printed unreadable JSON: {exc}") from exc
