"""Suite-wide: fault-injection tests report what they did at the end of the run."""

from __future__ import annotations

import pytest

FAULT_REPORT_KEY = pytest.StashKey[list[str]]()


@pytest.fixture
def fault_report(request) -> list[str]:
    """Lines a fault-injection test wants in the terminal summary (kill points, victims)."""
    return request.config.stash.setdefault(FAULT_REPORT_KEY, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    lines = config.stash.get(FAULT_REPORT_KEY, [])
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.write_line(line)
