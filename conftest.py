"""Hooks for every test of the repository, notebooks included (a conftest.py under tests/
does not see the nbval items under notebooks/): the ledger of the test budget in
docs/CONTRIBUTING.md. A timing is never a test: the ledger is printed and saved, and the run
passes or fails on correctness alone."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from budget import (LEDGER, calibrate_in_subprocess, ledger_lines, lesson_of, read_budget,  # noqa: E402
                    speed_factor)

_RUN_SECONDS: dict[str, float] = {}
_CELL_SECONDS: dict[str, float] = {}
_LEDGER: dict = {}


def pytest_runtest_logreport(report):
    """Add up each lesson's time (its nbval cells: setup, call, teardown; or its smoke run) and
    keep its slowest nbval cell."""
    part = lesson_of(report.nodeid)
    if part is not None:
        key = f"{part[0]} {part[1]}"
        _RUN_SECONDS[key] = _RUN_SECONDS.get(key, 0.0) + report.duration
        if part[1] == "full" and report.when == "call":
            _CELL_SECONDS[key] = max(_CELL_SECONDS.get(key, 0.0), report.duration)


def pytest_sessionfinish(session):
    """Calibrate this host (about 10 s, in a fresh process) and write the ledger to
    build/budget/ledger.json."""
    if not _RUN_SECONDS:
        return
    from yi_helpers.machine import cpu_features, cpu_name

    seconds = calibrate_in_subprocess()
    _LEDGER.update(when=datetime.datetime.now().isoformat(timespec="seconds"),
                   host=f"{cpu_name()}, {cpu_features()}", calibration=seconds,
                   factor=speed_factor(seconds), budget=read_budget(),
                   seconds=dict(_RUN_SECONDS), slowest_cell=dict(_CELL_SECONDS))
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    LEDGER.write_text(json.dumps(_LEDGER, indent=1), encoding="utf-8")


def pytest_terminal_summary(terminalreporter):
    if not _LEDGER:
        return
    terminalreporter.section(f"lesson runs against the test budget ({_LEDGER['host']})")
    for line in ledger_lines(_LEDGER):
        terminalreporter.write_line(line, yellow=line.startswith("OVER BUDGET"))
    terminalreporter.write_line(f"(saved to {LEDGER.relative_to(LEDGER.parents[2])}; "
                                "`make budget` prints it again)")
