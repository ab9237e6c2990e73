"""Speed, measured honestly: prefill and decode timings, compiled decoding, the roofline.

Timings are never single: one warm-up, then ``repeats`` runs, reported as the median with min
and max. :func:`measure_generation` times the prefill (time to first token) and each decode
step of greedy generation with the KV cache; :func:`decode_tokens_per_s` is its decode speed
alone (the hub's one decode-speed measure). :func:`roofline` turns a decode speed into the
fraction of the memory-bandwidth upper bound, with :func:`measure_bandwidth_gbs` and
:func:`decode_roofline_tokens_per_s`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..compat import cache_kwarg, output_cache, synchronize
from ..measure import peak_rss_mb, reset_peak_rss, rss_mb
from ..units import GB, MB

__all__ = ["median_min_max", "measure_generation", "decode_tokens_per_s", "compile_decode",
           "dtype_speedup", "kv_bytes_per_token", "measure_bandwidth_gbs",
           "decode_roofline_tokens_per_s", "roofline"]

def median_min_max(values: list[float]) -> dict[str, float]:
    """How the hub reports repeated timings: median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def random_prompt(model, batch_size: int, prompt_len: int, seed: int = 0) -> torch.Tensor:
    """Random token ids (``batch_size`` × ``prompt_len``, ids from 3 up: no special tokens at the
    start of the vocabulary), seeded, on the model's device: timing needs no real text."""
    ids = torch.randint(3, model.config.vocab_size, (batch_size, prompt_len),
                        generator=torch.Generator().manual_seed(seed))
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def _one_generation(model, ids: torch.Tensor, new_tokens: int, *, static_cache: bool = False,
                    cache_len: int | None = None,
                    decode_forward=None) -> tuple[float, float, torch.Tensor]:
    """(prefill seconds, decode seconds for new_tokens - 1 steps, the generated token ids) of one
    greedy generation. ``static_cache``: a preallocated ``StaticCache`` of ``cache_len`` slots
    (fixed shapes, what torch.compile needs); ``decode_forward``: the callable for the decode
    steps (for example ``torch.compile(model.forward)``), the prefill always runs ``model``."""
    device = next(model.parameters()).device
    ids = ids.to(device)  # a prompt made on the CPU works with a model on the GPU
    key = cache_kwarg(model)
    batch, length = ids.shape
    step = decode_forward or model
    cache = None
    if static_cache:
        from transformers import StaticCache

        cache = StaticCache(config=model.config, max_cache_len=cache_len or length + new_tokens)
    extra = {key: cache} if cache is not None else {}
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
    """Time greedy generation: prefill (time to first token) and decode, with the KV cache.

    One forward pass over the prompt gives the first token (TTFT); each further token is one
    decode step. Reports median / min / max over ``repeats`` runs after ``warmup`` runs:
    ``ttft_s``, ``prefill_tok_s`` (prompt tokens × batch / prefill time), ``decode_tok_s``
    (tokens per second per sequence) and ``decode_tok_s_total`` (× batch), and the peak memory:
    ``peak_mb`` (GPU allocated, or CPU RSS high-water) and ``peak_extra_mb`` (above the memory
    held before the run: activations and KV cache).

    ``static_cache=True`` preallocates the KV cache for ``prompt_len + new_tokens`` tokens
    instead of growing it; ``decode_forward`` replaces ``model`` for the decode steps (a
    compiled forward: see :func:`compile_decode`). Both are written into the record
    (``cache``, ``compiled``). ``prompt_ids`` (a list of token ids) times a real prompt instead
    of ``prompt_len`` random ids: the same ids another engine gets (``batch_size`` copies).
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
        _one_generation(model, ids, min(new_tokens, 4), **how)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / MB
    else:
        reset_peak_rss()
        before = rss_mb()
    prefill, decode = [], []
    for _ in range(repeats):
        p, d, _tokens = _one_generation(model, ids, new_tokens, **how)
        prefill.append(p)
        decode.append(d)
    peak = (torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda"
            else peak_rss_mb())
    steps = new_tokens - 1
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return {"label": label, "dtype": dtype, "device": device.type, "batch_size": batch_size,
            "prompt_len": prompt_len, "new_tokens": new_tokens, "repeats": repeats,
            "cache": "static" if static_cache else "dynamic", "compiled": decode_forward is not None,
            "ttft_s": median_min_max(prefill),
            "prefill_tok_s": median_min_max([batch_size * prompt_len / t for t in prefill]),
            "decode_tok_s": median_min_max([steps / t for t in decode]),
            "decode_tok_s_total": median_min_max([batch_size * steps / t for t in decode]),
            "peak_mb": round(peak, 1), "peak_extra_mb": round(peak - before, 1)}


def compile_decode(model, *, batch_size: int = 1, prompt_len: int = 128, new_tokens: int = 16,
                   backend: str = "inductor", mode: str | None = None) -> tuple[Any, float]:
    """``torch.compile`` the model's forward for decode steps with a static cache, and compile it
    now: returns ``(compiled forward, compile seconds)``.

    The compile happens on the first calls (one generation at these sizes), so its cost is
    measured apart from the speed after it. ``dynamic=False``: one graph for these fixed shapes
    (another batch size or cache length compiles again). ``backend="eager"`` checks the
    mechanics in seconds without generating code (tests). On a CUDA GPU try
    ``mode="reduce-overhead"`` (CUDA graphs).
    """
    forward = torch.compile(model.forward, backend=backend, mode=mode, dynamic=False)
    ids = random_prompt(model, batch_size, prompt_len)
    start = time.perf_counter()
    _one_generation(model, ids, new_tokens, static_cache=True, cache_len=prompt_len + new_tokens,
                    decode_forward=forward)
    return forward, time.perf_counter() - start


def dtype_speedup(speed: list[dict], dtype: str = "bfloat16", base: str = "float32") -> dict | None:
    """Speed of ``dtype`` as a multiple of ``base`` on the same setting: the batch-1 run with the
    shortest prompt both dtypes have in ``speed`` (``measure_generation`` records).

    Returns ``{"prompt_len", "prefill", "decode"}`` (above 1: ``dtype`` is faster), or ``None``
    when the two dtypes share no batch-1 prompt length.
    """
    def runs(dt: str) -> dict[int, dict]:
        return {r["prompt_len"]: r for r in speed if r["dtype"] == dt and r["batch_size"] == 1}

    fast, slow = runs(dtype), runs(base)
    shared = sorted(fast.keys() & slow.keys())
    if not shared:
        return None
    a, b = fast[shared[0]], slow[shared[0]]
    return {"prompt_len": shared[0],
            "prefill": a["prefill_tok_s"]["median"] / b["prefill_tok_s"]["median"],
            "decode": a["decode_tok_s"]["median"] / b["decode_tok_s"]["median"]}


def greedy_tokens(model, ids: torch.Tensor, new_tokens: int, *, static_cache: bool = False,
                  decode_forward=None) -> torch.Tensor:
    """The ``new_tokens`` greedy tokens that ``measure_generation`` times (to check that a faster
    path computes the same thing)."""
    return _one_generation(model, ids, new_tokens, static_cache=static_cache,
                           decode_forward=decode_forward)[2]


def decode_tokens_per_s(model, *, batch_size: int = 1, prompt_len: int = 128, new_tokens: int = 32,
                        repeats: int = 3, warmup: int = 1, seed: int = 0) -> dict[str, float]:
    """Greedy decode speed, tokens per second per sequence: ``median``, ``min`` and ``max`` over
    ``repeats`` runs after ``warmup`` (the decode part of :func:`measure_generation`, prefill
    excluded; ``new_tokens`` are forced, no early stop)."""
    return measure_generation(model, batch_size=batch_size, prompt_len=prompt_len,
                              new_tokens=new_tokens, repeats=repeats, warmup=warmup,
                              seed=seed)["decode_tok_s"]


def kv_bytes_per_token(model) -> int:
    """Bytes of KV cache one token adds: 2 (K and V) × layers × KV heads × head size × bytes."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * element


def measure_bandwidth_gbs(device: str = "cuda", size_mb: int = 1024, repeats: int = 5) -> float:
    """Memory bandwidth by copying a buffer (read + write counted), GB/s, best of ``repeats``."""
    dev = torch.device(device)
    src = torch.empty(int(size_mb * MB) // 4, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
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
    """Upper bound on decode speed (tokens/s per sequence) when memory bandwidth is the limit.

    Each decode step reads every weight once for the whole batch, plus each sequence's KV
    cache: ``time = (weights + batch * context * kv_per_token) / bandwidth``.
    """
    if bandwidth_gbs <= 0:
        raise ValueError("bandwidth_gbs must be positive")
    step_bytes = weight_bytes + batch_size * context_len * kv_bytes_per_token
    return bandwidth_gbs * GB / step_bytes


def roofline(record: dict, *, weight_bytes: float, kv_per_token: float,
             bandwidth_gbs: float) -> dict:
    """Add the decode roofline to a ``measure_generation`` record.

    A decode step reads every weight once (for the whole batch) and each sequence's KV cache, so
    memory bandwidth bounds it: ``tokens/s per sequence ≤ bandwidth / (weights + batch × context
    × KV per token)`` (:func:`decode_roofline_tokens_per_s`). The context used is the middle of
    the decode. ``fraction`` is the measured median over that bound.
    """
    context = record["prompt_len"] + record["new_tokens"] // 2
    bound = decode_roofline_tokens_per_s(weight_bytes, kv_per_token, context, bandwidth_gbs,
                                         batch_size=record["batch_size"])
    return {**record, "roofline_tok_s": bound, "bandwidth_gbs": bandwidth_gbs,
            "fraction": record["decode_tok_s"]["median"] / bound}
