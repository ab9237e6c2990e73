"""Long context: what a window costs, whether a model uses it, and what RoPE scaling changes.

The window and its check, a measured prefill (time, memory, cache), the hub's own filler text
(``data/haystack_en.txt``, ``haystack_zh.txt``: written for the hub, never downloaded; lesson 09
hides its needle in it), loss by position, RoPE's frequencies, the planner's largest batch.
The KV cache's size from a config is ``models.kv_cache_bytes``.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

from .models import ModelSpec, estimate_memory

__all__ = ["context_window", "measure_prefill", "filler_ids", "loss_by_position",
           "rope_inv_freq", "with_rope_scaling", "max_batch"]


class ContextTooLongError(ValueError):
    """A prompt longer than the model's window."""


def context_window(config: Any) -> int:
    """Tokens ``config``'s model can place: ``max_position_embeddings``, or the original window
    times the factor of a ``rope_scaling`` / ``rope_parameters`` setting (linear, dynamic, yarn)."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
                or {})
    window = int(config.max_position_embeddings)
    if rope.get("rope_type", "default") not in ("default", None) and rope.get("factor"):
        original = int(rope.get("original_max_position_embeddings") or window)
        return max(window, int(original * float(rope["factor"])))
    return window


def check_window(config: Any, n_tokens: int) -> None:
    """Raise :class:`ContextTooLongError` when ``n_tokens`` exceed the model's window."""
    window = context_window(config)
    if n_tokens > window:
        raise ContextTooLongError(
            f"{n_tokens} tokens do not fit in this model's {window}-token window. Shorten the "
            f"input, or load the model with a RoPE scaling option for a longer window: "
            f"with_rope_scaling(config, 'dynamic', factor={-(-n_tokens // window)}) (lesson 09); "
            f"for a chat, Conversation(tokenizer, max_context={window}) drops the oldest turns")


def measure_prefill(model: Any, ids: Any, *, chunk: int | None = None,
                    decode_steps: int = 4) -> dict:
    """Prefill ``ids`` (1 × n token ids) with the KV cache and ``logits_to_keep=1`` (no
    full-vocabulary logits), whole or in pieces of ``chunk`` tokens, then decode
    ``decode_steps`` tokens greedily. Returns seconds (prefill, per decoded token), the cache's
    MB after the prefill, and ``added_mb``: the peak memory of the tensors the prefill
    allocated (``measure.TensorBytes``)."""
    import torch

    from .compat import cache_kwarg, output_cache, synchronize
    from .measure import TensorBytes, cache_bytes
    from .units import MB

    device = next(model.parameters()).device
    ids = ids.to(device)
    n = ids.shape[1]
    check_window(model.config, n + decode_steps)
    step = chunk or n
    key = cache_kwarg(model)
    cache = None
    with torch.no_grad():
        with TensorBytes(model) as counted:
            synchronize(device)
            start = time.perf_counter()
            for i in range(0, n, step):
                out = model(ids[:, i:i + step], use_cache=True, logits_to_keep=1,
                            **({key: cache} if cache is not None else {}))
                cache = output_cache(out)
            synchronize(device)
            prefill_s = time.perf_counter() - start
        record = {"tokens": n, "chunk": chunk, "prefill_s": prefill_s,
                  "prefill_tok_s": n / prefill_s, "cache_mb": cache_bytes(cache) / MB,
                  "added_mb": counted.peak / MB}
        token = out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(decode_steps):
            out = model(token, use_cache=True, **{key: cache})
            cache = output_cache(out)
            token = out.logits[:, -1:].argmax(-1)
        synchronize(device)
    record["decode_s_per_token"] = (time.perf_counter() - start) / max(decode_steps, 1)
    return record


def filler_ids(tokenizer: Any, n_tokens: int | None = None, lang: str = "en") -> list[int]:
    """Token ids of the hub's filler text: ``n_tokens`` of them (the text repeated when longer is
    asked for), or the whole text once (``None``)."""
    from .corpus import data_path

    if lang not in ("en", "zh"):
        raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
    text = data_path(f"haystack_{lang}.txt").read_text(encoding="utf-8").strip()
    one = tokenizer(text + "\n\n", add_special_tokens=False)["input_ids"]
    if n_tokens is None:
        return one
    return (one * (n_tokens // len(one) + 1))[:n_tokens]


def loss_by_position(model: Any, ids: Sequence[int], *, bucket: int = 256,
                     chunk: int = 512, strict: bool = True) -> list[dict]:
    """Mean next-token loss of a document's tokens, by position bucket (``bucket`` tokens each):
    one forward pass for the hidden states, the output layer applied ``chunk`` positions at a
    time (full-vocabulary logits for the whole document would not fit in memory).
    ``strict=False``: past the window too."""
    import torch
    import torch.nn.functional as F

    if strict:
        check_window(model.config, len(ids))
    device = next(model.parameters()).device
    x = torch.tensor([list(ids)], device=device)
    losses = []
    with torch.no_grad():
        hidden = model.model(x).last_hidden_state[0, :-1]
        targets = x[0, 1:]
        for i in range(0, hidden.shape[0], chunk):
            logits = model.lm_head(hidden[i:i + chunk]).float()
            losses.append(F.cross_entropy(logits, targets[i:i + chunk], reduction="none"))
    loss = torch.cat(losses).cpu()
    return [{"start": i + 1, "end": min(i + bucket, len(loss)),
             "loss": float(loss[i:i + bucket].mean())} for i in range(0, len(loss), bucket)]


def with_rope_scaling(config: Any, rope_type: str, factor: float) -> Any:
    """A copy of ``config`` with a RoPE scaling setting (``"linear"``, ``"dynamic"``,
    ``"yarn"``) stretching its window ``factor`` times, in transformers' ``rope_parameters``."""
    if rope_type not in ("linear", "dynamic", "yarn"):
        raise ValueError(f"rope_type must be linear, dynamic or yarn, got {rope_type!r}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    scaled = copy.deepcopy(config)
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or getattr(
        config, "rope_theta")
    scaled.rope_parameters = {"rope_type": rope_type, "factor": float(factor),
                              "rope_theta": float(theta),
                              "original_max_position_embeddings": config.max_position_embeddings}
    return scaled


def rope_inv_freq(config: Any, *, seq_len: int | None = None):
    """RoPE's inverse frequencies (radians per position, one per pair of head dimensions) for
    ``config``, from transformers' own rope functions; ``seq_len`` matters for dynamic NTK
    (its base grows once a sequence is longer than the trained window)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        inv_freq, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv_freq, _ = ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)
    return inv_freq


def max_batch(model: str | ModelSpec, context_len: int, memory_gb: float, *,
              kv_bits: int = 16, limit: int = 1024) -> int:
    """The largest batch of ``context_len``-token sequences whose planned memory (weights, KV
    cache, overhead: ``estimate_memory``) fits in ``memory_gb``; 0 when not even one does."""
    for batch in range(1, limit + 1):
        if estimate_memory(model, batch, context_len, kv_bits=kv_bits).total_gb > memory_gb:
            return batch - 1
    return limit
