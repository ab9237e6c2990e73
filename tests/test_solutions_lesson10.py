"""The exercise solutions of lesson 10 (a chat app in the browser) work with the lesson's app.

The app is the lesson's own: its recipe cells run here on the embedded model
(``tools/chat_browser.lesson_app``)."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import ROOT
from yi_helpers.solutions import lesson10

sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="module")
def lesson():
    from chat_browser import lesson_app

    return lesson_app(MAX_NEW_TOKENS=10)


def test_to_markdown_writes_every_message_in_order():
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}]
    assert lesson10.to_markdown(history, "Be brief.") == (
        "**System:** Be brief.\n\n**You:** Hi\n\n**Assistant:** Hello!\n")
    assert lesson10.to_markdown([], "") == "\n"


@pytest.mark.slow
def test_the_markdown_button_is_an_endpoint_of_the_app(lesson):
    import gradio as gr
    from chat_browser import launch
    from gradio_client import Client

    demo = lesson["chat_app"](lesson["stream_reply"])
    chatbot = next(b for b in demo.blocks.values() if isinstance(b, gr.Chatbot))
    system = next(b for b in demo.blocks.values()
                  if isinstance(b, gr.Textbox) and b.label == "System prompt")
    with demo:  # the exercise's button, added to the lesson's app
        lesson10.add_markdown_export(chatbot, system)
    url = launch(demo)
    try:
        client = Client(url, verbose=False)
        reply, _ = client.predict("Name a fruit.", "", 0, 0.8, 1.0, 6, api_name="/chat")
        # a Chatbot's value, as the page holds it: each content a list of parts
        history = [{"role": role, "content": [{"type": "text", "text": text}]}
                   for role, text in (("user", "Name a fruit."), ("assistant", reply))]
        markdown = client.predict(history, "Be brief.", api_name="/markdown")
        assert markdown.strip() == lesson10.to_markdown(history, "Be brief.").strip()  # gr.Code trims
        assert markdown.startswith("**System:** Be brief.\n\n**You:** Name a fruit.")
    finally:
        demo.close()


def test_speed_is_written_under_the_finished_reply(lesson):
    timed = lesson10.with_speed(lesson["stream_reply"], lesson["tokenizer"])
    updates = list(timed([{"role": "user", "content": "Name a fruit."}], max_new_tokens=10))
    reply = updates[-2]
    tokens = len(lesson["tokenizer"](reply, add_special_tokens=False)["input_ids"])
    assert re.fullmatch(re.escape(reply) + rf"\n\n\*{tokens} tokens · [0-9.]+ tokens/s\*",
                        updates[-1])
    assert all("tokens/s*" not in u for u in updates[:-1])  # only once the reply is whole


def test_token_counter_counts_the_message_and_the_prompt(lesson):
    tok = lesson["tokenizer"]
    line = lesson10.token_counter(tok, "How are you?", "Be brief.", 512)
    own = len(tok("How are you?", add_special_tokens=False)["input_ids"])
    prompt = len(tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How are you?"}],
        add_generation_prompt=True)["input_ids"])
    assert prompt > own
    assert line == f"this message: {own} tokens · the prompt: {prompt} of 512"


def test_questions_have_answers():
    assert len(lesson10.QUESTIONS) == len(lesson10.ANSWERS) == 3
