"""A task's retry runs its CPU stages in a child process, so a row that kills its worker fails alone.

Why: probe and clip already run ffmpeg in child processes (a crash there is an ordinary
``ToolError``), but the middle frame is decoded in process, with the FFmpeg libraries PyAV wraps,
and the clip stage reads the source's index and a packet or two in process (``stages/cut.py``).
A video that crashes them (a segfault, an abort, a runaway allocation the kernel's OOM killer
ends) takes the whole worker down with every clip of its task. The engine then retries the task
(Ray without limit) and the same row kills it again: one poison row among 100M stalls the run.

So a task's first attempt runs in process (fast); any later attempt, meaning an earlier one
started and never finished (a dead worker, a killed run being resumed), sends each stage of each
clip to a child interpreter, one at a time. ``PrepareConfig.isolate = "always"`` does that on the
first attempt too: for engines that cannot survive a dead worker at all (Beam's DirectRunner in
multi-process mode waits forever for it), and for users who would rather pay for a pipe than a
retry (measured: 2 % of the plain loop's time, ``benchmarks.engines``).

A child that dies is replaced and the same stage is tried once more in a fresh child (a one-off
kill is not the row's fault); dying twice fails that row alone, with the stage and how the child
died, and the rest of the task goes on. A stage that hangs past a bound derived from the run's
tool timeout is killed and failed the same way. The child runs the very
same stage code, so its samples are byte-identical to an in-process run's.

The child runs under the same address-space cap as every ffmpeg call (``--tool-memory-mb``; it
needs ~265 MB of its own): a runaway allocation in the decoder, which in the worker brought the
kernel's OOM killer (to the worker, or to a neighbour), in the child is a ``MemoryError`` that
fails the row with that reason while the child lives on.

The child is a plain ``python -m pipelines.isolation`` talking length-prefixed pickles over its
stdin/stdout (not ``multiprocessing``: it would re-import whatever ``__main__`` the engine's
worker has, and forking a process with gRPC and torch threads is unsafe).

The hang bound is kept by the parent, so a parent killed outright (SIGKILL, the OOM killer) while
its child is stuck would leave the child running forever. On Linux the child therefore asks the
kernel for SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``), and exits at once if the
parent was already gone before it asked. The kernel means the parent *thread* (the one that
forked): children are started from one long-lived thread of the parent (``_spawn``), not from
whichever engine thread first needed one, which could end while another thread still uses it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.config import PrepareConfig
from pipelines.ff import with_memory_cap
from pipelines.record import Clip

DEATHS_PER_ROW = 2  # a stage that kills this many fresh children fails its row
KILL_WAIT_S = 30.0  # how long a SIGKILLed child may take to end before it is given up on
PARENT_ENV = "CLIPVIP_ISOLATION_PARENT"  # the pid the child expects as its parent
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_HEADER = struct.Struct("<Q")
log = logging.getLogger(__name__)


class ChildDied(Exception):
    """The child process ended (or was ended) before answering."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(stream: BinaryIO) -> Any:
    (size,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    return pickle.loads(_read_exact(stream, size))


def how_it_died(returncode: int | None) -> str:
    if returncode is None:  # ``_kill`` gave up on it
        return f"would not end within {KILL_WAIT_S:g} s of SIGKILL (stuck in the kernel?)"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class IsolatedStages:
    """Applies stages to clips in a child process, started on first use and replaced when it dies.

    ``shared()`` gives each thread of a worker its own; ``close()`` ends the child.

    Thread safety: the child answers one request at a time over one pipe, so a request and its
    reply must never interleave with another thread's (two threads at once read each other's
    answers: one task's samples landed in another task's shard, or both waited forever). A lock
    around the whole exchange (``_call``, ``close``) makes one instance safe to share; ``shared()``
    still hands each thread its own instance so the threads of a multi-threaded worker (Dataflow,
    Flink, Beam's ``multi_threading`` mode) run their stages in parallel, not queued on one child.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s  # None: from the run's tool timeout
        self.proc: subprocess.Popen | None = None
        self.children_started = 0
        self._lock = threading.RLock()  # one request/reply exchange on the pipe at a time

    def __del__(self) -> None:  # the thread that owned it ended: its child goes with it
        with contextlib.suppress(Exception):
            self._kill()

    def __enter__(self) -> IsolatedStages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, memory_mb: int) -> subprocess.Popen:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # where `pipelines` is importable from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env[PARENT_ENV] = str(os.getpid())
        self.proc = _spawn(
            with_memory_cap([sys.executable, "-m", "pipelines.isolation"], memory_mb),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.children_started += 1
        return self.proc

    def _kill(self) -> int | None:
        """End the child; its exit status, or None when it would not end even after SIGKILL
        (asleep in the kernel, e.g. on a hung network mount). Never raises: the caller fails
        the row (``how_it_died``), not the whole task."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        try:
            return proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("isolation child %d %s; left behind", proc.pid, how_it_died(None))
            return None
        finally:
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()  # the child exits at the end of its input
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def _call(self, name: str, clip: Clip, cfg: PrepareConfig) -> Clip:
        with self._lock:
            return self._exchange(name, clip, cfg)

    def _exchange(self, name: str, clip: Clip, cfg: PrepareConfig) -> Clip:
        proc = self.proc or self._start(cfg.tool_memory_mb)
        # A stage runs at most a few tools in sequence, each bounded by the tool timeout.
        timeout_s = self.timeout_s if self.timeout_s is not None else 3 * cfg.tool_timeout_s + 60
        try:
            _send(proc.stdin, (name, clip, cfg))
            ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
            if not ready:
                ended = self._kill() is not None
                how = "was killed" if ended else how_it_died(None)
                raise ChildDied(f"did not answer within {timeout_s:.0f} s and {how}")
            return _recv(proc.stdout)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise ChildDied(how_it_died(self._kill())) from None

    def apply(self, name: str, clip: Clip, cfg: PrepareConfig) -> Clip:
        """``stages.apply`` of stage ``name`` in the child; a row whose stage kills it (or hangs)
        on each of ``DEATHS_PER_ROW`` tries fails, with how."""
        if not clip.ok:
            return clip
        t0 = time.perf_counter()
        deaths = []
        for _ in range(DEATHS_PER_ROW):
            try:
                return self._call(name, clip, cfg)
            except ChildDied as exc:
                deaths.append(str(exc))
        how = deaths[0] if len(set(deaths)) == 1 else "; then ".join(deaths)
        clip.fail(
            name,
            f"the process running this stage died on each of {DEATHS_PER_ROW} tries (it {how}): "
            "the input crashes the decoder; the row was isolated so the rest of its task went on",
        )
        clip.timings[name] = clip.timings.get(name, 0.0) + time.perf_counter() - t0
        return clip


class _Spawner:
    """Starts processes from one daemon thread, which lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the thread that forked the child ends, not the process: a
    child started from a pool thread would be killed when that thread ended, though other threads
    still used it (``IsolatedStages`` may be shared; a pool's threads come and go). A forked copy
    of this process has no such thread: it starts afresh (``__init__`` again, after the fork),
    with its own thread, queue and lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, args=(self._jobs,), name="isolation-spawner", daemon=True
                )
                self._thread.start()
            jobs = self._jobs
        answer: queue.SimpleQueue = queue.SimpleQueue()
        jobs.put((cmd, kwargs, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        while True:
            cmd, kwargs, answer = jobs.get()
            try:
                answer.put((True, subprocess.Popen(cmd, **kwargs)))
            except BaseException as exc:  # handed to the caller, who raises it
                answer.put((False, exc))


_spawner = _Spawner()
os.register_at_fork(after_in_child=_spawner.__init__)
_spawn = _spawner.popen
_shared = threading.local()
_all: weakref.WeakSet[IsolatedStages] = weakref.WeakSet()  # every live one, closed at exit


def shared() -> IsolatedStages:
    """This thread's isolation child, reused across its tasks.

    One per thread, not per process: an engine worker may run several tasks at once in threads
    (see ``IsolatedStages``). When a thread ends, its instance is collected and its child killed.
    """
    child = getattr(_shared, "child", None)
    if child is None:
        child = _shared.child = IsolatedStages()
        _all.add(child)
    return child


@atexit.register
def _close_all() -> None:
    for child in list(_all):
        child.close()


def _die_with_parent() -> None:
    """In the child: SIGKILL from the kernel when the parent ends, however it ends (the parent's
    hang timeout dies with it). Linux only; elsewhere a no-op. A parent already gone before the
    request (the child is then some other process's) means exit now."""
    expected = os.environ.pop(PARENT_ENV, None)
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no libc to ask (a static or exotic build)
        return
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return
    if expected and os.getppid() != int(expected):
        os._exit(1)


def _serve() -> None:
    """The child: read (stage name, clip) pairs until end of input, answer each with the clip."""
    _die_with_parent()
    from pipelines.stages import CPU_STAGES, apply

    stages = dict(CPU_STAGES)
    out = os.fdopen(os.dup(1), "wb")  # answers go here; anything printed goes to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    try:
        while True:
            name, clip, cfg = _recv(inp)
            _send(out, apply(name, stages[name], clip, cfg))
    except EOFError:
        return


if __name__ == "__main__":
    _serve()
