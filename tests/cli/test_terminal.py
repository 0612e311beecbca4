"""Progress bars only where someone watches: a terminal, and not turned off."""

from __future__ import annotations

import io
import os
import sys

from clipvip.terminal import bars


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


def test_bars_are_drawn_on_a_terminal_unless_turned_off(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Tty())
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((80, 24)))
    assert bars(no_progress=False) and not bars(no_progress=True)


def test_no_bars_in_a_pipe_a_log_file_or_a_closed_stream(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a file: no tty
    assert not bars(no_progress=False)
    closed = io.StringIO()
    closed.close()  # isatty() on a closed stream raises ValueError
    monkeypatch.setattr(sys, "stderr", closed)
    assert not bars(no_progress=False)


def test_train_and_evaluate_silence_transformers_bars_off_a_terminal(monkeypatch):
    from transformers.utils import logging as hf_logging

    from trainer.cli import _quiet_bars

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    hf_logging.enable_progress_bar()
    try:
        _quiet_bars(no_progress=False)
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


def test_a_terminal_without_a_width_gets_no_bars(monkeypatch):
    """A pty nobody sized reports 0 columns: bars fitted to it are blank lines, so prepare's
    plain progress lines are wanted there instead."""
    from clipvip.terminal import stderr_is_terminal

    monkeypatch.setattr(sys, "stderr", _Tty())
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    assert not stderr_is_terminal()
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((80, 24)))
    assert stderr_is_terminal()
