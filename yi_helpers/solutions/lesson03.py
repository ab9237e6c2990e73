"""Solutions to the exercises of notebook 03 (sampling)."""

from __future__ import annotations

import torch

from ..sampling import entropy_bits, transform

__all__ = ["tokens_for_mass", "temperature_for_entropy"]


def tokens_for_mass(probs: torch.Tensor, mass: float) -> int:
    """Exercise 1: the fewest tokens whose probabilities add up to at least ``mass``
    (what top-p = ``mass`` keeps)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    cumulative = probs.sort(descending=True).values.cumsum(-1)
    return int((cumulative < mass - 1e-12).sum()) + 1


def temperature_for_entropy(logits: torch.Tensor, target_bits: float, *, low: float = 0.01,
                            high: float = 100.0, steps: int = 60) -> float:
    """Exercise 2: the temperature at which the distribution has ``target_bits`` of entropy.

    Entropy grows with temperature, so bisection finds it. Raises ``ValueError`` when the target
    is outside what temperatures between ``low`` and ``high`` reach.
    """
    def h(t: float) -> float:
        return entropy_bits(transform(logits, temperature=t)["final"])

    if not h(low) <= target_bits <= h(high):
        raise ValueError(f"target {target_bits} bits is outside [{h(low):.3f}, {h(high):.3f}]")
    for _ in range(steps):
        mid = (low * high) ** 0.5  # bisect on a log scale
        low, high = (mid, high) if h(mid) < target_bits else (low, mid)
    return (low * high) ** 0.5
