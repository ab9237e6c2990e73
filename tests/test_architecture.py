"""The package's shape, checked: every module says what it exports, no private name crosses a
module border, the import graph (function-level imports included) has no cycle, and
docs/architecture.md's table of what each lesson uses is true."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "yi_helpers"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of a yi_helpers module in
    ``name``'s source, wherever it stands (top level or inside a function)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name.split(".")[0] == "yi_helpers"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "yi_helpers":
                target = node.module
            else:
                continue
            names = [a.name for a in node.names]
            if not node.module or target not in MODULES:  # `from . import embedded`
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
                found += [(s, [], node.lineno) for s in subs]
                names = [n for n in names if f"{target}.{n}" not in MODULES]
                if not names:
                    continue
            found.append((target, names, node.lineno))
    return found


def test_every_module_declares_all():
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(name)
            continue
        unknown = [n for n in exported if not hasattr(module, n)]
        assert not unknown, f"{name}.__all__ names what it does not define: {unknown}"
    assert not missing, f"modules without __all__: {missing}"


def test_no_private_name_crosses_a_module_border():
    crossings = [f"{name}:{line} takes {n} from {target}"
                 for name in MODULES for target, names, line in imports(name)
                 for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    tools = ROOT / "tools"
    for path in tools.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yi_helpers"):
                crossings += [f"tools/{path.name}:{node.lineno} takes {a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert not crossings, "private names imported across modules:\n" + "\n".join(crossings)


def graph() -> dict[str, set[str]]:
    return {name: {t for t, _, _ in imports(name) if t in MODULES and t != name}
            for name in MODULES}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_graph_has_no_cycle():
    # a package's __init__ re-exporting its submodules is not a cycle with them: drop the edges
    # from a submodule to its own package
    edges = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("idea, home", [
    ("perplexity", "yi_helpers.bench.perplexity"),
    ("accuracy_interval", "yi_helpers.bench.evaluation"),
    ("decode_tokens_per_s", "yi_helpers.bench.speed"),
    ("model_bytes", "yi_helpers.measure"),
    ("TensorBytes", "yi_helpers.measure"),
    ("cache_bytes", "yi_helpers.measure"),
    ("kv_cache_bytes", "yi_helpers.models"),
    ("kv_bytes_per_token", "yi_helpers.models"),
    ("resolve_model", "yi_helpers.resolve"),
    ("resolve_dtype", "yi_helpers.devices"),
    ("GB", "yi_helpers.units"),
])
def test_one_home_per_idea(idea, home):
    """Each idea is defined in one module; the others import it."""
    homes = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            defined = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                       [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)])
            if idea in defined:
                homes.append(name)
    assert homes == [home]


def lesson_modules(notebook: Path) -> set[str]:
    """The package's modules a lesson's code cells import (a subpackage counts as one)."""
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text(encoding="utf-8"))[
        "cells"] if c["cell_type"] == "code")
    code = re.sub(r"^(\s*)[%!].*$", r"\1pass", code, flags=re.MULTILINE)  # IPython lines
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yi_helpers"):
            if node.module == "yi_helpers":  # `from yi_helpers import load, embedded`
                package = importlib.import_module("yi_helpers")
                found |= {a.name if f"yi_helpers.{a.name}" in MODULES else
                          getattr(package, a.name).__module__.split(".")[1] for a in node.names}
            else:
                found.add(node.module.split(".")[1])
    return found - {"solutions"}


def test_the_lesson_table_of_the_architecture_page_is_true():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {m.group(1): set(m.group(2).split(", "))
             for m in re.finditer(r"^\| (\d\d) [^|]*\| ([\w, ]+) \|$", page, re.MULTILINE)}
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(table) == [p.name[:2] for p in notebooks], "one row per lesson"
    for notebook in notebooks:
        assert table[notebook.name[:2]] == lesson_modules(notebook), notebook.name
