"""The test budget: each lesson's full run (nbval) and smoke run against its allocation in
docs/CONTRIBUTING.md's budget table. The repository's root ``conftest.py`` feeds it the times
of a pytest run and fails the run beyond :data:`TOLERANCE` times an allocation."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["BUDGET_DOC", "TOLERANCE", "host_kind", "read_budget", "lesson_of", "over_budget"]

ROOT = Path(__file__).resolve().parents[1]
BUDGET_DOC = ROOT / "docs" / "CONTRIBUTING.md"
#: a run may take up to this multiple of its allocation before `make test` fails
TOLERANCE = 1.5


def host_kind() -> str:
    """``"avx512"`` or ``"avx2"``: which column of the budget table this CPU is held to (torch's
    kernel level; anything below AVX-512 counts as the slower host)."""
    import torch

    return "avx512" if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else "avx2"


def read_budget(text: str | None = None) -> dict[str, dict[str, float]]:
    """The budget table of docs/CONTRIBUTING.md (between the ``budget-table`` markers): part →
    {"avx512": seconds, "avx2": seconds}. Parts: ``setup``, ``unit``, ``extra``, and for each
    lesson ``NN full``, ``NN smoke`` and ``NN standin``."""
    text = BUDGET_DOC.read_text(encoding="utf-8") if text is None else text
    _, _, rest = text.partition("<!-- budget-table -->")
    table, end, _ = rest.partition("<!-- /budget-table -->")
    if not end:
        raise ValueError("docs/CONTRIBUTING.md has no <!-- budget-table --> ... "
                         "<!-- /budget-table --> block")
    budget = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"\d+", cells[1]):
            continue
        budget[cells[0].strip("` ")] = {"avx512": float(cells[1]), "avx2": float(cells[2])}
    return budget


def lesson_of(nodeid: str) -> tuple[str, str] | None:
    """(lesson number, "full" | "smoke" | "standin") of a notebook test's node id; None for
    other tests. "standin": the full run on the tiny Yi-Chat stand-in."""
    m = re.match(r"(?:.*/)?notebooks/(\d\d)_[^/]*\.ipynb::", nodeid)  # nbval: one item a cell
    if m:
        return m.group(1), "full"
    m = re.search(r"test_notebook_(smoke|standin)_run\[(\d\d)_", nodeid)
    return (m.group(2), m.group(1)) if m else None


def over_budget(seconds: dict[str, float], budget: dict[str, dict[str, float]], host: str,
                tolerance: float = TOLERANCE) -> list[str]:
    """One line per run that took more than ``tolerance`` times its allocation, or that has
    none in the table."""
    problems = []
    for key, took in sorted(seconds.items()):
        if key not in budget:
            problems.append(f"{key} run: {took:.0f} s, and no allocation in docs/CONTRIBUTING.md")
        elif took > tolerance * budget[key][host]:
            problems.append(f"{key} run: {took:.0f} s, over {tolerance:g} x its allocation of "
                            f"{budget[key][host]:.0f} s ({host} host)")
    return problems
