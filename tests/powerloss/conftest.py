"""Print the power-loss simulation's figures at the end of every test run."""

from __future__ import annotations

import logging

import pytest
from _check import TALLIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLIES:
        return
    checked = sum(t.checked for t in TALLIES)
    bad = sum(len(t.bad) for t in TALLIES)
    terminalreporter.section("power-loss simulation")
    for tally in TALLIES:
        terminalreporter.write_line(f"  {tally}")
    unopenable = sum(t.unopenable or 0 for t in TALLIES)
    allowed = ""
    if unopenable:
        allowed = f" ({unopenable:,} durable=False disks did not open, as allowed)"
    terminalreporter.write_line(
        f"power-loss simulation: {checked:,} crash states checked, {bad:,} inconsistent{allowed}"
    )


@pytest.fixture(autouse=True)
def _quiet_torn_tails(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of simulated disks end in a torn commit; each open logs a warning."""
    caplog.set_level(logging.ERROR, logger="tastypy")
