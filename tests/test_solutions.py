"""The exercise solutions shipped in yi_helpers.solutions are correct."""

from __future__ import annotations

import pytest

from test_chat import random_conversations
from yi_helpers.chat import render
from yi_helpers.solutions import lesson02


def test_template_overhead_is_linear_in_turns(embedded):
    _, tok = embedded
    one = [{"role": "user", "content": "hi"}]
    three = one + [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "ok"}]
    per_message = lesson02.template_overhead(tok, three) - lesson02.template_overhead(tok, one)
    assert per_message >= 2 * 4  # at least <|im_start|>, role, \n, <|im_end|> per message
    five = three + [{"role": "assistant", "content": "yes"}, {"role": "user", "content": "no"}]
    growth = lesson02.template_overhead(tok, five) - lesson02.template_overhead(tok, three)
    assert abs(growth - per_message) <= 1  # linear, up to a BPE merge at a boundary


def test_trim_to_budget_keeps_system_and_fits(embedded):
    _, tok = embedded
    msgs = [{"role": "system", "content": "S"}] + [
        {"role": r, "content": f"message {i} " * 5} for i, r in
        enumerate(["user", "assistant"] * 5 + ["user"])]
    kept = lesson02.trim_to_budget(tok, msgs, 80)
    assert kept[0]["role"] == "system" and kept[-1] == msgs[-1]
    assert len(tok(render(kept), add_special_tokens=False)["input_ids"]) <= 80
    longer = msgs[:1] + msgs[len(msgs) - len(kept):]
    assert len(tok(render(longer), add_special_tokens=False)["input_ids"]) > 80 or longer == kept
    with pytest.raises(ValueError, match="does not fit"):
        lesson02.trim_to_budget(tok, msgs, 5)


def test_yi15_round_trip():
    for conv in random_conversations(200, seed=3):
        if conv[0]["role"] == "system" and not conv[0]["content"]:
            continue  # an empty raw system text leaves no trace in the prompt
        if not any(m["role"] == "user" for m in conv):
            continue
        assert lesson02.yi15_to_yi(render(conv, template="yi-1.5")) == conv


def test_count_invented_turns(embedded):
    _, tok = embedded
    ids = tok("a<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\nc",
              add_special_tokens=False)["input_ids"]
    assert lesson02.count_invented_turns(tok, ids) == 2


def test_tokens_for_mass_agrees_with_top_p():
    import torch

    from yi_helpers.sampling import transform
    from yi_helpers.solutions import lesson03

    logits = torch.randn(300, generator=torch.Generator().manual_seed(5)) * 3
    probs = logits.softmax(-1)
    for mass in (0.3, 0.5, 0.8, 0.95):
        kept = int((transform(logits, top_p=mass)["final"] > 0).sum())
        assert lesson03.tokens_for_mass(probs, mass) == kept
    assert lesson03.tokens_for_mass(probs, 1.0) <= 300


def test_temperature_for_entropy():
    import torch

    from yi_helpers.sampling import entropy_bits, transform
    from yi_helpers.solutions import lesson03

    logits = torch.randn(300, generator=torch.Generator().manual_seed(6)) * 3
    t = lesson03.temperature_for_entropy(logits, 4.0)
    assert entropy_bits(transform(logits, temperature=t)["final"]) == pytest.approx(4.0, abs=1e-3)
    with pytest.raises(ValueError, match="outside"):
        lesson03.temperature_for_entropy(logits, 20.0)
