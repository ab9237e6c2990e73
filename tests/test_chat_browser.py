"""Lesson 10's chat app in a real browser: headless Chromium types, sends, stops, clears.

Part of `make test-extra` (CI installs Chromium: .ci/run); without a browser it skips with
install advice. The app runs in this process on the embedded model, so the test sees both sides:
what the page shows and whether the generation thread still runs.
"""

from __future__ import annotations

import json
import time

import pytest

from browser import chromium, external, watch_console_errors, watch_requests
from chat_browser import (BOT, CLEAR, STOP, USER, bot_texts, first_reply_text, open_app, reply_done,
                          status, type_and_send, wait_for)
from conftest import ROOT

pytestmark = pytest.mark.extra

#: The issue's bar: the first token shows in the browser within 2 s of the click (this CPU).
TTFT_LIMIT_S = 2.0
#: A prompt whose reply runs far past the moment we press stop
LONG_PROMPT = "Write a long story about a dragon who learns to bake bread. Use many details."


@pytest.fixture(scope="module")
def running_app(embedded):
    from yi_helpers.webchat import ChatApp, LocalBackend, Settings, launch

    model, tokenizer = embedded
    backend = LocalBackend(model, tokenizer)
    # greedy: the same reply on every run; 400 tokens would take >10 s, we stop after 1.5 s
    app = ChatApp(backend, system="You are a helpful assistant.",
                  settings=Settings(temperature=0, max_new_tokens=400))
    url, demo = launch(app)
    yield app, url
    demo.close()


def test_chat_app_in_headless_chromium(running_app):
    app, url = running_app
    backend = app.backend
    results = {}
    started = time.perf_counter()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requests = watch_requests(page)
        errors = watch_console_errors(page)
        open_app(page, url)

        # 1. an English message: the reply appears, grows, and ends
        click = type_and_send(page, "What is the capital of France?")
        first = wait_for(page, lambda p: first_reply_text(p, 0), timeout_s=20)
        results["ttft_browser_s"] = round(time.perf_counter() - click, 3)
        sizes = [len(first)]
        while not reply_done(page):
            sizes.append(len(bot_texts(page)[-1]))
            page.wait_for_timeout(20)
        sizes.append(len(bot_texts(page)[-1]))
        assert sizes[-1] > sizes[0], "the reply grew on screen as it streamed"
        assert status(page).startswith("Done"), status(page)
        assert results["ttft_browser_s"] <= TTFT_LIMIT_S

        # 2. stop mid-reply: no text arrives after the stop, and the generation thread is idle
        n = len(bot_texts(page))
        type_and_send(page, LONG_PROMPT)
        wait_for(page, lambda p: first_reply_text(p, n), timeout_s=20)
        page.wait_for_timeout(1500)
        assert backend.busy, "still generating 1.5 s in: the prompt's reply is long"
        page.click(STOP)
        wait_for(page, lambda p: status(p).startswith("Stopped"), timeout_s=10)
        stopped_text = bot_texts(page)[-1]
        assert not backend.busy, "the generation thread ended with the stop"
        assert app.last.stopped and app.last.tokens < 400
        page.wait_for_timeout(1500)
        assert bot_texts(page)[-1] == stopped_text, "no token arrived after the stop"
        results["stopped_after_tokens"] = app.last.tokens

        # 3. stop when nothing runs, and an empty message: a clear line, the app keeps working
        page.click(STOP)
        wait_for(page, lambda p: "Nothing is running" in status(p), timeout_s=10)
        type_and_send(page, "   ")
        wait_for(page, lambda p: "Type a message first" in status(p), timeout_s=10)

        # 4. a Chinese message gets a reply
        n = len(bot_texts(page))
        type_and_send(page, "你好！请用一句话介绍一下长城。")
        wait_for(page, lambda p: first_reply_text(p, n), timeout_s=20)
        wait_for(page, reply_done, timeout_s=60)
        assert page.query_selector_all(USER)[-1].inner_text().startswith("你好")
        results["chinese_reply"] = bot_texts(page)[-1][:60]

        # 5. clear
        page.click(CLEAR)
        wait_for(page, lambda p: not p.query_selector_all(BOT), timeout_s=10)

        shots = ROOT / "build" / "test-extra"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "chat_app_cleared.png"))
        assert not external(requests), f"requests left the machine: {external(requests)}"
        assert not errors, f"console errors: {errors}"
        results["requests"] = len(requests)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (shots / "chat_browser.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(json.dumps(results, ensure_ascii=False))
    assert results["seconds"] <= 60
