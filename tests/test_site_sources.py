"""The site's build-time rules (site/hub_site.py, site/conf.py) without building it: the badge
from the site's own copy, the navigation in lesson order, the pages Sphinx reads and the folders
it skips, the reference's modules, and the settings that keep the pages offline. The built site
itself is checked in a browser by tests/test_site.py (`make test-extra`)."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

from conftest import ROOT, discover_notebooks, read_notebook

sys.path.insert(0, str(ROOT / "site"))

import hub_site  # noqa: E402


def test_the_colab_badge_is_shown_from_the_sites_own_copy_and_still_links_colab():
    first = next(c for c in read_notebook(discover_notebooks()[0])["cells"]
                 if c["cell_type"] == "markdown")
    line = "".join(first["source"]).splitlines()[0]  # the badge line tools/colab.py writes
    local = hub_site.local_badges(line)
    assert hub_site.COLAB_BADGE_URL in line and hub_site.COLAB_BADGE_URL not in local
    assert f"]({hub_site.LOCAL_BADGE})" in local
    assert "(https://colab.research.google.com/github/" in local  # the link is kept
    svg = ROOT / hub_site.LOCAL_BADGE.lstrip("/")
    assert svg.read_text(encoding="utf-8").startswith("<svg")


def test_the_navigation_lists_every_lesson_in_order_then_reference_notes_and_chinese():
    nav = hub_site.navigation()
    lessons = [f"notebooks/{path.stem}" for path in discover_notebooks()]
    listed = re.findall(r"^notebooks/\S+$", nav, re.M)
    assert listed == lessons == hub_site.lesson_docnames()
    captions = re.findall(r"^:caption: (.+)$", nav, re.M)
    assert captions == ["Lessons", "Package reference", "Guides and notes", "中文"]
    for docname in (hub_site.REFERENCE, hub_site.CHINESE):
        assert f"\n{docname}\n" in nav and (ROOT / f"{docname}.md").is_file()
    assert nav.count(":hidden:") == 4  # the README's own text stays the page


def test_sphinx_skips_every_folder_without_pages(tmp_path):
    for name in ("notebooks", "docs", "reports", "site", ".venv", ".git", "build", "yi_helpers"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("# x\n")
    assert hub_site.skipped_folders(tmp_path) == [".git", ".venv", "build", "yi_helpers"]


def test_the_reference_covers_every_module_of_the_package():
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for p in (ROOT / "yi_helpers").rglob("*.py") if p.name != "__main__.py"}
    assert set(hub_site.public_modules()) == files


def test_a_module_section_documents_its_own_names_and_links_its_re_exports():
    units = hub_site.module_section("yi_helpers.units", ["yi_helpers.units"])
    own = importlib.import_module("yi_helpers.units").__all__
    assert ".. automodule:: yi_helpers.units" in units
    for name in own:  # each one, by autodoc or (an undocumented constant) by name and value
        assert re.search(rf"(:members: .*\b{name}\b|\.\. py:data:: {name}\n)", units), name
    assert ".. py:data:: GB\n   :module: yi_helpers.units\n   :value: 1e9" in units
    bench = hub_site.module_section("yi_helpers.bench", hub_site.public_modules())
    assert ":members:" not in bench  # the package only re-exports
    assert "{py:obj}`~yi_helpers.bench.speed.measure_generation`" in bench


def test_every_formula_of_the_lessons_converts_to_mathml():
    """The site draws math as MathML (no MathJax): a formula docutils cannot convert would fail
    `make site`; here it fails in seconds, naming the lesson."""
    from docutils.utils.math import MathError

    def prose(cell: dict) -> str:  # code (`$HOME`) is not math
        return re.sub(r"```.*?```|`[^`]*`", "", "".join(cell["source"]), flags=re.S)

    formulas = [(path.name, formula) for path in discover_notebooks()
                for cell in read_notebook(path)["cells"] if cell["cell_type"] == "markdown"
                for formula in re.findall(r"(?<![\\$])\$([^$\n]+)\$", prose(cell))]
    assert len(formulas) > 20  # lessons 03 and 05 explain with formulas
    failed = []
    for lesson, formula in formulas:
        try:
            assert hub_site.mathml(formula).startswith("<math")
        except MathError as error:
            failed.append(f"{lesson}: ${formula}$: {error}")
    assert failed == []
    with pytest.raises(MathError):
        hub_site.mathml(r"\notacommand x")


def test_the_settings_keep_every_page_offline_and_the_notebooks_unexecuted():
    conf = importlib.import_module("conf")
    assert conf.nb_execution_mode == "off"
    assert conf.nb_ipywidgets_js == {}  # no require.js from a CDN
    assert conf.html_math_renderer == "mathml"  # no MathJax from a CDN
    assert conf.html_theme == "furo" and conf.root_doc == "README"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^site: setup\n\t\$\(PY\) -m sphinx -E -W .*-c site .* \. build/site$",
                     makefile, re.M)
