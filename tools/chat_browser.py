"""Drive lesson 10's chat app in headless Chromium: the browser test's steps, and the lesson's
screenshots.

    python tools/chat_browser.py            # write notebooks/images/10_*.png (`make screenshots`)
    python tools/chat_browser.py --out DIR  # somewhere else

The app is the lesson's own: its parameters cell and its recipe cells run in this process, on
the embedded model, and the app is served on a free loopback port. The browser is the system's
Chromium (tests/browser.py finds it; Playwright drives it, no browser download).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
LESSON = ROOT / "notebooks" / "10_chat_app.ipynb"

#: Gradio's ChatInterface, by its own test ids and classes
MESSAGE, SEND, STOP = "textarea[data-testid=textbox]", "button.submit-button", "button.stop-button"
BOT, USER = "[data-testid=bot]", "[data-testid=user]"
SETTINGS = "text=System prompt and sampling"
#: The screenshots' conversation: lesson 10's first question and its Chinese one
QUESTIONS = ("What is the capital of France?", "你好！请用一句话介绍一下长城。")


def lesson_app(**parameters) -> dict:
    """Run lesson 10's parameters cell, then ``parameters`` (the embedded model by default),
    then its recipe cells; returns their namespace (``demo``, ``stream_reply``, ``stop``...)."""
    from yi_helpers.resolve import resolve_model

    parameters = {"MODEL": resolve_model("embedded").location, "DEVICE": "cpu", **parameters}
    namespace: dict = {}
    for cell in json.loads(LESSON.read_text(encoding="utf-8"))["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and {"parameters", "recipe"} & set(tags):
            exec(compile("".join(cell["source"]), f"{LESSON.name}:{tags}", "exec"), namespace)
            if "parameters" in tags:
                namespace.update(parameters)
    return namespace


def launch(demo) -> str:
    """Serve ``demo`` on a free port of 127.0.0.1 without blocking; its URL. One short reply
    first: the first event of a fresh server pays a one-off set-up (about 1 s here)."""
    from gradio_client import Client

    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, inline=False,
                            quiet=True, ssr_mode=False)
    # message, system prompt, temperature, top_p, repetition penalty, max new tokens
    Client(url, verbose=False).predict("Hi", "", 0, 0.8, 1.0, 2, api_name="/chat")
    return url


def bot_texts(page) -> list[str]:
    """The assistant messages on screen, oldest first."""
    return [el.inner_text() for el in page.query_selector_all(BOT)]


def open_app(page, url: str, timeout_s: float = 30) -> None:
    page.goto(url)
    page.wait_for_selector(MESSAGE, timeout=timeout_s * 1000)


def type_and_send(page, text: str) -> float:
    """Type ``text``, press Send; returns the time of the click (``time.perf_counter``)."""
    page.fill(MESSAGE, text)
    start = time.perf_counter()
    page.click(SEND)
    return start


def wait_for(page, condition, timeout_s: float = 30, poll_s: float = 0.02):
    """Poll ``condition(page)`` until it returns something truthy; that value, or TimeoutError."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        value = condition(page)
        if value:
            return value
        page.wait_for_timeout(poll_s * 1000)
    raise TimeoutError(f"the page did not reach the expected state in {timeout_s} s")


def first_reply_text(page, n_before: int) -> str:
    """The newest assistant message's text, once a new one has some."""
    texts = bot_texts(page)
    return texts[-1] if len(texts) > n_before and texts[-1].strip() else ""


def generating(page) -> bool:
    """The stop button shows while a reply streams."""
    return page.is_visible(STOP)


def toggle_settings(page, visible: bool) -> None:
    """Open (or close) the settings panel; a click before the page is live is retried."""
    box = page.get_by_label("number input for temperature (0: greedy)")
    wait_for(page, lambda p: box.is_visible() == visible or p.click(SETTINGS), timeout_s=10,
             poll_s=0.5)


def set_greedy(page, max_new_tokens: int = 48) -> None:
    """Set the temperature to 0 (greedy: the same reply each run) and the reply's length."""
    toggle_settings(page, True)
    for label, value in (("temperature (0: greedy)", 0), ("max new tokens", max_new_tokens)):
        box = page.get_by_label(f"number input for {label}")
        box.fill(str(value))
        box.press("Enter")
    toggle_settings(page, False)


def screenshots(out: Path, url: str) -> list[Path]:
    """A short greedy conversation (English, then Chinese) and the settings panel, as PNGs."""
    from browser import chromium

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        open_app(page, url)
        set_greedy(page)
        for text in QUESTIONS:
            n = len(bot_texts(page))
            type_and_send(page, text)
            wait_for(page, lambda p, n=n: first_reply_text(p, n))
            wait_for(page, lambda p: not generating(p), timeout_s=60)
        paths.append(out / "10_chat_app.png")
        page.screenshot(path=str(paths[-1]), full_page=True)
        toggle_settings(page, True)
        paths.append(out / "10_chat_settings.png")
        page.screenshot(path=str(paths[-1]), full_page=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks" / "images")
    args = parser.parse_args(argv)
    import shutil
    import subprocess

    if shutil.which("fc-list") and not subprocess.run(["fc-list", ":lang=zh"], text=True,
                                                       capture_output=True).stdout.strip():
        print("warning: no CJK font: the Chinese turn will show as boxes (Debian: "
              "apt-get install fonts-noto-cjk)", file=sys.stderr)
    demo = lesson_app()["demo"]  # the lesson's app
    url = launch(demo)
    try:
        for path in screenshots(args.out, url):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
