"""yi_helpers.finetune.replay: the base model's own replies mixed into training (against
forgetting), the general questions, the config key and its place in ``train``."""

from __future__ import annotations

import pytest

from yi_helpers.finetune.config import MAX_REPLAY, ConfigError, FinetuneConfig, from_dict
from yi_helpers.finetune.hub_chat import SYSTEM_PROMPT
from yi_helpers.finetune.replay import (CHECK_QUESTIONS, REPLAY_QUESTIONS, general_replies,
                                        replay_rows, unchanged_share)


def test_question_sets():
    assert len(REPLAY_QUESTIONS) == MAX_REPLAY
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
    # batches of any size give the same rows
    assert replay_rows(model, tok, REPLAY_QUESTIONS[:3], max_new_tokens=6, batch_size=2) == rows


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


@pytest.mark.parametrize("value", [-1, MAX_REPLAY + 1])
def test_replay_questions_out_of_range(value):
    with pytest.raises(ConfigError, match=f"{MAX_REPLAY} general questions"):
        from_dict({"replay_questions": value})


@pytest.mark.slow
def test_train_mixes_replay_rows_into_the_training_set(embedded, tmp_path):
    from yi_helpers import load
    from yi_helpers.corpus import load_conversations
    from yi_helpers.finetune.train import train

    # a fresh copy: train() puts adapters into the model it gets (a random tiny model would
    # reply with nothing, which replay refuses)
    model, tok = load("embedded", device="cpu")
    expected = replay_rows(*embedded, REPLAY_QUESTIONS[:2])  # asked of the untouched base
    cfg = FinetuneConfig(output_dir=str(tmp_path / "run"), batch_size=2, max_steps=1,
                         max_eval_rows=2, lora_r=2, device="cpu", progress_bar=False,
                         replay_questions=2)
    result = train(cfg, model=model, tokenizer=tok, save=False)
    assert result.extra["replay_rows"] == expected
    assert result.extra["train_rows"] == len(load_conversations("train")) + 2


def test_replay_under_fsdp_is_refused_before_loading(monkeypatch, tmp_path):
    from yi_helpers.finetune import train as train_module

    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setattr(train_module, "load_base", no_load)
    cfg = FinetuneConfig(output_dir=str(tmp_path), device="cpu", replay_questions=4)
    with pytest.raises(ConfigError, match="FSDP"):
        train_module.train(cfg)
