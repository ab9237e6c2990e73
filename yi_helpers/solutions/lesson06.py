"""Solutions to the exercises of notebook 06 (benchmarking)."""

from __future__ import annotations

import math
from collections import Counter

from ..bench.evaluation import LETTERS
from ..models import spec

__all__ = ["wilson_interval", "letter_bias", "decode_bound"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Exercise 1: the 95 % Wilson confidence interval of an accuracy of ``correct`` / ``n``.

    With 20 questions, 5 right (25 %) is anywhere from about 11 % to 47 %: small benchmarks
    cannot tell a model at chance from a weak one."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got {correct}/{n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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
