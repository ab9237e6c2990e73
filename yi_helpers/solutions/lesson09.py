"""Notebook 09 (long context): solutions to its exercises, answers to its questions."""

import math

from ..models import ModelSpec, estimate_memory

__all__ = ["max_context", "NEEDLE_IN_CHINESE", "tokens_per_turn", "QUESTIONS", "ANSWERS"]


def max_context(model: str | ModelSpec, memory_gb: float, *, kv_bits: int = 16,
                limit: int = 1 << 20) -> int:
    """Exercise 1: the longest context (a multiple of 1,024 tokens, at most ``limit``) whose
    planned memory for one sequence fits in ``memory_gb``; 0 when even 1,024 tokens do not."""
    tokens = 0
    while (tokens + 1024 <= limit and
           estimate_memory(model, 1, tokens + 1024, kv_bits=kv_bits).total_gb <= memory_gb):
        tokens += 1024
    return tokens


#: Exercise 2: the needle test with ``LANG = "zh"``, on the embedded model.
NEEDLE_IN_CHINESE = (
    "It misses the code at every length and depth. The reply repeats the filler's first words "
    "(山谷里的铁路...) or comments in English on the text: the stand-in is English-first and too "
    "weak in Chinese to answer from a Chinese document. Yi-6B-200K, trained on Chinese too, is "
    "the model to try it with.")


def tokens_per_turn(rope_theta: float, head_dim: int) -> float:
    """Exercise 3: tokens the slowest RoPE pair needs for one full turn (``2π`` radians at
    ``theta ** (-(head_dim - 2) / head_dim)`` radians per token)."""
    return 2 * math.pi / rope_theta ** (-(head_dim - 2) / head_dim)


QUESTIONS = [
    "Where does a KV cache's size come from, and what would Yi-34B-200K's cache at 200K tokens be without grouped-query attention?",
    "Why must the needle be something the model retrieves at the shortest length, and what did the heatmap show as the haystack grew?",
    "For a 100-page document, why run Yi-6B-200K or Yi-34B-200K rather than Yi-6B-Chat, and what else does such a run need?",
]
ANSWERS = [
    "Every layer stores a key and a value vector per KV head for every token: 2 × layers × KV heads × head size × bytes. Yi-34B has 8 KV heads for 56 query heads; with one KV head per query head its cache would be 7 times larger, about 320 GiB at 200K tokens instead of about 46.",
    "A test nobody passes cannot tell a model that ignores its context from a needle it cannot read; recall at the shortest length shows the test works. The stand-in found the code everywhere up to 1,024 tokens and missed it near the start at 2,048.",
    "The chat models were fine-tuned with a 4K window: their RoPE and attention have not seen longer inputs, and they degrade past it. The 200K base models were trained for long inputs. The run needs memory for the KV cache (about 12 GiB at 200K tokens for 6B in bf16, plus the weights), SDPA or flash attention, and often KV-cache quantization or offloading.",
]
