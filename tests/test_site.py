"""The hub's website (`make site`, docs/site.md), built once by `make site` itself and then
checked two ways: statically (every lesson a page in lesson order, the Colab badge from the
site's own copy, nothing loaded from outside, every public name in the reference) and in
headless Chromium, page by page (no console errors, no request leaving the machine, every image
drawn, every internal link and anchor resolves, the search finds "GPTQ"). Screenshots of the
home page and of a lesson land in build/site-screenshots/."""

from __future__ import annotations

import functools
import importlib
import re
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from browser import chromium, external, watch_console_errors, watch_requests
from conftest import ROOT

sys.path.insert(0, str(ROOT / "site"))

from hub_site import (CHINESE, COLAB_BADGE_URL, defined_names, lesson_docnames,  # noqa: E402
                      public_modules)

pytestmark = pytest.mark.extra

SITE = ROOT / "build" / "site"
SCREENSHOTS = ROOT / "build" / "site-screenshots"
#: `make site`: about 15 s of Sphinx here, plus `make setup`'s check (instant when up to date).
BUILD_TIMEOUT_S = 300
#: How an image that did not load shows up: not complete, or complete with no pixels. Lazy
#: images are asked to load first, so that one below the fold counts too.
BROKEN_IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = "eager"; });
    await Promise.all(images.map(img => img.decode().catch(() => null)));
    return images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src);
}"""


@pytest.fixture(scope="module")
def site() -> Path:
    """build/site, freshly built by `make site` (warnings fail it: -W)."""
    start = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "site"], cwd=ROOT,
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, f"make site failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    print(f"make site: {time.monotonic() - start:.1f} s")
    return SITE


def pages(site: Path) -> list[str]:
    """Every HTML page of the site, as a path from its root (Sphinx's own folders, ``_static``
    and the like, hold none)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(site).parts))


def read(site: Path, page: str) -> str:
    return (site / page).read_text(encoding="utf-8")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def server(site):
    """build/site over HTTP on 127.0.0.1 (a free port), from a thread of this process."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


# --- the built files ----------------------------------------------------------------------

def test_every_lesson_is_a_page_in_lesson_order_in_the_sidebar(site):
    lessons = [f"{name}.html" for name in lesson_docnames()]
    assert lessons and all((site / page).exists() for page in lessons)
    sidebar = read(site, "index.html").split('class="sidebar-tree"', 1)[1].split('class="main"')[0]
    linked = re.findall(r'href="(notebooks/[^"#]+\.html)"', sidebar)
    assert linked == lessons
    # the home page is the README, with the link to the Chinese one
    assert "<h1>Yi Learning Hub<" in read(site, "index.html")
    assert f'href="{CHINESE}.html"' in read(site, "index.html")
    assert "ModelScope" in read(site, f"{CHINESE}.html")


def test_every_lesson_page_has_its_colab_badge_from_the_site_itself(site):
    for name in lesson_docnames():
        html = read(site, f"{name}.html")
        notebook = name.split("/")[-1] + ".ipynb"
        link = re.search(r'<a class="reference external" href="(https://colab\.research\.google'
                         r'\.com/github/[^"]+)"><img[^>]*src="([^"]+)"', html)
        assert link, f"{name}: no Colab badge"
        assert link[1].endswith(f"/notebooks/{notebook}")  # at the ref tools/colab.py names
        assert link[2] == "../_images/colab-badge.svg", f"{name}: badge image {link[2]}"
    assert (site / "_images" / "colab-badge.svg").read_text().startswith("<svg")


def test_no_page_loads_anything_from_outside(site):
    """Scripts, styles, images and frames come from the site: no CDN (MathJax, require.js),
    no web font, no badge image from Colab. Links to other sites are fine."""
    loads = re.compile(r'<(?:script|img|iframe|source)\b[^>]*\bsrc="(https?:)?//[^"]*"'
                       r'|<link\b[^>]*\bhref="(https?:)?//[^"]*"')
    found = {page: loads.findall(read(site, page)) for page in pages(site)}
    assert {page: hits for page, hits in found.items() if hits} == {}
    for page in pages(site):
        assert COLAB_BADGE_URL not in read(site, page), page
    css = "\n".join(p.read_text(encoding="utf-8") for p in (site / "_static").rglob("*.css"))
    assert not re.search(r"@import|url\((['\"]?)https?:", css)


def test_math_is_mathml_and_no_page_asks_for_mathjax(site):
    lessons_with_math = [page for page in pages(site) if "<math" in read(site, page)]
    assert "notebooks/05_quantization.html" in lessons_with_math
    mathjax = re.compile(r"<script[^>]*mathjax|MathJax\s*=", re.IGNORECASE)
    assert not [page for page in pages(site) if mathjax.search(read(site, page))]


def test_the_reference_documents_every_public_name(site):
    html = read(site, "site/reference.html")
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        own = set(getattr(module, "__all__", ())) & defined_names(module_name)
        missing += [f"{module_name}.{name}" for name in sorted(own)
                    if f'id="{module_name}.{name}"' not in html]
        if f'id="module-{module_name}"' not in html:
            missing.append(module_name)
    assert missing == []


# --- in the browser -----------------------------------------------------------------------

def _link_problem(site: Path, page: str, href: str) -> str | None:
    """What is wrong with an internal link, or None: its file must exist, and so must its
    anchor in that file."""
    parts = urlsplit(href)
    path = unquote(parts.path).lstrip("/") or "index.html"
    target = site / path
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{page}: link to a missing page {href}"
    if parts.fragment and target.suffix == ".html":
        anchor = unquote(parts.fragment)
        if f'id="{anchor}"' not in target.read_text(encoding="utf-8"):
            return f"{page}: link to a missing anchor {href}"
    return None


def test_every_page_renders_offline_in_chromium(site, server, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshots = {"index.html": "home.png", f"{lesson_docnames()[0]}.html": "lesson.png"}
    problems: list[str] = []
    links: dict[str, set[str]] = {}
    all_pages = pages(site)
    assert "index.html" in all_pages and "search.html" in all_pages
    for page_path in all_pages:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests = watch_requests(page)
        errors = watch_console_errors(page)
        response = page.goto(f"{server}/{page_path}", wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"{page_path}: HTTP {response.status if response else 'no answer'}")
        for src in page.evaluate(BROKEN_IMAGES_JS):
            problems.append(f"{page_path}: image not drawn {src}")
        for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
            if href.startswith(server):
                links.setdefault(href.removeprefix(server), set()).add(page_path)
        if page_path in screenshots:
            page.screenshot(path=str(SCREENSHOTS / screenshots[page_path]))
        page.close()
        problems += [f"{page_path}: console error {e}" for e in errors]
        problems += [f"{page_path}: request left the machine {u}" for u in external(requests)]
    for href, on_pages in sorted(links.items()):
        problem = _link_problem(site, sorted(on_pages)[0], href)
        if problem:
            problems.append(problem)
    assert problems == []
    assert len(links) > 3 * len(lesson_docnames())  # the walk did see the sidebar's links
    for name in screenshots.values():
        assert (SCREENSHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_search_page_finds_gptq_in_the_quantization_lesson(site, server, browser):
    page = browser.new_page()
    requests = watch_requests(page)
    errors = watch_console_errors(page)
    page.goto(f"{server}/search.html?q=GPTQ", wait_until="load")
    page.wait_for_selector("#search-results ul.search li a", timeout=20_000)
    found = page.eval_on_selector_all("#search-results ul.search li a",
                                      "as => as.map(a => a.getAttribute('href'))")
    page.close()
    assert any(href.startswith("notebooks/05_quantization.html") for href in found), found
    assert errors == [] and external(requests) == []
