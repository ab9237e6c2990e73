"""Headless Chromium for the browser tests (`make test-extra`): the system's browser, driven by
Playwright's Python API, with no browser download.

    with chromium() as browser:
        page = browser.new_page()
        requests = watch_requests(page)
        page.goto("http://127.0.0.1:7860/")
        assert not external(requests)

Where no Chromium is installed the tests skip with install advice, except under CI
(``YI_HUB_REQUIRE_BROWSER=1``, set by ``.ci/run`` after it installs the browser): there a missing
browser is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

#: Where Debian/Ubuntu's packages put the browser; ``YI_HUB_CHROMIUM`` names another one.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_ADVICE = ("no Chromium found: install it (Debian/Ubuntu: `sudo apt-get install -y "
                  "chromium`; macOS: install Google Chrome) or set "
                  "YI_HUB_CHROMIUM=/path/to/chrome. CI installs it (.ci/run).")
#: Hosts a page of the hub may load from: this machine only.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str | None:
    """The browser to drive, or None when none is installed."""
    named = os.environ.get("YI_HUB_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_or_skip() -> str:
    """The browser's path; skips the test (fails it under ``YI_HUB_REQUIRE_BROWSER=1``) when
    there is none, or when Playwright is not installed."""
    required = os.environ.get("YI_HUB_REQUIRE_BROWSER") == "1"
    path = chromium_path()
    if path is None:
        if required:
            pytest.fail(INSTALL_ADVICE)
        pytest.skip(INSTALL_ADVICE)
    try:
        import playwright  # noqa: F401
    except ImportError:
        message = "Playwright is missing: `make setup` installs it (the `dev` extra)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A headless Chromium (Playwright ``Browser``), closed on exit. ``--no-sandbox`` is needed
    when running as root (containers, CI)."""
    from playwright.sync_api import sync_playwright

    path = chromium_or_skip()
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


def watch_requests(page) -> list[str]:
    """Every URL the page requests from now on (appended as they happen)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def is_local(url: str) -> bool:
    """True for a request that stays on this machine (loopback, ``data:``, ``blob:``, files)."""
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "file", "about", "chrome", "chrome-extension"}:
        return True
    return parts.hostname in LOCAL_HOSTS


def external(urls: list[str]) -> list[str]:
    """The requests of ``urls`` that left the machine."""
    return [url for url in urls if not is_local(url)]


def watch_console_errors(page) -> list[str]:
    """Console errors and uncaught page errors, appended as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors
