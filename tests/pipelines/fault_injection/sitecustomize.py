"""Fault injection for the isolation tests: a middle-frame decoder that crashes or hangs.

Put this folder on ``PYTHONPATH`` and every Python process started with that environment (the
``clipvip`` run, Beam's and Ray's workers, the isolation child) loads it at start-up. Then the
decoder, after decoding a frame whose width is ``CLIPVIP_FAULT_CRASH_WIDTH``, kills its own
process with SIGSEGV (as a crashing FFmpeg library would), and one of width
``CLIPVIP_FAULT_HANG_WIDTH`` sleeps for an hour, and one of width ``CLIPVIP_FAULT_ALLOC_WIDTH``
asks for 64 GB (a runaway allocation). Any other frame decodes as usual. A hanging process first
writes its pid to ``CLIPVIP_FAULT_HANG_PIDFILE`` when that is set (a test waits for it there).
"""

import os
import signal
import time

_CRASH = int(os.environ.get("CLIPVIP_FAULT_CRASH_WIDTH") or 0)
_HANG = int(os.environ.get("CLIPVIP_FAULT_HANG_WIDTH") or 0)
_ALLOC = int(os.environ.get("CLIPVIP_FAULT_ALLOC_WIDTH") or 0)


def _say_hanging() -> None:
    pidfile = os.environ.get("CLIPVIP_FAULT_HANG_PIDFILE")
    if pidfile:  # written whole, then renamed: a reader never sees half a pid
        with open(f"{pidfile}.tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(f"{pidfile}.tmp", pidfile)


def _install() -> None:
    import importlib

    try:
        module = importlib.import_module("pipelines.stages.middle_frame")
    except ImportError:  # a process without the project on its path (Ray's own helpers)
        return
    real = module.decode_middle_frame

    def decode_middle_frame(source, threads=1):
        result = real(source, threads)
        if result[0].width == _CRASH:
            os.kill(os.getpid(), signal.SIGSEGV)
        if result[0].width == _HANG:
            _say_hanging()
            time.sleep(3600)
        if result[0].width == _ALLOC:
            bytearray(64 << 30)
        return result

    module.decode_middle_frame = decode_middle_frame


if _CRASH or _HANG or _ALLOC:
    _install()
