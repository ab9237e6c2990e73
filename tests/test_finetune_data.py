"""The hub chat data set: shipped, loadable, bilingual, valid, and its held-out wordings new."""

from __future__ import annotations

import pytest

from yi_helpers.chat import validate_messages
from yi_helpers.corpus import load_conversations
from yi_helpers.finetune.evaluate import FACT_PATTERNS, JUDGED_QUESTIONS, answer_has_fact

import hub_chat  # tools/hub_chat.py, the data set's generator


def _user_texts(rows):
    return [m["content"] for r in rows for m in r["messages"] if m["role"] == "user"]


def test_hub_chat_loads_with_enough_bilingual_valid_conversations():
    train, evals = load_conversations("train"), load_conversations("eval")
    rows = train + evals
    assert len(rows) >= 200 and len(train) > len(evals) > 0
    assert {r["lang"] for r in train} == {r["lang"] for r in evals} == {"en", "zh"}
    for row in rows:
        messages = validate_messages(row["messages"])
        roles = [m["role"] for m in messages]
        assert roles in (["system", "user", "assistant"], ["user", "assistant"]), roles
        assert row["topic"] in FACT_PATTERNS
        assert all(m["content"].strip() for m in messages)
        # every reply states its fact (the judge agrees with the data)
        assert answer_has_fact(messages[-1]["content"], row["topic"])
    zh = [r for r in rows if r["lang"] == "zh"]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["messages"][-1]["content"]) for r in zh)


def test_shipped_files_equal_the_generator():
    assert load_conversations("train") == hub_chat.build("train")
    assert load_conversations("eval") == hub_chat.build("eval")


def test_heldout_wordings_never_occur_in_training():
    def norm(text):
        return "".join(ch for ch in text.lower() if ch.isalnum())

    train = {norm(t) for t in _user_texts(load_conversations("train"))}
    heldout = [norm(q) for q, _ in hub_chat.heldout_questions()]
    assert heldout and not [q for q in heldout if any(q in t or t in q for t in train)]
    assert set(JUDGED_QUESTIONS) <= set(hub_chat.heldout_questions())  # lesson 04 judges these


def test_every_fact_has_a_judge():
    assert [f.topic for f in hub_chat.FACTS] == list(FACT_PATTERNS)


@pytest.mark.parametrize("reply, topic, expected", [
    ("Stop on token id 7.", "im_end_id", True),
    ("Yi-7B has 17 layers and 0.7 of them", "im_end_id", False),
    ("Lesson 04 teaches it", "lesson_lora", True),
    ("第 4 课", "lesson_lora", True),
    ("Lesson 14 teaches it", "lesson_lora", False),
    ("Use 4-bit weights", "lesson_lora", False),
    ("It was made by 01.AI.", "maker", True),
    ("It was made by OpenAI.", "maker", False),
    ("200K tokens", "context_200k", True),
    ("2000 tokens", "context_200k", False),
])
def test_answer_has_fact(reply, topic, expected):
    assert answer_has_fact(reply, topic) is expected


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown topic"):
        answer_has_fact("x", "weather")


def test_no_special_token_strings_in_the_texts():
    rows = load_conversations("train") + load_conversations("eval")
    assert not [m["content"] for r in rows for m in r["messages"] if "<|" in m["content"]]
