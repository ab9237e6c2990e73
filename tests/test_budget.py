"""The test budget's ledger (docs/CONTRIBUTING.md): the table's parser, the node ids, the speed
factor and the over-budget marks. Nothing here compares a real wall time with a limit."""

from __future__ import annotations

import json

import pytest

import budget as budget_tool  # tools/
from budget import (CELL_LIMIT_S, LESSON_LIMIT_S, REFERENCE, ledger_lines, lesson_of, over_budget,
                    read_budget, speed_factor)
from conftest import discover_notebooks

PLANNED_LESSONS = 13  # lessons 11-13: issues #47 (JSON and tools), #48 (RAG), #49 (DPO)
RESERVE_PER_LESSON_S = 110  # full + smoke + recipe runs of one planned lesson, reference seconds

TABLE = """
<!-- budget-table -->
| part | reference host, s | what |
|---|---|---|
| `01 full` | 30 | lesson 01 |
| `01 smoke` | 20 | lesson 01 on the stand-in |
<!-- /budget-table -->
"""


def test_ledger_is_read_from_the_marked_table():
    assert read_budget(TABLE) == {"01 full": 30, "01 smoke": 20}
    with pytest.raises(ValueError, match="budget-table"):
        read_budget("| `01 full` | 30 |")


def test_runs_are_compared_in_reference_seconds():
    budget = read_budget(TABLE)
    assert over_budget({"01 full": 30, "01 smoke": 20}, budget) == []
    late = over_budget({"01 full": 31, "01 smoke": 10}, budget)
    assert late == ["01 full: 31 s, over its allocation of 30 s"]
    # a host twice as fast as the reference: 20 s here are 40 reference seconds
    assert over_budget({"01 full": 20}, budget, factor=0.5) == [
        "01 full: 40 s, over its allocation of 30 s"]
    assert over_budget({"01 full": 45}, budget, factor=1.5) == []
    assert "no allocation" in over_budget({"02 full": 1}, budget)[0]
    assert over_budget({}, budget, slowest_cell={"01 full": CELL_LIMIT_S + 1}) == [
        f"01 full: one cell took {CELL_LIMIT_S + 1:.0f} s, over {CELL_LIMIT_S:.0f} s"]


def test_speed_factor_is_one_on_the_reference_and_below_on_a_faster_host():
    assert speed_factor(REFERENCE) == pytest.approx(1.0)
    assert speed_factor({k: v / 2 for k, v in REFERENCE.items()}) == pytest.approx(0.5)
    # one part twice as slow, the others as the reference: the geometric mean
    one_slow = dict(REFERENCE, matmul_bf16=2 * REFERENCE["matmul_bf16"])
    assert speed_factor(one_slow) == pytest.approx(2 ** (1 / len(REFERENCE)))


def test_ledger_marks_what_is_over_and_never_fails(tmp_path, capsys, monkeypatch):
    ledger = {"when": "2026-12-07T00:00:00", "host": "test CPU", "factor": 2.0,
              "calibration": {}, "budget": read_budget(TABLE),
              "seconds": {"01 full": 80.0, "01 smoke": 30.0}, "slowest_cell": {"01 full": 50.0}}
    lines = ledger_lines(ledger)
    assert any(line.split()[:2] == ["01", "full"] and "40.0" in line for line in lines)
    assert [line for line in lines if line.startswith("OVER BUDGET")] == [
        "OVER BUDGET (reported, not a failure): 01 full: 40 s, over its allocation of 30 s"]
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(ledger))
    assert budget_tool.main(["--ledger", str(path)]) == 0  # `make budget`
    assert "OVER BUDGET" in capsys.readouterr().out
    assert budget_tool.main(["--ledger", str(tmp_path / "none.json")]) == 1


def test_node_ids_name_their_lesson():
    assert lesson_of("notebooks/05_quantization.ipynb::Cell 3") == ("05", "full")
    assert lesson_of("notebooks/drafts/05_x.ipynb::Cell 3") is None
    assert lesson_of("tests/test_notebooks_smoke.py::test_notebook_smoke_run[05_quantization.ipynb]"
                     ) == ("05", "smoke")
    assert lesson_of("tests/test_recipes.py::test_recipe_runs_without_yi_helpers[05_quantization.ipynb]"
                     ) == ("05", "recipe")
    assert lesson_of("tests/test_recipes.py::test_every_lesson_has_a_recipe_that_needs_no_hub_code"
                     "[05_quantization.ipynb]") is None
    assert lesson_of("tests/test_chat.py::test_render") is None


def test_every_lesson_has_its_allocations_within_the_rules():
    """A new lesson brings its own three rows: its full run within DEVELOPERS.md's 150 s, its
    smoke run on the Yi stand-in within 60 s and its recipe run within 90 s, in reference
    seconds."""
    budget = read_budget()
    for notebook in discover_notebooks():
        number = notebook.name[:2]
        assert budget[f"{number} full"] <= LESSON_LIMIT_S, f"{notebook.name}: full run"
        assert budget[f"{number} smoke"] <= 60, f"{notebook.name}: smoke run"
        assert budget[f"{number} recipe"] <= 90, f"{notebook.name}: recipe run"
    for part in ("setup", "unit", "extra", "reserve"):
        assert part in budget
    lessons = sum(budget[f"{nb.name[:2]} {kind}"] for nb in discover_notebooks()
                  for kind in ("full", "smoke", "recipe"))
    # Room for the lessons planned beyond today's (issues #47-#49: thirteen in all), each at
    # least RESERVE_PER_LESSON_S for its three runs; a new lesson's rows replace its share.
    missing = PLANNED_LESSONS - len(discover_notebooks())
    assert budget["reserve"] >= missing * RESERVE_PER_LESSON_S, (
        f"the reserve must hold {missing} more lessons at {RESERVE_PER_LESSON_S} s each")
    assert budget["setup"] + budget["unit"] + lessons + budget["reserve"] <= 40 * 60, (
        "make test within 40 minutes, with room for the planned lessons")


@pytest.mark.slow
def test_calibration_runs_in_a_fresh_process_and_names_every_part():
    """What the ledger calls at the end of a run with lessons (about 10 s)."""
    seconds = budget_tool.calibrate_in_subprocess()
    assert set(seconds) == set(REFERENCE) and all(s > 0 for s in seconds.values())
    assert 0.05 < speed_factor(seconds) < 20  # a real host, whatever its kind
