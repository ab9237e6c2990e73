"""Papermill runs of every notebook on the tiny Yi-Chat stand-in, at the lessons' quick sizes.

``make test`` runs each lesson twice: once in full on the embedded model under nbval (outputs
compared with the committed ones), and once here, with ``smoke=True`` (short sizes and step
counts) on the tiny Yi-Chat stand-in (``tools/yi_shape.py``'s ``standin``: Yi-6B-Chat's vocabulary,
special token ids, GQA ratio, rope theta, chat template and sampling generation config, random
weights), as a GPU user runs a lesson with ``MODEL = "01-ai/Yi-6B-Chat"`` and as the GPU runner
(``tools/gpu_check.py --yi-standin``) runs it. A third run, at the lesson's own sizes on the
stand-in, was dropped to make room for thirteen lessons: the nbval run covers those sizes (on
the embedded model) and this run covers the Yi shape (docs/CONTRIBUTING.md, test budget).

Checks that need a trained model must see random weights for what they are
(``bench.text_prediction``) and skip, with the reason printed; the others must hold.

Notebooks are discovered, so a new lesson is covered without editing this file. They run one
at a time, in a fresh kernel each.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, discover_notebooks
from run_notebooks import run  # tools/, put on the path by conftest
from yi_shape import standin

NOTEBOOKS = discover_notebooks()

# Opt-in paths a learner switches on, run here where the tiny stand-in makes them cheap (the
# nbval run keeps the defaults, off): lesson 05's GPTQModel recipe, which takes a minute or more
# on the embedded model, and lesson 06's torch.compile recipe, which compiles the stand-in's two
# blocks in seconds and the embedded model's thirty in a minute.
SWITCHED_ON = {"05": {"METHODS": ["int8 weight-only", "AWQ 4-bit", "GPTQ 4-bit"]},
               "06": {"TRY_COMPILE": True},
               "09": {"LANG": "zh"}}  # the needle test in Chinese (exercise 2)


# Each run's time goes to the ledger of docs/CONTRIBUTING.md's test budget (conftest.py).
@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_smoke_run(notebook):
    parameters = {"QUICK": True, "MODEL": str(standin("tiny")),  # built once, then cached
                  **SWITCHED_ON.get(notebook.name[:2], {})}
    result = run(notebook, ROOT / "build" / "smoke", parameters, timeout=600)
    print(f"{notebook.name}: {result['seconds']:.1f} s")
    assert result["status"] == "ok", f"{result['error']}\nin cell:\n{result['cell']}"

