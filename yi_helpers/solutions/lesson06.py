"""Notebook 06 (benchmarking): solutions to its exercises, answers to its questions."""

from collections import Counter

from ..bench.evaluation import LETTERS, accuracy_interval
from ..bench.speed import decode_roofline_tokens_per_s
from ..models import planned_weight_bytes, spec

__all__ = ["questions_for_margin", "letter_bias", "decode_bound", "QUESTIONS", "ANSWERS"]


def questions_for_margin(accuracy: float, margin: float, z: float = 1.96) -> int:
    """Exercise 1: the fewest questions for which the 95% interval of ``accuracy`` spans at most
    ``±margin``. About 2,300 questions pin 60% down to ±2 points; MMLU's 14,042 give ±0.8."""
    if not 0 < margin < 1 or not 0 <= accuracy <= 1:
        raise ValueError("need 0 < margin < 1 and 0 <= accuracy <= 1")

    def half_width(n: int) -> float:
        low, high = accuracy_interval(round(accuracy * n), n, z)
        return (high - low) / 2

    n = 1
    while half_width(n) > margin:  # count up: the first n that fits is the fewest
        n += 1
    return n


def letter_bias(items: list[dict], key: str = "pred_ll") -> dict[str, float]:
    """Exercise 2: how often each option letter is predicted (``evaluate_mc`` items). A model that
    always answers "A" scores the share of "A" answers in the key, whatever it knows."""
    counts, n = Counter(i[key] for i in items), len(items)
    return {letter: counts[letter] / n for letter in LETTERS} | {"none": counts[None] / n}


def decode_bound(model_id: str, bandwidth_gbs: float, *, weight_bits: int = 16,
                 context_len: int = 1024, batch_size: int = 1, kv_bits: int = 16) -> float:
    """Exercise 3: the decode roofline (tokens/s per sequence) on ``bandwidth_gbs`` GB/s.
    ``planned_weight_bytes`` quantizes the decoder's linear layers only (embedding and LM head
    stay 16-bit, plus a scale and zero point per group, as in AWQ and GPTQ files)."""
    return decode_roofline_tokens_per_s(planned_weight_bytes(model_id, weight_bits),
                                        spec(model_id).kv_bytes_per_token(kv_bits), context_len,
                                        bandwidth_gbs, batch_size=batch_size)


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
