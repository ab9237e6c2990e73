"""Solutions to the exercises of notebook 06 (benchmarking)."""

from __future__ import annotations

from collections import Counter

from ..bench.evaluation import LETTERS, accuracy_interval
from ..models import spec

__all__ = ["questions_for_margin", "letter_bias", "decode_bound", "QUESTIONS", "ANSWERS"]


def questions_for_margin(accuracy: float, margin: float, z: float = 1.96) -> int:
    """Exercise 1: the fewest questions for which the 95% interval of ``accuracy`` spans at most
    ``±margin`` (``bench.accuracy_interval``). About 2,300 questions pin 60% down to ±2 points;
    MMLU's 14,042 give about ±0.8."""
    if not 0 < margin < 1 or not 0 <= accuracy <= 1:
        raise ValueError("need 0 < margin < 1 and 0 <= accuracy <= 1")

    def half_width(n: int) -> float:
        low, high = accuracy_interval(round(accuracy * n), n, z)
        return (high - low) / 2

    high = 1
    while half_width(high) > margin:  # an n large enough
        high *= 2
    low = high // 2
    while high - low > 1:  # then the smallest one, by bisection
        mid = (low + high) // 2
        low, high = (low, mid) if half_width(mid) <= margin else (mid, high)
    return high


def letter_bias(items: list[dict], key: str = "pred_ll") -> dict[str, float]:
    """Exercise 2: how often each option letter is predicted (``evaluate_mc`` items). A model that
    always answers "A" scores the share of "A" answers in the key, whatever it knows."""
    counts = Counter(i[key] for i in items)
    n = len(items)
    out = {letter: counts.get(letter, 0) / n for letter in LETTERS}
    out["none"] = counts.get(None, 0) / n
    return out


def decode_bound(model_id: str, bandwidth_gbs: float, *, weight_bits: int = 16,
                 context_len: int = 1024, batch_size: int = 1, kv_bits: int = 16) -> float:
    """Exercise 3: the decode roofline (tokens/s per sequence) of a registry model, e.g.
    Yi-6B-Chat in bf16 on a GPU with ``bandwidth_gbs`` of memory bandwidth.

    The bytes read per step come from the planner: ``planned_weight_bytes`` quantizes the decoder's
    linear layers only (the embedding and LM head stay 16-bit, plus one scale and zero point
    per group, as in AWQ and GPTQ files); the KV cache stays at ``kv_bits``."""
    from ..bench.speed import decode_roofline_tokens_per_s
    from ..models import planned_weight_bytes

    return decode_roofline_tokens_per_s(planned_weight_bytes(model_id, weight_bits),
                                        spec(model_id).kv_bytes_per_token(kv_bits), context_len,
                                        bandwidth_gbs, batch_size=batch_size)


#: The questions that open the notebook's "Check your understanding", and their answers.
QUESTIONS = [
    'Why is decoding one sequence limited by memory bandwidth rather than by arithmetic?',
    'On the same model, Chinese perplexity can come out lower than English. Does that mean the model knows Chinese better?',
    'Why does the lesson report the median with the minimum and maximum of repeated runs instead of one timing?',
]
ANSWERS = [
    'Each new token reads every weight (and the KV cache) once and does only about two operations per weight read: the time per token is close to bytes read / bandwidth, the roofline. Batching reuses each weight read for several sequences.',
    'No. Perplexity is per token, and the tokenizer cuts Chinese into more, smaller tokens (pieces of characters), many of them nearly certain given the piece before. Compare languages per character or per byte, or compare models on the same language.',
    'Timings vary from run to run (other processes, caches, clock speeds). The median is robust to one slow run, and the spread shows how much of a difference between two settings is noise.',
]
