"""Chat templates, validation, stopping, batching and history truncation."""

from __future__ import annotations

import copy
import logging
import random

import jinja2
import pytest

from yi_helpers.chat import (IM_END, YI15_CHAT_TEMPLATE, YI_CHAT_TEMPLATE, Conversation, TokenView,
                             chat, chat_batch, render, stop_token_ids, validate_messages)

TEXTS = ["hi", "", "你好，世界！", "Line one\nLine two", "  spaces  ", "{{ not jinja }} {% raw %}",
         "What is 2+2?", "用中文回答：一加一等于几？", "<b>html</b> & 'quotes' \"double\"", "emoji 🙂",
         "x" * 300, "Tab\tseparated", "零一万物 Yi-34B-Chat"]


def random_conversations(n: int = 200, seed: int = 0):
    rng = random.Random(seed)
    convs = []
    for _ in range(n):
        conv = []
        if rng.random() < 0.5:
            conv.append({"role": "system", "content": rng.choice(TEXTS)})
        for turn in range(rng.randint(0 if conv else 1, 12)):
            conv.append({"role": "user", "content": rng.choice(TEXTS)})
            if rng.random() < 0.8:
                conv.append({"role": "assistant", "content": rng.choice(TEXTS)})
        convs.append(conv)
    return convs


def test_yi_template_is_the_published_one_byte_for_byte():
    """The ``chat_template`` of 01-ai/Yi-34B-Chat's ``tokenizer_config.json`` on the Hugging Face
    Hub (Yi-6B-Chat's is the same ChatML format); its length and SHA-256 were taken of that
    file's string, so this runs in a fresh clone with nothing beside it."""
    import hashlib

    assert len(YI_CHAT_TEMPLATE) == 294
    assert hashlib.sha256(YI_CHAT_TEMPLATE.encode()).hexdigest() == (
        "d7b5b8c7b58f7a6bf868aa46a5f73ee976d7292f40fcb9c3e7a1defd8d235cfb")


def test_render_matches_the_documented_example():
    messages = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    assert render(messages) == (
        "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n")


@pytest.mark.parametrize("template,source", [("yi", YI_CHAT_TEMPLATE), ("yi-1.5", YI15_CHAT_TEMPLATE)])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_equals_plain_jinja2(template, source, add_generation_prompt):
    reference = jinja2.Template(source)
    for conv in random_conversations():
        expected = reference.render(messages=conv, add_generation_prompt=add_generation_prompt)
        assert render(conv, template=template, add_generation_prompt=add_generation_prompt) == expected


def test_yi_template_without_generation_prompt_leaves_it_out():
    conv = [{"role": "user", "content": "hi"}]
    assert render(conv, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"
    assert "system" not in render(conv), "Yi injects no default system prompt"


def test_yi15_template_is_the_text_the_inference_registries_carry():
    """Byte for byte the Yi-1.5 chat template of Xinference's registry, OpenVINO GenAI's tests
    and LocalAI (441 characters; the SHA-256 below was taken of their copies, which agree)."""
    import hashlib

    assert len(YI15_CHAT_TEMPLATE) == 441
    assert hashlib.sha256(YI15_CHAT_TEMPLATE.encode()).hexdigest().startswith("91aa728ae59c8e30")


def test_yi15_reported_format():
    conv = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "hi"}]
    for flag in (True, False):
        assert render(conv, template="yi-1.5", add_generation_prompt=flag) == (
            "SYS<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def yi_tokenizer(embedded):
    """The embedded tokenizer wearing Yi's template."""
    tok = copy.deepcopy(embedded[1])
    tok.chat_template = YI_CHAT_TEMPLATE
    return tok


def test_tokenizer_parity(yi_tokenizer):
    for conv in random_conversations(100, seed=1):
        for flag in (True, False):
            text = yi_tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=flag)
            assert render(conv, add_generation_prompt=flag) == text
            ids = yi_tokenizer.apply_chat_template(conv, tokenize=True, add_generation_prompt=flag,
                                                   return_dict=True)["input_ids"]
            assert yi_tokenizer(text, add_special_tokens=False)["input_ids"] == ids


def test_render_with_a_tokenizer_uses_its_own_template(embedded):
    _, tok = embedded
    conv = [{"role": "user", "content": "你好"}]
    assert render(conv, template=tok) == tok.apply_chat_template(conv, tokenize=False,
                                                                 add_generation_prompt=True)
    assert "SmolLM" in render(conv, template=tok)  # SmolLM2's template injects a system prompt


@pytest.mark.parametrize("messages,match", [
    ("hi", "must be a list"),
    ([], "empty"),
    (["hi"], r"messages\[0\] must be a dict"),
    ([{"content": "hi"}], r"messages\[0\] has no 'role'"),
    ([{"role": "user"}], r"messages\[0\] has no 'content'"),
    ([{"role": "bot", "content": "hi"}], r"messages\[0\]: role must be one of"),
    ([{"role": "user", "content": None}], r"messages\[0\] \(user\): content must be a string"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
     r"messages\[1\]: a system message may only be the first"),
])
def test_validation_errors_name_the_message_and_the_rule(messages, match):
    with pytest.raises(ValueError, match=match):
        validate_messages(messages)
    with pytest.raises(ValueError, match=match):
        render(messages)


def test_bad_template_and_bad_lengths(embedded):
    with pytest.raises(ValueError, match="template must be"):
        render([{"role": "user", "content": "hi"}], template="llama")
    model, tok = embedded
    with pytest.raises(ValueError, match="max_new_tokens"):
        chat(model, tok, [{"role": "user", "content": "hi"}], max_new_tokens=0)


def test_stop_ids_put_im_end_first(embedded):
    model, tok = embedded
    ids = stop_token_ids(tok, model)
    assert ids[0] == tok.convert_tokens_to_ids(IM_END)


@pytest.mark.slow
@pytest.mark.parametrize("question", ["What is the capital of France?", "用一句话介绍你自己。",
                                      "Say hello."])
def test_reply_stops_at_im_end_before_the_limit(embedded, question):
    model, tok = embedded
    messages = [{"role": "user", "content": question}]
    reply = chat(model, tok, messages, max_new_tokens=120)
    assert IM_END not in reply and "<|im_start|>" not in reply and reply
    assert len(tok(reply, add_special_tokens=False)["input_ids"]) < 120


@pytest.mark.slow
def test_greedy_is_repeatable(embedded):
    model, tok = embedded
    messages = [{"role": "user", "content": "Name three colours."}]
    first = chat(model, tok, messages, max_new_tokens=40)
    assert chat(model, tok, messages, max_new_tokens=40) == first


@pytest.mark.slow
def test_batched_greedy_equals_one_by_one(embedded):
    model, tok = embedded
    convs = [[{"role": "user", "content": "What is 2+2?"}],
             [{"role": "system", "content": "Answer briefly."},
              {"role": "user", "content": "Name a fruit that is yellow."}],
             [{"role": "user", "content": "请说你好。"}]]
    batch = chat_batch(model, tok, convs, max_new_tokens=24)
    assert batch == [chat(model, tok, c, max_new_tokens=24) for c in convs]


def test_conversation_drops_oldest_turns_and_keeps_the_system(embedded, caplog):
    _, tok = embedded
    conv = Conversation(tok, system="You are Yi.", max_context=120, template="yi")
    for i in range(6):
        conv.add_user(f"Question number {i}: tell me something about topic {i}.")
        conv.add_assistant(f"Answer number {i}: here is a fact about topic {i}.")
    conv.add_user("And the last question?")
    with caplog.at_level(logging.WARNING, logger="yi_helpers.chat"):
        dropped = conv.fit(reserve=20)
    assert dropped and dropped[0]["content"].startswith("Question number 0")
    assert conv.messages[0] == {"role": "system", "content": "You are Yi."}
    assert conv.messages[-1]["content"] == "And the last question?"
    assert conv.count_tokens() + 20 <= 120
    assert [m["role"] for m in conv.messages[1:]] == ["user", "assistant"] * (
        (len(conv.messages) - 2) // 2) + ["user"]
    assert "dropped" in caplog.text and "Question number 0" in caplog.text


def test_conversation_that_cannot_fit_is_a_clear_error(embedded):
    _, tok = embedded
    conv = Conversation(tok, system="Be brief. " * 20, max_context=64, template="yi")
    conv.add_user("hi")
    with pytest.raises(ValueError, match="even with only the system message"):
        conv.fit(reserve=16)
    with pytest.raises(ValueError, match="system message may only be the first"):
        conv._add("system", "a late system message")
    with pytest.raises(ValueError, match="content must be a string"):
        conv.add_user(42)


def test_conversation_requires_a_context_length(embedded):
    _, tok = embedded
    with pytest.raises(ValueError, match="max_context"):
        Conversation(tok)


@pytest.mark.slow
def test_conversation_reply_adds_the_answer(embedded):
    model, tok = embedded
    conv = Conversation(tok, max_context=model.config.max_position_embeddings)
    conv.add_user("My name is Lin. What is my name?")
    answer = conv.reply(model, max_new_tokens=30)
    assert conv.messages[-1] == {"role": "assistant", "content": answer}
    with pytest.raises(ValueError, match="add a user message"):
        conv.reply(model)


def test_token_view_shows_special_tokens_as_one_token(embedded):
    _, tok = embedded
    view = TokenView(tok, render([{"role": "user", "content": "hi"}], template="yi"))
    assert view.tokens[0] == "<|im_start|>" and IM_END in view.tokens
    assert "<span" in view._repr_html_() and "'<|im_start|>':1" in repr(view)
