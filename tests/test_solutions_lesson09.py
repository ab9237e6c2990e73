"""The exercise solutions of lesson 09 (long context) are correct."""

from __future__ import annotations

import math

import pytest

from yi_helpers import estimate_memory
from yi_helpers.solutions import lesson09


def test_max_context_is_the_longest_that_fits():
    n = lesson09.max_context("01-ai/Yi-6B-200K", 80)
    assert n >= 128 * 1024
    assert estimate_memory("01-ai/Yi-6B-200K", 1, n).total_gb <= 80
    assert estimate_memory("01-ai/Yi-6B-200K", 1, n + 1024).total_gb > 80
    assert lesson09.max_context("01-ai/Yi-6B-200K", 80, kv_bits=8) > n  # an 8-bit cache: longer
    assert lesson09.max_context("01-ai/Yi-34B-200K", 40) == 0


def test_tokens_per_turn_matches_the_rope_frequencies():
    import torch
    from transformers import LlamaConfig

    from yi_helpers.long_context import rope_inv_freq

    config = LlamaConfig(hidden_size=1024, num_attention_heads=8, rope_theta=5e6)  # head 128
    slowest = rope_inv_freq(config)[-1].item()
    assert lesson09.tokens_per_turn(5e6, 128) == pytest.approx(2 * math.pi / slowest, rel=1e-5)
    assert lesson09.tokens_per_turn(5e6, 128) > 200_000 > lesson09.tokens_per_turn(1e4, 128)
    del torch
