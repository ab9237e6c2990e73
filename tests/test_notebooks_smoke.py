"""Papermill smoke run of every notebook with ``smoke=True`` (short sizes and step counts).

Notebooks are discovered, so a new lesson is covered without editing this file. They run one
at a time, in a fresh kernel each.
"""

from __future__ import annotations

import time

import pytest

from conftest import NOTEBOOK_DIR, ROOT, discover_notebooks

NOTEBOOKS = discover_notebooks()
SMOKE_LIMIT_S = 120  # each smoke run should take well under a minute on a 2-core CPU


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_smoke_run(notebook):
    import papermill as pm

    out_dir = ROOT / "build" / "smoke"
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pm.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters={"smoke": True},
                        kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False,
                        execution_timeout=600)
    seconds = time.perf_counter() - start
    print(f"{notebook.name}: {seconds:.1f} s")
    assert seconds < SMOKE_LIMIT_S
