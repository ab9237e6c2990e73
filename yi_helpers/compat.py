"""Shims over transformers and torch API differences: transformers 5.2x renamed the KV cache
argument of ``forward`` (``past_key_values`` → ``cache``) and its output field; code that runs a
model step by step (timing, prefix caching) asks here instead of guessing."""

from __future__ import annotations

import inspect
from typing import Any

__all__: list[str] = []  # the package's own shims: cache_kwarg, output_cache, synchronize


def cache_kwarg(model: Any) -> str:
    """The name ``model.forward`` takes the KV cache under: ``"cache"`` or ``"past_key_values"``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (``out["cache"]`` in transformers 5.2x)."""
    return out["cache"] if "cache" in out else out.past_key_values


def synchronize(device: Any) -> None:
    """Wait for a CUDA device's queued work (timings); nothing on a CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
