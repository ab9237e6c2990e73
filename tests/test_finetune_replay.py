"""yi_helpers.finetune.replay: the base model's own replies mixed into training (against
forgetting) and the general questions."""

from __future__ import annotations

import pytest

from yi_helpers.finetune.evaluate import SYSTEM_PROMPT
from yi_helpers.finetune.replay import (CHECK_QUESTIONS, REPLAY_QUESTIONS, general_replies,
                                        replay_rows, unchanged_share)


def test_question_sets():
    assert len(REPLAY_QUESTIONS) == 40
    replayed = {q for q, _ in REPLAY_QUESTIONS}
    assert len(replayed) == len(REPLAY_QUESTIONS), "no question twice"
    assert not replayed & {q for q, _ in CHECK_QUESTIONS}, "check questions are never trained on"
    # English and Chinese alternate, so any even prefix is balanced
    assert [lang for _, lang in REPLAY_QUESTIONS[:4]] == ["en", "zh", "en", "zh"]
    assert {lang for _, lang in CHECK_QUESTIONS} == {"en", "zh"}


def test_replay_rows_are_the_models_own_greedy_replies(embedded):
    from yi_helpers.chat import chat

    model, tok = embedded
    rows = replay_rows(model, tok, REPLAY_QUESTIONS[:3], max_new_tokens=6)
    assert [r["lang"] for r in rows] == ["en", "zh", "en"]
    assert {r["topic"] for r in rows} == {"replay"}
    assert [r["messages"][0]["role"] for r in rows] == ["system", "user", "system"]
    assert rows[0]["messages"][0]["content"] == SYSTEM_PROMPT
    for row, (question, _) in zip(rows, REPLAY_QUESTIONS):
        prompt, reply = row["messages"][:-1], row["messages"][-1]
        assert prompt[-1] == {"role": "user", "content": question}
        assert reply["role"] == "assistant"
        assert reply["content"] == chat(model, tok, prompt, max_new_tokens=6, template="yi")


def test_general_replies_use_the_hub_system_prompt(embedded):
    from yi_helpers.chat import chat

    model, tok = embedded
    replies = general_replies(model, tok, CHECK_QUESTIONS[:2], max_new_tokens=5)
    expected = [chat(model, tok, [{"role": "system", "content": SYSTEM_PROMPT},
                                  {"role": "user", "content": q}], max_new_tokens=5, template="yi")
                for q, _ in CHECK_QUESTIONS[:2]]
    assert replies == expected


def test_replay_rows_reject_no_tokens(embedded):
    with pytest.raises(ValueError, match="max_new_tokens"):
        replay_rows(*embedded, REPLAY_QUESTIONS[:1], max_new_tokens=0)


def test_unchanged_share():
    before, after = ["Paris is the capital", "7 days"], ["Paris is the capital!", "Id 7"]
    assert unchanged_share(before, after) == 0.5
    assert unchanged_share(["abc"], ["abd"], chars=2) == 1.0
    with pytest.raises(ValueError, match="equally long"):
        unchanged_share(["a"], ["a", "b"])

