"""Lesson 10's chat app in a real browser: headless Chromium types, sends, stops, sends Chinese.

Part of `make test-extra` (CI installs Chromium: .ci/run); without a browser it skips with
install advice. The app is the lesson's own (its recipe cells, run in this process on the
embedded model), so the test sees both sides: what the page shows and whether the generation
thread still runs.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from browser import chromium, external, watch_console_errors, watch_requests
from chat_browser import (BOT, STOP, USER, bot_texts, first_reply_text, generating, launch,
                          lesson_app, open_app, set_greedy, type_and_send, wait_for)
from conftest import ROOT

pytestmark = pytest.mark.extra

#: The issue's bar, reported (never asserted: it depends on the CPU): the first token shows in
#: the browser within 2 s of the click on the 2-core reference host.
TTFT_GOAL_S = 2.0
#: A prompt whose reply runs far past the moment we press stop
LONG_PROMPT = "Write a long story about a dragon who learns to bake bread. Use many details."


def generate_running() -> bool:
    """The lesson's generation thread (``stream_reply`` names it) is alive."""
    return any(t.name == "generate" for t in threading.enumerate())


@pytest.fixture(scope="module")
def running_app():
    # 400 new tokens would take >10 s: the test stops the long reply after 1.5 s
    demo = lesson_app(MAX_NEW_TOKENS=400)["demo"]
    url = launch(demo)
    yield url
    demo.close()


def test_chat_app_in_headless_chromium(running_app):
    url = running_app
    results = {}
    started = time.perf_counter()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requests = watch_requests(page)
        errors = watch_console_errors(page)
        open_app(page, url)
        set_greedy(page, max_new_tokens=400)  # the same reply on every run

        # 1. an English message: the reply appears, grows, and ends
        click = type_and_send(page, "What is the capital of France?")
        first = wait_for(page, lambda p: first_reply_text(p, 0), timeout_s=20)
        results["ttft_browser_s"] = round(time.perf_counter() - click, 3)
        sizes = [len(first)]
        while generating(page):
            sizes.append(len(bot_texts(page)[-1]))
            page.wait_for_timeout(20)
        sizes.append(len(bot_texts(page)[-1]))
        assert sizes[-1] > sizes[0], "the reply grew on screen as it streamed"
        assert "The model sees 2 messages" in page.inner_text("body"), "the window line shows"
        results["ttft_goal_met"] = results["ttft_browser_s"] <= TTFT_GOAL_S

        # 2. stop mid-reply: no text arrives after the stop, and the generation thread ends
        n = len(bot_texts(page))
        click = type_and_send(page, LONG_PROMPT)
        wait_for(page, lambda p: first_reply_text(p, n), timeout_s=20)
        results["ttft_browser_second_message_s"] = round(time.perf_counter() - click, 3)
        page.wait_for_timeout(1500)
        assert generate_running(), "still generating 1.5 s in: the prompt's reply is long"
        page.click(STOP)
        wait_for(page, lambda p: not generating(p), timeout_s=10)
        deadline = time.perf_counter() + 10
        while generate_running() and time.perf_counter() < deadline:
            page.wait_for_timeout(20)
        assert not generate_running(), "the generation thread ended with the stop"
        stopped_text = bot_texts(page)[-1]
        page.wait_for_timeout(1500)
        assert bot_texts(page)[-1] == stopped_text, "no token arrived after the stop"
        results["stopped_after_characters"] = len(stopped_text)

        # 3. a Chinese message, in a new chat (a reload is a new session), gets a reply
        open_app(page, url)
        set_greedy(page, max_new_tokens=48)
        click = type_and_send(page, "你好！请用一句话介绍一下长城。")
        wait_for(page, lambda p: first_reply_text(p, 0), timeout_s=20)
        results["ttft_browser_second_session_s"] = round(time.perf_counter() - click, 3)
        wait_for(page, lambda p: not generating(p), timeout_s=60)
        assert page.query_selector_all(USER)[-1].inner_text().startswith("你好")
        results["chinese_reply"] = bot_texts(page)[-1][:60]

        # 4. a message too long for the window: the app's words in a toast, the app goes on
        type_and_send(page, "tea " * 9000)
        wait_for(page, lambda p: "does not fit" in p.inner_text("body"), timeout_s=20)

        shots = ROOT / "build" / "test-extra"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "chat_app_error.png"))
        assert not external(requests), f"requests left the machine: {external(requests)}"
        assert not errors, f"console errors: {errors}"
        results["requests"] = len(requests)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (shots / "chat_browser.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(json.dumps(results, ensure_ascii=False))  # times for the ledger, not asserted
