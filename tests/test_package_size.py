"""The helper package stays small, and every name it exports is used.

The lessons teach the libraries; ``yi_helpers`` holds only what is not a lesson's point
(measuring, the memory planner, plots, data, by-hand versions checked against a library). The
goal is 5,500 lines for the first ten lessons, solutions included, and at most 500 more for the
lessons after them. ``LINES_FOR_TEN_LESSONS`` is where the package stands on the way there: it
only goes down. At most 180 exported names outside ``solutions/``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "yi_helpers"
LINES_FOR_TEN_LESSONS = 5_300  # the goal of 5,500 is met (5,262); it only goes down
LINES_FOR_LATER_LESSONS = 500  # lessons 11-13 together
MAX_EXPORTED = 180


def lessons() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def text_of(notebook: Path) -> str:
    """A lesson's code and its text (a name the text points a learner to is used)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells)


def exported() -> dict[Path, list[str]]:
    """``__all__`` of every module outside ``solutions/`` (a subpackage's ``__init__`` only
    re-exports its modules' names, so it is not counted twice)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "solutions" in path.parts or (path.name == "__init__.py" and path.parent != PACKAGE):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple))
                    and any(getattr(t, "id", None) == "__all__" for t in node.targets)):
                names[path] = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return names


def test_the_package_is_small():
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py"))
    later = max(0, len(lessons()) - 10)
    limit = LINES_FOR_TEN_LESSONS + (LINES_FOR_LATER_LESSONS * min(later, 3)) // 3
    assert lines <= limit, f"yi_helpers has {lines} lines, over its {limit} for {len(lessons())} lessons"


def test_few_exported_names():
    count = sum(len(names) for names in exported().values())
    assert count <= MAX_EXPORTED, f"{count} exported names, more than {MAX_EXPORTED}"


def test_every_exported_name_is_used():
    """By a notebook, a solution, a tool, a script, the site or another module of the package
    (a package's ``__init__`` re-exporting it does not count)."""
    sources = {p: text_of(p) for p in lessons()}
    for folder in ("yi_helpers", "tools", "scripts", "site"):
        sources |= {p: p.read_text(encoding="utf-8") for p in (ROOT / folder).rglob("*.py")
                    if p.name != "__init__.py"}  # a re-export is not a use
    unused = [f"{path.relative_to(ROOT)}: {name}"
              for path, names in exported().items() for name in names
              if not any(re.search(rf"\b{re.escape(name)}\b", text)
                         for other, text in sources.items() if other != path)]
    assert not unused, "exported but used nowhere else:\n" + "\n".join(unused)
