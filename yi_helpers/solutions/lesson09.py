"""Solutions to the exercises of notebook 09 (long context)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..long_context import ask_needle
from ..models import ModelSpec, estimate_memory

__all__ = ["max_context", "needle_grid", "tokens_per_turn", "QUESTIONS", "ANSWERS"]


def max_context(model: str | ModelSpec, memory_gb: float, *, batch_size: int = 1,
                kv_bits: int = 16, limit: int = 1 << 20) -> int:
    """Exercise 1: the longest context (tokens, to 1,024) whose planned memory (weights, KV
    cache, overhead) fits in ``memory_gb``; 0 when even 1,024 tokens do not."""
    def fits(tokens: int) -> bool:
        return estimate_memory(model, batch_size, tokens, kv_bits=kv_bits).total_gb <= memory_gb

    if not fits(1024):
        return 0
    low, high = 1, limit // 1024  # in units of 1,024 tokens: fits(low * 1024) holds
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid * 1024):
            low = mid
        else:
            high = mid - 1
    return low * 1024


def needle_grid(model: Any, tokenizer: Any, lengths: Sequence[int], depths: Sequence[float],
                *, lang: str = "zh") -> dict[tuple[int, float], bool]:
    """Exercise 2: the needle test in another language: ``(length, depth) -> found``."""
    return {(n, d): ask_needle(model, tokenizer, n, d, lang=lang)["found"]
            for n in lengths for d in depths}


def tokens_per_turn(rope_theta: float, head_dim: int) -> float:
    """Exercise 3: tokens the slowest RoPE frequency needs for one full turn: frequency
    ``theta ** (-(head_dim - 2) / head_dim)`` radians per token, so ``2π`` divided by it."""
    slowest = rope_theta ** (-(head_dim - 2) / head_dim)
    return 2 * math.pi / slowest


#: The questions that open the notebook's "Check your understanding", and their answers.
QUESTIONS = [
    "Where does a KV cache's size come from, and what would Yi-34B-200K's cache at 200K tokens be without grouped-query attention?",
    "Why must the needle be something the model retrieves at the shortest length, and what did the heatmap show as the haystack grew?",
    "For a 100-page document, why run Yi-6B-200K or Yi-34B-200K rather than Yi-6B-Chat, and what else does such a run need?",
]
ANSWERS = [
    "Every layer stores a key and a value vector per KV head for every token: 2 × layers × KV heads × head size × bytes. Yi-34B has 8 KV heads for 56 query heads; with one KV head per query head its cache would be 7 times larger, about 320 GiB at 200K tokens instead of about 46.",
    "A test nobody passes cannot tell a model that ignores its context from a needle it cannot read; recall at the shortest length shows the test works. The stand-in found the code everywhere at 512 tokens and missed most placements from 1,024 tokens on.",
    "The chat models were fine-tuned with a 4K window: their RoPE and attention have not seen longer inputs, and they degrade past it. The 200K base models were trained for long inputs. The run needs memory for the KV cache (about 12 GiB at 200K tokens for 6B in bf16, plus the weights), SDPA or flash attention, and often KV-cache quantization or offloading.",
]
