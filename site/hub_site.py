"""The hub's site as a Sphinx extension (loaded by ``site/conf.py``): what the repository's
Markdown and notebooks need, at build time, to become pages that work with no network.

The site is built from the repository as it is, never from edited copies:

- the home page is ``README.md``; the navigation (the lessons in order, the package reference,
  the notes and guides, the Chinese README) is added to it while Sphinx reads it, so that on
  GitHub the README stays plain Markdown;
- the Colab badge, an image on colab.research.google.com, is shown from the hub's own copy
  (``site/_static/colab-badge.svg``): the badge still links to Colab, but no page loads
  anything from outside the site;
- math (``$...$`` in the lessons) becomes MathML when the page is written, with docutils'
  converter: browsers draw it themselves, so no MathJax is loaded from a CDN;
- the package reference lists every module of ``yi_helpers`` with autodoc: the names of each
  module's ``__all__`` defined there (an undocumented constant, which autodoc leaves out, by
  its name and short value), and links to the ones it re-exports;
- ``index.html`` is a copy of the home page (``README.html``);
- a Mermaid diagram (``docs/architecture.md``) is shown as its source text: drawing it would
  take Mermaid's JavaScript from a CDN.
"""

from __future__ import annotations

import ast
import functools
import html
import importlib
import importlib.util
import pkgutil
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from run_notebooks import discover  # noqa: E402  (the lessons, in order)

#: The image every notebook's badge line and the README's table load from Colab.
COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
#: The hub's copy, as a path from the site's source folder (the repository's root).
LOCAL_BADGE = "/site/_static/colab-badge.svg"
HOME = "README"
REFERENCE = "site/reference"
CHINESE = "README.zh-CN"
#: What becomes a page: the READMEs, the lessons, the guides and notes, the GPU report the
#: lessons link to, and the site's own pages. Everything else in the repository is left out.
SOURCES = ["README.md", "README.zh-CN.md", "notebooks/[0-9][0-9]_*.ipynb", "docs/**.md",
           "reports/**.md", "site/*.md"]
#: The package whose modules the reference documents.
PACKAGE = "yi_helpers"
#: The longest assigned value the reference shows beside an undocumented constant.
SHORT_VALUE = 60


def skipped_folders(root: Path = ROOT) -> list[str]:
    """Top-level folders Sphinx must not even walk into (``.venv``, ``build``, ``.git``...):
    every one that holds no page."""
    keep = {pattern.split("/")[0] for pattern in SOURCES if "/" in pattern}
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in keep)


def local_badges(text: str) -> str:
    """``text`` with every Colab badge image taken from the site's own copy (the link around
    it, to the lesson on Colab, stays)."""
    return text.replace(COLAB_BADGE_URL, LOCAL_BADGE)


def lesson_docnames(root: Path = ROOT) -> list[str]:
    """The lessons' page names, in lesson order: ``notebooks/01_loading_yi``, ..."""
    return [f"notebooks/{path.stem}" for path in discover(root / "notebooks")]


def _toctree(caption: str, entries: list[str], glob: bool = False) -> str:
    options = [":hidden:", f":caption: {caption}"] + ([":glob:"] if glob else [])
    return "\n".join(["", "```{toctree}", *options, "", *entries, "```", ""])


def navigation(root: Path = ROOT) -> str:
    """The sidebar, as hidden toctrees appended to the home page's Markdown."""
    return "".join([
        _toctree("Lessons", lesson_docnames(root)),
        _toctree("Package reference", [REFERENCE]),
        _toctree("Guides and notes", ["docs/*", "docs/notes/*", "reports/**"], glob=True),
        _toctree("中文", [CHINESE]),
    ])


def public_modules(package: str = PACKAGE) -> list[str]:
    """Every module of the package (subpackages and their modules included, ``__main__``
    left out), sorted by name."""
    top = importlib.import_module(package)
    names = [package] + [info.name for info in pkgutil.walk_packages(top.__path__, f"{package}.")]
    return sorted(name for name in names if not name.endswith(".__main__"))


@functools.cache
def definitions(module_name: str) -> dict[str, str | None]:
    """The top-level names a module's own source defines: what it owns, as opposed to what it
    imports and re-exports. Each maps to the source of its value when it is an assignment
    (``"2 ** 10"``), None for a function or class."""
    spec = importlib.util.find_spec(module_name)
    source = Path(spec.origin).read_text(encoding="utf-8")
    names: dict[str, str | None] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = None
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names[target.id] = ast.get_source_segment(source, node.value)
    return names


def defined_names(module_name: str) -> frozenset[str]:
    """The top-level names a module's own source defines (see :func:`definitions`)."""
    return frozenset(definitions(module_name))


def documented_attributes(module_name: str) -> set[str]:
    """The module-level assignments that carry a doc comment (``#:``) or docstring: those
    autodoc documents; it leaves the others out even with ``:undoc-members:``."""
    from sphinx.pycode import ModuleAnalyzer

    docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    return {name for (namespace, name) in docs if namespace == ""}


def defining_module(name: str, modules: list[str]) -> str | None:
    """The module of ``modules`` whose own source defines ``name`` and lists it in ``__all__``
    (where the reference documents it), or None."""
    for module_name in modules:
        if name in definitions(module_name) and \
                name in getattr(importlib.import_module(module_name), "__all__", ()):
            return module_name
    return None


def module_section(module_name: str, modules: list[str]) -> str:
    """The reference's Markdown for one module: its docstring and the public names it defines
    (autodoc; an undocumented constant as its name and short value), then links to the public
    names it re-exports from the other ``modules``."""
    public = list(getattr(importlib.import_module(module_name), "__all__", []))
    defined = definitions(module_name)
    own = [name for name in public if name in defined]
    documented = documented_attributes(module_name)
    bare = [name for name in own if defined[name] is not None and name not in documented]
    members = [name for name in own if name not in bare]
    # autodoc writes reStructuredText: it is parsed as such inside eval-rst, not as MyST
    lines = [f"## `{module_name}`", "", "```{eval-rst}", f".. automodule:: {module_name}"]
    lines += [f"   :members: {', '.join(members)}", "   :undoc-members:"] if members else []
    for name in bare:
        lines += ["", f".. py:data:: {name}", f"   :module: {module_name}"]
        value = defined[name]
        if value and "\n" not in value and len(value) <= SHORT_VALUE:
            lines.append(f"   :value: {value}")
    lines += ["```", ""]
    elsewhere = []
    for name in public:
        if name not in own:
            home = defining_module(name, modules)
            elsewhere.append(f"{{py:obj}}`~{home}.{name}`" if home else f"`{name}`")
    if elsewhere:
        lines += [f"Also public here: {', '.join(elsewhere)}.", ""]
    return "\n".join(lines)


def reference(package: str = PACKAGE) -> str:
    """The Markdown appended to the reference page: one section per module."""
    modules = public_modules(package)
    return "\n".join(module_section(name, modules) for name in modules)


def _source_read(app, docname: str, source: list[str]) -> None:
    """Sphinx ``source-read``: the badge in every page, the navigation on the home page, the
    modules on the reference page."""
    source[0] = local_badges(source[0])
    if docname == HOME:
        source[0] += navigation()
    elif docname == REFERENCE:
        source[0] += "\n" + reference()


def mathml(latex: str, as_block: bool = False) -> str:
    """``latex`` as a MathML ``<math>`` element (docutils' converter). Raises docutils'
    ``MathError`` for LaTeX it does not know."""
    from docutils.utils.math.latex2mathml import tex2mathml

    return tex2mathml(latex, as_block=as_block)


def _math_html(latex: str, node, as_block: bool) -> str:
    """MathML for a page; LaTeX the converter does not know is a build warning (so `make site`
    fails) and is shown as code meanwhile."""
    from docutils.utils.math import MathError
    from sphinx.util import logging

    try:
        return mathml(latex, as_block)
    except MathError as error:
        logging.getLogger(__name__).warning("math not converted to MathML (%s): %s", error,
                                            latex, location=node)
        return f"<code>{html.escape(latex)}</code>"


def _visit_inline_math(translator, node) -> None:
    from docutils import nodes

    translator.body.append(_math_html(node.astext(), node, as_block=False))
    raise nodes.SkipNode


def _visit_block_math(translator, node) -> None:
    from docutils import nodes

    translator.body.append(translator.starttag(node, "div", CLASS="math"))
    translator.body.append(_math_html(node.astext(), node, as_block=True))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def _copy_home(app, exception) -> None:
    """Sphinx ``build-finished``: ``index.html``, the address a browser opens first, is the
    home page (same folder, so every relative link in it still holds)."""
    if exception is None and app.builder.format == "html":
        out = Path(app.outdir)
        shutil.copyfile(out / f"{HOME}.html", out / "index.html")


def setup(app) -> dict:
    from pygments.lexers.special import TextLexer

    app.add_lexer("mermaid", TextLexer)  # docs/architecture.md's diagram: shown as its text
    app.add_html_math_renderer("mathml", (_visit_inline_math, None), (_visit_block_math, None))
    app.connect("source-read", _source_read)
    app.connect("build-finished", _copy_home)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
