"""The exercise solutions of lesson 06 are correct."""

from __future__ import annotations

import pytest

from yi_helpers.quantize import size_ratio
from yi_helpers.solutions import lesson06


def test_accuracy_interval_and_the_questions_a_margin_needs():
    from yi_helpers.bench import accuracy_interval

    low, high = accuracy_interval(5, 20)
    assert 0.10 < low < 0.12 and 0.46 < high < 0.48
    assert accuracy_interval(0, 10)[0] == 0.0
    a, b = accuracy_interval(500, 2000)
    assert b - a < high - low  # more questions, narrower interval
    with pytest.raises(ValueError):
        accuracy_interval(3, 2)
    n = lesson06.questions_for_margin(0.6, 0.02)
    assert 2200 < n < 2400
    lo, hi = accuracy_interval(round(0.6 * n), n)
    assert (hi - lo) / 2 <= 0.02
    lo, hi = accuracy_interval(round(0.6 * (n - 1)), n - 1)
    assert (hi - lo) / 2 > 0.02  # the fewest


def test_letter_bias():
    items = [{"pred_ll": "A"}, {"pred_ll": "A"}, {"pred_ll": "C"}, {"pred_ll": None}]
    bias = lesson06.letter_bias(items)
    assert bias == {"A": 0.5, "B": 0.0, "C": 0.25, "D": 0.0, "none": 0.25}


def test_decode_bound_yi6b():
    # Yi-6B-Chat in bf16 is about 12 GB: on 4.8 TB/s about 390 tokens/s at batch 1
    bound = lesson06.decode_bound("01-ai/Yi-6B-Chat", 4800, context_len=0)
    assert 380 < bound < 410
    # 4-bit AWQ: the linear layers shrink to a quarter, the 16-bit embedding and LM head do not
    awq = lesson06.decode_bound("01-ai/Yi-6B-Chat", 4800, weight_bits=4, context_len=0)
    assert bound / awq == pytest.approx(size_ratio("01-ai/Yi-6B-Chat", 4))
    assert 2.5 * bound < awq < 4 * bound
    # 8-bit: half the bytes of the linear layers, so almost (not quite) twice the speed
    int8 = lesson06.decode_bound("01-ai/Yi-6B-Chat", 4800, weight_bits=8, context_len=0)
    assert bound / int8 == pytest.approx(size_ratio("01-ai/Yi-6B-Chat", 8))
    assert 1.5 * bound < int8 < 2 * bound
    assert lesson06.decode_bound("01-ai/Yi-6B-Chat", 4800, context_len=4096, batch_size=16) < bound
