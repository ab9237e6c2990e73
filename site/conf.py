"""Sphinx settings of the hub's site (`make site`, docs/site.md): the repository's README,
lessons (with their committed outputs, never re-executed), guides and package reference as
static pages that load nothing from outside the site. The build-time rules are in
``hub_site.py`` beside this file.

The source folder is the repository's root (``sphinx-build -c site . build/site``), so pages
keep the repository's layout and the README's and lessons' relative links hold unchanged.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hub_site  # noqa: E402

project = "Yi Learning Hub"
author = "the Yi Learning Hub contributors"
copyright = "the Yi Learning Hub contributors; Yi models by 01.AI"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "hub_site"]

root_doc = hub_site.HOME
include_patterns = hub_site.SOURCES
exclude_patterns = hub_site.skipped_folders()

# Notebooks: rendered as committed (nbval checks those outputs), never executed here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # the lessons keep no widget state: no require.js from a CDN
nb_merge_streams = True  # one block per cell for its printed lines
myst_enable_extensions = ["dollarmath"]  # the lessons' $...$ math
myst_heading_anchors = 4  # links such as CONTRIBUTING.md#test-budget

# Math as MathML, drawn by the browser (hub_site.py): no MathJax from a CDN.
html_math_renderer = "mathml"

# Package reference (site/reference.md): each module's public names, signatures as written.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"no-value": True}  # a table such as REGISTRY would fill a screen

# Furo: its templates, CSS, JavaScript and icons ship inside the wheel; it loads no web fonts.
html_theme = "furo"
html_title = "Yi Learning Hub"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # else browsers ask for /favicon.ico (a 404)
html_copy_source = False  # no _sources/ copies: the repository has them
html_show_sourcelink = False
