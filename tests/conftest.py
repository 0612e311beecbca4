"""Suite-wide: fault-injection tests report what they did at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_PROPERTY = "fault injection"


@pytest.fixture
def fault_report(request) -> Iterator[list[str]]:
    """Lines a fault-injection test wants in the terminal summary (kill points, victims).

    They travel as the test's user properties, which pytest-xdist sends from its worker
    processes to the process that prints the summary (a list kept in a worker would stay there).
    """
    lines: list[str] = []
    yield lines
    request.node.user_properties.extend((_PROPERTY, line) for line in lines)


class _FaultSummary:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            self.lines += [value for name, value in report.user_properties if name == _PROPERTY]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.section(_PROPERTY)
            for line in self.lines:
                terminalreporter.write_line(line)


def pytest_configure(config) -> None:
    config.pluginmanager.register(_FaultSummary(), "clipvip-fault-summary")
