"""The exercise solutions of lesson 10 (a chat app in the browser) are correct."""

from __future__ import annotations

import pytest

from yi_helpers.solutions import lesson10
from yi_helpers.webchat import ChatApp, LocalBackend, Settings, connect, launch, text_of

GREEDY = Settings(temperature=0, repetition_penalty=1.0, max_new_tokens=10)


@pytest.fixture(scope="module")
def backend(embedded):
    return LocalBackend(*embedded, max_context=512)


def test_to_markdown_writes_every_message_in_order():
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}]
    assert lesson10.to_markdown(history, "Be brief.") == (
        "**System:** Be brief.\n\n**You:** Hi\n\n**Assistant:** Hello!\n")
    assert lesson10.to_markdown([], "") == "\n"


@pytest.mark.slow
def test_the_markdown_button_is_an_endpoint_of_the_app(backend):
    url, demo = launch(ChatApp(backend, settings=GREEDY), extend=lesson10.add_markdown_export)
    try:
        client = connect(url)
        history = client.predict("Name a fruit.", [], "", 0, 0.8, 0, 1.0, 6, api_name="/send")[0]
        markdown = client.predict(history, "", api_name="/markdown")
        assert markdown.startswith("**You:** Name a fruit.\n\n**Assistant:** ")
        assert markdown.strip().endswith(text_of(history[-1]).strip())
    finally:
        demo.close()


def test_speed_is_written_under_each_reply(backend):
    app = lesson10.SpeedChatApp(backend, settings=GREEDY)
    updates = list(app.send("Name a fruit.", [], ""))
    last = text_of(updates[-1][0][-1])
    assert last.endswith(f"*{app.last.tokens} tokens · {app.last.tokens_per_s:.1f} tokens/s*")
    assert all("tokens/s*" not in text_of(u[0][-1]) for u in updates[:-1])  # only when done
    assert list(app.send("", [], ""))[-1][2] == "Type a message first."  # errors pass through


def test_token_counter_counts_the_message_and_the_prompt(backend):
    app = ChatApp(backend, system="Be brief.", settings=GREEDY)
    tok = backend.tokenizer
    line = lesson10.token_counter(app, "How are you?", [])
    own = len(tok("How are you?", add_special_tokens=False)["input_ids"])
    prompt = app.conversation([{"role": "user", "content": "How are you?"}], "Be brief.")
    assert line == f"this message: {own} tokens · the prompt: {prompt.count_tokens()} of 512"


def test_questions_have_answers():
    assert len(lesson10.QUESTIONS) == len(lesson10.ANSWERS) == 3
