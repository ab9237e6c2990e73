"""Papermill smoke run of every notebook with ``smoke=True`` (short sizes and step counts).

Notebooks are discovered, so a new lesson is covered without editing this file. They run one
at a time, in a fresh kernel each.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, discover_notebooks
from run_notebooks import run  # tools/, put on the path by conftest

NOTEBOOKS = discover_notebooks()


# Each run's time is checked against its allocation in docs/CONTRIBUTING.md (conftest.py).
@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_smoke_run(notebook):
    result = run(notebook, ROOT / "build" / "smoke", {"smoke": True}, timeout=600)
    print(f"{notebook.name}: {result['seconds']:.1f} s")
    assert result["status"] == "ok", f"{result['error']}\nin cell:\n{result['cell']}"
