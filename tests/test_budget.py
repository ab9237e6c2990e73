"""The test budget's ledger (docs/CONTRIBUTING.md) and the check that holds lesson runs to it."""

from __future__ import annotations

from budget import lesson_of, over_budget, read_budget  # tools/
from conftest import discover_notebooks

TABLE = """
<!-- budget-table -->
| part | AVX-512 host, s | AVX2 host, s |
|---|---|---|
| `01 full` | 30 | 40 |
| `01 smoke` | 20 | 25 |
<!-- /budget-table -->
"""


def test_ledger_is_read_from_the_marked_table():
    assert read_budget(TABLE) == {"01 full": {"avx512": 30, "avx2": 40},
                                  "01 smoke": {"avx512": 20, "avx2": 25}}


def test_runs_over_one_and_a_half_times_their_allocation_fail():
    budget = read_budget(TABLE)
    assert over_budget({"01 full": 45, "01 smoke": 30}, budget, "avx512") == []
    late = over_budget({"01 full": 46, "01 smoke": 10}, budget, "avx512")
    assert len(late) == 1 and "01 full run: 46 s" in late[0]
    assert over_budget({"01 full": 46}, budget, "avx2") == []  # 40 s there
    assert "no allocation" in over_budget({"02 full": 1}, budget, "avx512")[0]


def test_node_ids_name_their_lesson():
    assert lesson_of("notebooks/05_quantization.ipynb::Cell 3") == ("05", "full")
    assert lesson_of("notebooks/drafts/05_x.ipynb::Cell 3") is None
    assert lesson_of("tests/test_notebooks_smoke.py::test_notebook_smoke_run[05_quantization.ipynb]"
                     ) == ("05", "smoke")
    assert lesson_of("tests/test_notebooks_smoke.py::test_notebook_standin_run[06_bench.ipynb]"
                     ) == ("06", "standin")
    assert lesson_of("tests/test_chat.py::test_render") is None


def test_every_lesson_has_its_allocations_within_the_rules():
    """A new lesson brings its own allocations; a lesson's full run stays <= 3 minutes and its
    smoke run <= 45 s on the AVX-512 host (lesson 05's four quantizations: <= 4 minutes)."""
    budget = read_budget()
    for notebook in discover_notebooks():
        number = notebook.name[:2]
        full, smoke = budget[f"{number} full"]["avx512"], budget[f"{number} smoke"]["avx512"]
        assert full <= (240 if number == "05" else 180), f"{notebook.name}: full run {full} s"
        assert smoke <= 45, f"{notebook.name}: smoke run {smoke} s"
        assert budget[f"{number} standin"]["avx512"] <= 45, f"{notebook.name}: stand-in run"
    for part in ("setup", "unit", "extra"):
        assert part in budget
