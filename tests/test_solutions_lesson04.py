"""The exercise solutions of lesson 04 are correct."""

from __future__ import annotations

import pytest

from yi_helpers.corpus import load_conversations
from yi_helpers.finetune.memory import lora_share
from yi_helpers.solutions import lesson04


def test_attention_only_share_is_smaller():
    share = lesson04.attention_only_share("01-ai/Yi-6B-Chat", 8)
    # q: 8 * (4096 + 4096), v: 8 * (4096 + 512) per layer, 32 layers
    expected = 100 * 32 * 8 * (8192 + 4608) / (6_061_035_520 + 32 * 8 * (8192 + 4608))
    assert share == pytest.approx(expected)
    assert share < lora_share("01-ai/Yi-6B-Chat", 8) / 5


def test_learned_fraction():
    from transformers import AutoTokenizer

    from yi_helpers.embedded import prepare

    tok = AutoTokenizer.from_pretrained(prepare(verbose=False))
    rows = load_conversations("train")[:20]
    fraction = lesson04.learned_fraction(tok, rows)
    assert 0.2 < fraction < 0.7
    with pytest.raises(ValueError):
        lesson04.learned_fraction(tok, [])


def test_largest_trainable():
    # QLoRA of a 34B needs about 25 GB at batch 4 x 512 tokens: a 24 GB card takes the 9B
    assert lesson04.largest_trainable(24, "qlora-4bit") == "01-ai/Yi-1.5-9B-Chat"
    assert "34B" in lesson04.largest_trainable(32, "qlora-4bit")
    assert "6B" in lesson04.largest_trainable(16, "lora-bf16")
    assert lesson04.largest_trainable(4, "full-bf16") is None
