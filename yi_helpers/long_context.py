"""Long context: what a window costs, whether a model uses it, and what RoPE scaling changes.

- :func:`context_window`: the tokens a model can place (its trained window, times a RoPE scaling
  factor when the config has one); :class:`ContextTooLongError` when a prompt does not fit.
- :func:`kv_cache_bytes`: the KV cache's size from the config (GQA-aware; ``gqa=False`` is the
  counterfactual with one KV head per query head); :func:`cache_bytes`: a real cache object's.
- :func:`measure_prefill`: one prefill (whole, or in chunks) timed, with the memory it adds
  and the time per decoded token after it.
- :func:`build_haystack` / :func:`ask_needle` / :func:`needle_found`: the needle-in-a-haystack
  test on the hub's own filler text (``data/haystack_en.txt``, ``haystack_zh.txt``: written
  for the hub, shipped, never downloaded).
- :func:`loss_by_position`: mean loss of a document's tokens by position.
- :func:`rope_inv_freq`: RoPE's frequencies through transformers' own rope functions.
- :func:`max_batch`: the planner's largest batch at a context length.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .models import ModelSpec, estimate_memory, spec, spec_from_config

__all__ = ["ContextTooLongError", "context_window", "check_window", "kv_cache_bytes",
           "cache_bytes", "measure_prefill", "filler_ids", "ask_needle", "loss_by_position",
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
            "for a chat, Conversation(tokenizer, max_context=...) drops the oldest turns")


def _spec(model: Any) -> ModelSpec:
    if isinstance(model, (str, ModelSpec)):
        return spec(model)
    config = getattr(model, "config", model)
    return spec_from_config(config)


def kv_cache_bytes(model: Any, tokens: int, *, batch_size: int = 1, kv_bits: int = 16,
                   gqa: bool = True) -> int:
    """Bytes of KV cache for ``batch_size × tokens`` tokens: K and V, every layer, every KV head
    (``model``: a registry id, a ``ModelSpec``, a config or a loaded model). ``gqa=False``: as if
    every query head had its own K and V (no grouped-query attention)."""
    s = _spec(model)
    per_token = s.kv_bytes_per_token(kv_bits) * (1 if gqa else s.num_heads // s.num_kv_heads)
    return per_token * tokens * batch_size


def cache_bytes(cache: Any) -> int:
    """Bytes the tensors of a transformers cache object hold (keys and values of every layer)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


def measure_prefill(model: Any, ids: Any, *, chunk: int | None = None,
                    decode_steps: int = 4) -> dict:
    """Prefill ``ids`` (1 × n token ids) with the KV cache and ``logits_to_keep=1`` (no
    full-vocabulary logits), whole or in pieces of ``chunk`` tokens, then decode
    ``decode_steps`` tokens greedily. Returns seconds (prefill, per decoded token), the cache's
    bytes after the prefill, and the peak memory the prefill added, in MB: ``added_mb``, the
    tensors PyTorch allocated (CUDA: ``max_memory_allocated``; CPU: counted by
    ``measure.TensorBytes``), and on a CPU ``rss_added_mb``, the process's resident memory."""
    import torch

    from .compat import cache_kwarg, output_cache, synchronize
    from .measure import TensorBytes, peak_rss_mb, release_memory, reset_peak_rss, rss_mb
    from .units import MB

    device = next(model.parameters()).device
    ids = ids.to(device)
    n = ids.shape[1]
    check_window(model.config, n + decode_steps)
    cuda = device.type == "cuda"
    release_memory()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        rss_before = rss_mb()
    counted = contextlib.nullcontext() if cuda else TensorBytes(model)
    step = chunk or n
    key = cache_kwarg(model)
    cache = None
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        with counted:
            for i in range(0, n, step):
                out = model(ids[:, i:i + step], use_cache=True, logits_to_keep=1,
                            **({key: cache} if cache is not None else {}))
                cache = output_cache(out)
        synchronize(device)
        prefill_s = time.perf_counter() - start
        record = {"tokens": n, "chunk": chunk, "prefill_s": prefill_s,
                  "prefill_tok_s": n / prefill_s, "cache_mb": cache_bytes(cache) / MB}
        if cuda:
            record["added_mb"] = (torch.cuda.max_memory_allocated(device) - before) / MB
        else:
            record["added_mb"] = counted.peak / MB
            record["rss_added_mb"] = peak_rss_mb() - rss_before
        token = out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(decode_steps):
            out = model(token, use_cache=True, **{key: cache})
            cache = output_cache(out)
            token = out.logits[:, -1:].argmax(-1)
        synchronize(device)
    record["decode_s_per_token"] = (time.perf_counter() - start) / max(decode_steps, 1)
    del cache, out
    return record


# ---------------------------------------------------------------------------------------------
# Needle in a haystack
# ---------------------------------------------------------------------------------------------

#: Needle, question and the value to find, per language: short and distinctive, so that a small
#: model can find it at a short length (a test that nobody passes teaches nothing).
NEEDLES: dict[str, tuple[str, str, str]] = {
    "en": ("The secret code is 4817.", "What is the secret code?", "4817"),
    "zh": ("秘密代码是4817。", "秘密代码是多少？", "4817"),
}
_ZH_DIGITS = str.maketrans("零〇一二三四五六七八九", "00123456789")


@dataclass(frozen=True)
class Haystack:
    """Token ids of filler text with a needle inside: ``ids`` (exactly ``n_tokens``), the
    needle's first position and length, and its depth (start / (n_tokens - needle length))."""

    ids: list[int]
    needle_start: int
    needle_len: int
    lang: str

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def depth(self) -> float:
        room = self.n_tokens - self.needle_len
        return self.needle_start / room if room else 0.0


def filler_ids(tokenizer: Any, n_tokens: int | None = None, lang: str = "en") -> list[int]:
    """Token ids of the hub's filler text: ``n_tokens`` of them (the text repeated when longer is
    asked for), or the whole text once (``None``)."""
    from .corpus import data_path

    if lang not in NEEDLES:
        raise ValueError(f"lang must be one of {sorted(NEEDLES)}, got {lang!r}")
    text = data_path(f"haystack_{lang}.txt").read_text(encoding="utf-8").strip()
    one = tokenizer(text + "\n\n", add_special_tokens=False)["input_ids"]
    if n_tokens is None:
        return one
    return (one * (n_tokens // len(one) + 1))[:n_tokens]


def build_haystack(tokenizer: Any, n_tokens: int, depth: float, *, lang: str = "en",
                   needle: str | None = None) -> Haystack:
    """``n_tokens`` tokens of filler with the needle sentence at ``depth`` (0: the start, 1: the
    end), placed at the sentence boundary nearest to that depth."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    needle = needle or NEEDLES[lang][0]
    needle_ids = tokenizer((" " if lang == "en" else "") + needle, add_special_tokens=False)[
        "input_ids"]
    room = n_tokens - len(needle_ids)
    if room < 1:
        raise ValueError(f"the needle ({len(needle_ids)} tokens) does not fit in {n_tokens} "
                         "tokens: ask for a longer haystack")
    filler = filler_ids(tokenizer, room, lang)
    target = round(depth * room)
    ends = [0, room] + [i + 1 for i in range(room - 1)
                        if re.search(r"[.。!?！？]\s*$", tokenizer.decode(filler[i:i + 1]))]
    start = min(ends, key=lambda i: (abs(i - target), i))
    return Haystack(filler[:start] + needle_ids + filler[start:], start, len(needle_ids), lang)


def needle_prompt(tokenizer: Any, haystack: Haystack) -> list[int]:
    """The chat prompt's token ids: the haystack, then the question, in one user turn."""
    question = NEEDLES[haystack.lang][1]
    marker = "\x00HAYSTACK\x00"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{marker}\n\n{question}"}], add_generation_prompt=True,
        tokenize=False)
    before, after = text.split(marker)
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    return encode(before) + haystack.ids + encode(after)


def needle_found(reply: str, value: str = "4817") -> bool:
    """Whether ``reply`` states ``value``: digits in either language (``4817``, ``四八一七``),
    not inside a longer number, so near misses (``4871``, ``48170``, ``481``) fail."""
    normal = reply.translate(_ZH_DIGITS)
    return re.search(rf"(?<!\d){re.escape(value)}(?!\d)", normal) is not None


def ask_needle(model: Any, tokenizer: Any, n_tokens: int, depth: float, *, lang: str = "en",
               max_new_tokens: int = 12, strict: bool = True) -> dict:
    """Hide the needle at ``depth`` in ``n_tokens`` of filler, ask for it (greedy), and score the
    reply. Returns ``found``, ``reply``, the actual ``depth`` and the prompt's length.
    ``strict=False`` runs a prompt longer than the window instead of refusing it: to see what
    happens past the window."""
    import torch

    hay = build_haystack(tokenizer, n_tokens, depth, lang=lang)
    ids = needle_prompt(tokenizer, hay)
    if strict:
        check_window(model.config, len(ids) + max_new_tokens)
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(torch.tensor([ids], device=device), max_new_tokens=max_new_tokens,
                             do_sample=False, max_length=None,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long,
                                                       device=device))
    reply = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
    return {"n_tokens": n_tokens, "depth": hay.depth, "prompt_tokens": len(ids), "reply": reply,
            "found": needle_found(reply, NEEDLES[lang][2])}


# ---------------------------------------------------------------------------------------------
# Loss by position, RoPE
# ---------------------------------------------------------------------------------------------

def loss_by_position(model: Any, ids: Sequence[int], *, bucket: int = 256,
                     chunk: int = 512, strict: bool = True) -> list[dict]:
    """Mean next-token loss of a document's tokens, by position bucket (``bucket`` tokens each):
    one forward pass for the hidden states, the output layer applied ``chunk`` positions at a
    time (full-vocabulary logits for the whole document would not fit in memory).
    ``strict=False``: past the window too (see :func:`ask_needle`)."""
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
    out = []
    for start in range(0, loss.shape[0], bucket):
        part = loss[start:start + bucket]
        out.append({"start": start + 1, "end": start + part.shape[0], "loss": float(part.mean())})
    return out


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

    rope = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", "default")
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
    best = 0
    for batch in range(1, limit + 1):
        if estimate_memory(model, batch, context_len, kv_bits=kv_bits).total_gb > memory_gb:
            break
        best = batch
    return best
