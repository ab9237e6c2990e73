"""Papermill runs of every notebook on the tiny Yi-Chat stand-in: a smoke run and a full run.

The smoke run: every notebook with ``smoke=True`` (short sizes and step counts) on
the tiny Yi-Chat stand-in (``yi_helpers.yi_shape.standin``: Yi-6B-Chat's vocabulary, special
token ids, GQA ratio, rope theta, chat template and sampling generation config, random
weights), as a GPU user runs a lesson with ``MODEL = "01-ai/Yi-6B-Chat"``. The nbval run of
``make test`` covers the embedded model, so every lesson runs once per model.

The full run (the lesson's own sizes, ``smoke=False``) is what a GPU user's run with a Yi model
goes through: its checks that need a trained model must see random weights for what they are
(``bench.text_prediction``) and skip, with the reason printed; the others must hold.

Notebooks are discovered, so a new lesson is covered without editing this file. They run one
at a time, in a fresh kernel each.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, discover_notebooks
from run_notebooks import run  # tools/, put on the path by conftest
from yi_helpers.yi_shape import standin

NOTEBOOKS = discover_notebooks()


# Each run's time is checked against its allocation in docs/CONTRIBUTING.md (conftest.py).
@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_smoke_run(notebook):
    parameters = {"smoke": True, "MODEL": str(standin("tiny"))}  # built once, then cached
    result = run(notebook, ROOT / "build" / "smoke", parameters, timeout=600)
    print(f"{notebook.name}: {result['seconds']:.1f} s")
    assert result["status"] == "ok", f"{result['error']}\nin cell:\n{result['cell']}"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_standin_run(notebook, tmp_path):
    # lesson 06 writes its results record to RESULTS: not over the embedded model's in build/
    parameters = {"MODEL": str(standin("tiny")), "RESULTS": str(tmp_path / "results.json")}
    result = run(notebook, ROOT / "build" / "standin", parameters, timeout=600)
    print(f"{notebook.name}: {result['seconds']:.1f} s")
    assert result["status"] == "ok", f"{result['error']}\nin cell:\n{result['cell']}"
