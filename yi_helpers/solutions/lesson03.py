"""Notebook 03 (sampling): solutions to its exercises, answers to its questions."""

import torch

from ..sampling import entropy_bits, transform

__all__ = ["tokens_for_mass", "temperature_for_entropy", "QUESTIONS", "ANSWERS"]


def tokens_for_mass(probs: torch.Tensor, mass: float) -> int:
    """Exercise 1: the fewest tokens whose probabilities add up to ``mass`` (what top-p keeps)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    cumulative = probs.sort(descending=True).values.cumsum(-1)
    return int((cumulative < mass - 1e-12).sum()) + 1


def temperature_for_entropy(logits: torch.Tensor, target_bits: float, *, low: float = 0.01,
                            high: float = 100.0) -> float:
    """Exercise 2: the temperature at which the distribution has ``target_bits`` of entropy.
    Entropy grows with temperature, so bisection (on a log scale) finds it."""
    def h(t: float) -> float:
        return entropy_bits(transform(logits, temperature=t)["final"])

    if not h(low) <= target_bits <= h(high):
        raise ValueError(f"target {target_bits} bits is outside [{h(low):.3f}, {h(high):.3f}]")
    for _ in range(60):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if h(mid) < target_bits else (low, mid)
    return (low * high) ** 0.5


QUESTIONS = [
    'What does a temperature below 1 do to the next-token distribution, and one above 1?',
    'Does `top_p=0.9` keep more tokens when the model is sure of the next token, or when it is unsure?',
    'Why is greedy decoding repeatable while sampling is repeatable only with a seed?',
]
ANSWERS = [
    'The logits are divided by T before the softmax: T < 1 sharpens the distribution (less entropy, closer to greedy), T > 1 flattens it (more entropy, more unlikely tokens drawn).',
    'When it is unsure. top-p keeps the smallest set of tokens that holds 90% of the probability: one or two tokens when the model is sure, many when the probability is spread.',
    'Greedy takes the argmax, which depends only on the logits. Sampling draws from the random number generator: the same seed gives the same draws, another seed other tokens.',
]
