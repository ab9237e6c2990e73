"""Static checks of every committed notebook (no kernel needed)."""

from __future__ import annotations

import re

import nbformat
import pytest

from conftest import discover_notebooks, read_notebook

NOTEBOOKS = discover_notebooks()
IDS = [p.name for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no NN_topic.ipynb notebooks found"


@pytest.fixture(params=NOTEBOOKS, ids=IDS)
def nb(request):
    return request.param, read_notebook(request.param)


def _code(nb_json):
    return [c for c in nb_json["cells"] if c["cell_type"] == "code"]


def _source(cell):
    return "".join(cell["source"])


def test_valid_nbformat(nb):
    path, data = nb
    nbformat.validate(nbformat.read(path, as_version=4))
    # nbformat 4.5: every cell has an id (a missing one is only a warning today, an error later)
    missing = [i for i, cell in enumerate(data["cells"]) if "id" not in cell]
    assert not missing, f"cells without an id: {missing} (nbformat.validator.normalize adds them)"


def test_name_is_numbered(nb):
    path, _ = nb
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)


def test_starts_with_colab_badge_title_and_goals(nb):
    path, data = nb
    first = data["cells"][0]
    text = _source(first)
    assert first["cell_type"] == "markdown"
    assert "colab-badge.svg" in text and f"notebooks/{path.name}" in text
    assert "\n# " in text, "a title after the badge"
    assert "What you will learn" in text and "Hardware" in text


def test_has_a_tagged_parameters_cell_with_quick(nb):
    _, data = nb
    params = [c for c in _code(data) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one code cell tagged 'parameters'"
    src = _source(params[0])
    for name in ["MODEL", "DEVICE", "QUICK"]:
        assert re.search(rf"^{name}\s*=", src, re.M), f"parameters cell lacks {name}"
    assert re.search(r"^QUICK\s*=\s*False", src, re.M), "QUICK must default to False"


def test_no_hard_coded_cuda(nb):
    _, data = nb
    for cell in _code(data):
        assert not re.search(r"""["']cuda(:\d+)?["']|\.cuda\(\)""", _source(cell)), (
            f"hard-coded cuda in: {_source(cell)[:200]}")


def test_executed_in_order_with_outputs(nb):
    _, data = nb
    counts = [c["execution_count"] for c in _code(data)]
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts}"


def test_no_errors_or_widget_state(nb):
    _, data = nb
    assert "widgets" not in data.get("metadata", {}), "widget state must not be committed"
    for cell in _code(data):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", _source(cell)[:200]
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})


def test_no_local_paths_in_outputs(nb):
    _, data = nb
    for cell in _code(data):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/(root|home|work|tmp)/", text), f"local path in output: {text[:200]}"


def test_ends_with_summary_exercises_and_a_check(nb):
    _, data = nb
    markdown = "\n".join(_source(c) for c in data["cells"] if c["cell_type"] == "markdown")
    assert "## Summary" in markdown and "## Exercises" in markdown
    last = data["cells"][-1]
    assert last["cell_type"] == "code" and "assert" in _source(last), "end with a check cell"


def test_seeded(nb):
    _, data = nb
    assert any("manual_seed" in _source(c) or "set_seed" in _source(c) for c in _code(data))


def test_no_control_characters_in_sources(nb):
    """A stray tab or backspace in a cell is almost always a lost backslash (\\t, \\b)."""
    _, data = nb
    for cell in data["cells"]:
        src = _source(cell)
        assert not re.search(r"[\x00-\x09\x0b-\x1f]", src), f"control character in: {src[:120]!r}"


#: A cell whose log line on stderr is the lesson's point (lesson 02: what ``Conversation``
#: dropped) carries this tag; every other cell's committed output has no stderr at all.
SHOWS_LOG = "shows-log"
PROGRESS_CHUNK = re.compile(r"\d+%\|")  # tqdm's "  4%|▍   | 2/48"


def test_outputs_hold_no_progress_chunks_warnings_or_stray_logs(nb):
    """What a reader sees on GitHub: results, not library noise. A long step leaves one finished
    line (``yi_helpers.quiet.progress``), never interim progress chunks."""
    _, data = nb
    for i, cell in enumerate(_code(data)):
        tagged = SHOWS_LOG in cell.get("metadata", {}).get("tags", [])
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            if out["output_type"] in ("display_data", "execute_result"):
                text = out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            where = f"code cell {i}: {text[:120]!r}"
            assert not PROGRESS_CHUNK.search(text), f"progress bar chunk in {where}"
            assert tagged or out.get("name") != "stderr", f"stderr output in {where}"
            assert tagged or not re.search(r"\bwarn(ing)?\b", text, re.I), f"a warning in {where}"
            assert tagged or not re.search(r"^(INFO|DEBUG)\s", text, re.M), f"a library's log line in {where}"
