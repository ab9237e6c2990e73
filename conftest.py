"""Hooks for every test of the repository, notebooks included (a conftest.py under tests/
does not see the nbval items under notebooks/): the test budget of docs/CONTRIBUTING.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from budget import host_kind, lesson_of, over_budget, read_budget  # noqa: E402

_RUN_SECONDS: dict[str, float] = {}
_PROBLEMS: list[str] = []


def pytest_runtest_logreport(report):
    """Add up each lesson's time: its nbval cells (setup, call, teardown) or its smoke run."""
    part = lesson_of(report.nodeid)
    if part is not None:
        key = f"{part[0]} {part[1]}"
        _RUN_SECONDS[key] = _RUN_SECONDS.get(key, 0.0) + report.duration


def pytest_sessionfinish(session):
    """Fail the run when a lesson's run took more than 1.5 x its allocation."""
    if _RUN_SECONDS:
        _PROBLEMS[:] = over_budget(_RUN_SECONDS, read_budget(), host_kind())
        if _PROBLEMS and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _RUN_SECONDS:
        return
    host = host_kind()
    budget = read_budget()
    terminalreporter.section(f"lesson runs against the test budget ({host} host)")
    for key, took in sorted(_RUN_SECONDS.items()):
        allowed = budget.get(key, {}).get(host)
        terminalreporter.write_line(f"{key:>9}: {took:6.1f} s" + (
            f" (allocation {allowed:.0f} s)" if allowed else " (no allocation)"))
    for line in _PROBLEMS:
        terminalreporter.write_line(f"OVER BUDGET: {line}", red=True)
