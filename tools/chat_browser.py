"""Drive lesson 10's chat app in headless Chromium: the browser test's steps, and the lesson's
screenshots.

    python tools/chat_browser.py            # write notebooks/images/10_*.png (`make screenshots`)
    python tools/chat_browser.py --out DIR  # somewhere else

The app runs in this process on the embedded model, on a free loopback port; the browser is the
system's Chromium (tests/browser.py finds it; Playwright drives it, no browser download).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

#: The app's elements, by the ``elem_id`` that ``yi_helpers.webchat.build_ui`` gives them.
MESSAGE, SEND, STOP, REGENERATE, CLEAR = ("#message textarea", "#send", "#stop", "#regenerate",
                                          "#clear")
STATUS, CONTEXT = "#status", "#context"
BOT, USER = "#chat [data-testid=bot]", "#chat [data-testid=user]"
#: The screenshots' conversation: lesson 10's first question and its Chinese one
QUESTIONS = ("What is the capital of France?", "你好！请用一句话介绍一下长城。")


def bot_texts(page) -> list[str]:
    """The assistant messages on screen, oldest first."""
    return [el.inner_text() for el in page.query_selector_all(BOT)]


def status(page) -> str:
    return page.inner_text(STATUS).strip()


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


def reply_done(page) -> bool:
    return status(page).startswith(("Done", "Stopped", "⚠️"))


def screenshots(out: Path, url: str) -> list[Path]:
    """A short conversation (English, then Chinese) and the settings panel, as PNG files."""
    from browser import chromium

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        open_app(page, url)
        for text in QUESTIONS:
            n = len(bot_texts(page))
            type_and_send(page, text)
            wait_for(page, lambda p, n=n: first_reply_text(p, n))
            wait_for(page, reply_done, timeout_s=60)
        paths.append(out / "10_chat_app.png")
        page.screenshot(path=str(paths[-1]), full_page=True)
        page.click("text=System prompt and sampling")
        page.wait_for_timeout(500)
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

    from yi_helpers import load
    from yi_helpers.webchat import ChatApp, LocalBackend, Settings, launch

    model, tokenizer = load("embedded", device="cpu", dtype="float32")
    # lesson 10's app and greedy settings, so the pictures change only when the model or the
    # app does
    app = ChatApp(LocalBackend(model, tokenizer, max_context=512),
                  system="You are a helpful assistant. Answer briefly.",
                  settings=Settings(temperature=0, repetition_penalty=1.0, max_new_tokens=48))
    url, demo = launch(app)
    try:
        for path in screenshots(args.out, url):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
