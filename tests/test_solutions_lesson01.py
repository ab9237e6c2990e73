"""Lesson 01's exercise solutions, and every lesson's questions with their answers."""

from __future__ import annotations

import importlib

import pytest

from conftest import discover_notebooks, read_notebook
from yi_helpers.models import estimate_memory, recommend
from yi_helpers.solutions import lesson01


def test_long_context_memory_is_dominated_by_the_kv_cache():
    est, part = lesson01.long_context_memory()
    assert part == "kv_cache" and est.kv_cache_gb > est.weights_gb
    assert est.kv_cache_gb == pytest.approx(200_000 * 4 * 128 * 32 * 2 * 2 / 1e9)
    _, short = lesson01.long_context_memory(context_len=2048)
    assert short == "weights"


def test_a_larger_batch_picks_a_model_that_fits_it():
    pick = lesson01.largest_for_gpu(24, batch_size=16)
    assert estimate_memory(pick, batch_size=16).total_gb <= 24
    single = recommend(24)
    assert estimate_memory(single, batch_size=16).total_gb > 24  # the batch-1 pick would not fit


def test_parameters_by_component_shares_add_up():
    parts = lesson01.parameters_by_component("01-ai/Yi-1.5-9B")
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1)
    assert max(parts, key=lambda k: parts[k]["parameters"]) == "mlp"


def test_bf16_and_fp32_replies_are_both_text():
    fp32, bf16 = lesson01.bf16_vs_fp32_reply(max_new_tokens=8)
    assert fp32.strip() and bf16.strip()


@pytest.mark.parametrize("notebook", discover_notebooks(), ids=lambda p: p.name)
def test_each_lesson_asks_its_questions_and_ships_the_answers(notebook):
    """The "Check your understanding" section opens with the solutions module's QUESTIONS,
    numbered, before the check cell; ANSWERS holds one answer per question."""
    module = importlib.import_module(f"yi_helpers.solutions.lesson{notebook.name[:2]}")
    assert 2 <= len(module.QUESTIONS) == len(module.ANSWERS) <= 3
    assert all(len(a) > 40 for a in module.ANSWERS)
    cells = read_notebook(notebook)["cells"]
    (i,) = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
            and "## Check your understanding" in "".join(c["source"])]
    text = "".join(cells[i]["source"]).partition("## Check your understanding")[2]
    for n, question in enumerate(module.QUESTIONS, 1):
        assert f"{n}. {question}\n" in text
    assert cells[i + 1]["cell_type"] == "code" and "assert" in "".join(cells[i + 1]["source"])
