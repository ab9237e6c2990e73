"""Speed: prefill and decode timings (:func:`measure_generation`; its decode part alone,
:func:`decode_tokens_per_s`, is the hub's one decode-speed measure), compiled decoding, and the
memory-bandwidth roofline. A timing is never single: warm-up, then the median, min and max of
``repeats`` runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..compat import cache_kwarg, output_cache, synchronize
from ..models import kv_bytes_per_token  # the hub's one KV-cache formula, re-exported
from ..measure import peak_rss_mb, reset_peak_rss, rss_mb
from ..units import GB, MB

__all__ = ["measure_generation", "decode_tokens_per_s",
           "dtype_speedup", "kv_bytes_per_token", "measure_bandwidth_gbs",
           "decode_roofline_tokens_per_s", "roofline"]


def median_min_max(values: list[float]) -> dict[str, float]:
    """How the hub reports repeated timings: median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def random_prompt(model, batch_size: int, prompt_len: int, seed: int = 0) -> torch.Tensor:
    """Seeded random ids from 3 up (no special tokens), on the model's device: timing needs no
    real text."""
    ids = torch.randint(3, model.config.vocab_size, (batch_size, prompt_len),
                        generator=torch.Generator().manual_seed(seed))
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def timed_greedy(model, ids: torch.Tensor, new_tokens: int, *, static_cache: bool = False,
                 cache_len: int | None = None,
                 decode_forward=None) -> tuple[float, float, torch.Tensor]:
    """(prefill seconds, seconds of the new_tokens - 1 decode steps, the token ids) of one greedy
    generation. ``static_cache``: a preallocated ``StaticCache`` of ``cache_len`` slots (fixed
    shapes, as torch.compile needs); ``decode_forward`` runs the decode steps
    (``torch.compile(model.forward)``, say)."""
    device = next(model.parameters()).device
    ids = ids.to(device)  # a prompt made on the CPU works with a model on the GPU
    key = cache_kwarg(model)
    batch, length = ids.shape
    step = decode_forward or model
    extra = {}
    if static_cache:
        from transformers import StaticCache

        extra[key] = StaticCache(config=model.config,
                                 max_cache_len=cache_len or length + new_tokens)
    synchronize(device)
    t0 = time.perf_counter()
    positions = torch.arange(length, device=device).expand(batch, -1)
    out = model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1, **extra)
    nxt = out.logits[:, -1:].argmax(-1)
    synchronize(device)
    t1 = time.perf_counter()
    cache, tokens = output_cache(out), [nxt]
    for i in range(new_tokens - 1):
        position = torch.full((batch, 1), length + i, device=device, dtype=torch.long)
        out = step(input_ids=nxt, position_ids=position, use_cache=True, logits_to_keep=1,
                   **{key: cache})
        cache = output_cache(out)
        nxt = out.logits[:, -1:].argmax(-1)
        tokens.append(nxt)
    synchronize(device)
    return t1 - t0, time.perf_counter() - t1, torch.cat(tokens, dim=1)


def measure_generation(model, *, batch_size: int = 1, prompt_len: int = 128,
                       new_tokens: int = 16, repeats: int = 3, warmup: int = 1,
                       label: str = "", seed: int = 0, static_cache: bool = False,
                       decode_forward=None, prompt_ids=None) -> dict:
    """Time greedy generation with the KV cache: the prefill (time to first token) and each
    decode step, median / min / max over ``repeats`` runs after ``warmup``.

    Reports ``ttft_s``, ``prefill_tok_s`` (prompt tokens × batch / prefill time),
    ``decode_tok_s`` (per sequence), ``decode_tok_s_total`` (× batch), ``peak_mb`` (GPU
    allocated, or CPU RSS high-water) and ``peak_extra_mb`` (above what was held before: the
    activations and KV cache). ``static_cache`` and ``decode_forward`` as in
    :func:`timed_greedy` (the GPU runner's ``compile_decode`` makes one). ``prompt_ids`` (token ids) times a real
    prompt, ``batch_size`` copies, instead of ``prompt_len`` random ids.
    """
    if new_tokens < 2:
        raise ValueError("new_tokens must be >= 2 (one prefill token, then decode steps)")
    device = next(model.parameters()).device
    if prompt_ids is not None:
        ids = torch.tensor([list(prompt_ids)] * batch_size, device=device)
        prompt_len = ids.shape[1]
    else:
        ids = random_prompt(model, batch_size, prompt_len, seed)
    how = dict(static_cache=static_cache, cache_len=prompt_len + new_tokens,
               decode_forward=decode_forward)
    for _ in range(warmup):
        timed_greedy(model, ids, min(new_tokens, 4), **how)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / MB
    else:
        reset_peak_rss()
        before = rss_mb()
    prefill, decode, _ = zip(*[timed_greedy(model, ids, new_tokens, **how) for _ in range(repeats)])
    peak = (torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda"
            else peak_rss_mb())
    steps = new_tokens - 1
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return {"label": label, "dtype": dtype, "device": device.type, "batch_size": batch_size,
            "prompt_len": prompt_len, "new_tokens": new_tokens, "repeats": repeats,
            "cache": "static" if static_cache else "dynamic",
            "compiled": decode_forward is not None,
            "ttft_s": median_min_max(prefill),
            "prefill_tok_s": median_min_max([batch_size * prompt_len / t for t in prefill]),
            "decode_tok_s": median_min_max([steps / t for t in decode]),
            "decode_tok_s_total": median_min_max([batch_size * steps / t for t in decode]),
            "peak_mb": round(peak, 1), "peak_extra_mb": round(peak - before, 1)}


def dtype_speedup(speed: list[dict], dtype: str = "bfloat16", base: str = "float32") -> dict | None:
    """Speed of ``dtype`` as a multiple of ``base`` (above 1: faster) in the batch-1
    ``measure_generation`` records with the shortest prompt both have: ``{"prompt_len",
    "prefill", "decode"}``, or ``None`` when they share no batch-1 prompt length."""
    fast, slow = ({r["prompt_len"]: r for r in speed if r["dtype"] == dt and r["batch_size"] == 1}
                  for dt in (dtype, base))
    if not fast.keys() & slow.keys():
        return None
    shortest = min(fast.keys() & slow.keys())
    a, b = fast[shortest], slow[shortest]
    return {"prompt_len": shortest,
            "prefill": a["prefill_tok_s"]["median"] / b["prefill_tok_s"]["median"],
            "decode": a["decode_tok_s"]["median"] / b["decode_tok_s"]["median"]}


def decode_tokens_per_s(model, *, new_tokens: int = 32, **how) -> dict[str, float]:
    """Greedy decode tokens/s per sequence (``median``, ``min``, ``max``): the decode part of
    :func:`measure_generation` (same arguments), ``new_tokens`` forced (no early stop)."""
    return measure_generation(model, new_tokens=new_tokens, **how)["decode_tok_s"]



def measure_bandwidth_gbs(device: str = "cuda", size_mb: int = 1024, repeats: int = 5) -> float:
    """Memory bandwidth by copying a buffer (read + write counted), GB/s, best of ``repeats``."""
    dev = torch.device(device)
    src = torch.empty(int(size_mb * MB) // 4, dtype=torch.float32, device=dev).uniform_()
    dst = src.clone()  # a copy made: the warm-up
    best = 0.0
    for _ in range(repeats):
        synchronize(dev)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(dev)
        best = max(best, 2 * src.numel() * 4 / (time.perf_counter() - start) / GB)
    return best


def decode_roofline_tokens_per_s(weight_bytes: float, kv_bytes_per_token: float,
                                 context_len: int, bandwidth_gbs: float,
                                 batch_size: int = 1) -> float:
    """Upper bound on decode tokens/s per sequence when memory bandwidth is the limit: a step
    reads every weight once for the whole batch, plus each sequence's KV cache."""
    if bandwidth_gbs <= 0:
        raise ValueError("bandwidth_gbs must be positive")
    step_bytes = weight_bytes + batch_size * context_len * kv_bytes_per_token
    return bandwidth_gbs * GB / step_bytes


def roofline(record: dict, *, weight_bytes: float, kv_per_token: float,
             bandwidth_gbs: float) -> dict:
    """A ``measure_generation`` record with its roofline (:func:`decode_roofline_tokens_per_s`
    at the context of the middle of the decode), ``roofline_tok_s``, and ``fraction``: the
    measured median over that bound."""
    context = record["prompt_len"] + record["new_tokens"] // 2
    bound = decode_roofline_tokens_per_s(weight_bytes, kv_per_token, context, bandwidth_gbs,
                                         batch_size=record["batch_size"])
    return {**record, "roofline_tok_s": bound, "bandwidth_gbs": bandwidth_gbs,
            "fraction": record["decode_tok_s"]["median"] / bound}
