"""Long context: what a window costs, whether a model uses it, and what RoPE scaling changes.

The window and its check, a measured prefill (time, memory, cache), the needle-in-a-haystack
test on the hub's own filler text (``data/haystack_en.txt``, ``haystack_zh.txt``: written for
the hub, never downloaded), loss by position, RoPE's frequencies, the planner's largest batch.
The KV cache's size from a config is ``models.kv_cache_bytes``.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .models import ModelSpec, estimate_memory

__all__ = ["context_window", "measure_prefill", "filler_ids", "ask_needle", "loss_by_position",
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


#: Needle, question and the value to find, per language: short and distinctive, so that a small
#: model can find it at a short length (a test that nobody passes teaches nothing).
NEEDLES: dict[str, tuple[str, str, str]] = {
    "en": ("The secret code is 4817.", "What is the secret code?", "4817"),
    "zh": ("秘密代码是4817。", "秘密代码是多少？", "4817"),
}
_ZH_DIGITS = str.maketrans("零〇一二三四五六七八九", "00123456789")


@dataclass(frozen=True)
class Haystack:
    """Filler token ids with the needle inside: its first position and length, and its depth
    (start / (tokens - needle length))."""

    ids: list[int]
    needle_start: int
    needle_len: int
    lang: str
    depth: float


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


def build_haystack(tokenizer: Any, n_tokens: int, depth: float, *, lang: str = "en") -> Haystack:
    """``n_tokens`` tokens of filler with the needle sentence at ``depth`` (0: the start, 1: the
    end), placed at the sentence boundary nearest to that depth."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    needle = (" " if lang == "en" else "") + NEEDLES[lang][0]
    needle_ids = tokenizer(needle, add_special_tokens=False)["input_ids"]
    room = n_tokens - len(needle_ids)
    if room < 1:
        raise ValueError(f"the needle ({len(needle_ids)} tokens) does not fit in {n_tokens} "
                         "tokens: ask for a longer haystack")
    filler = filler_ids(tokenizer, room, lang)
    target = round(depth * room)
    ends = [0, room] + [i + 1 for i in range(room - 1)
                        if re.search(r"[.。!?！？]\s*$", tokenizer.decode(filler[i:i + 1]))]
    start = min(ends, key=lambda i: (abs(i - target), i))
    return Haystack(filler[:start] + needle_ids + filler[start:], start, len(needle_ids), lang,
                    start / room)


def needle_found(reply: str, value: str = "4817") -> bool:
    """Whether ``reply`` states ``value``: digits in either language (``4817``, ``四八一七``),
    not inside a longer number, so near misses (``4871``, ``48170``, ``481``) fail."""
    normal = reply.translate(_ZH_DIGITS)
    return re.search(rf"(?<!\d){re.escape(value)}(?!\d)", normal) is not None


def ask_needle(model: Any, tokenizer: Any, n_tokens: int, depth: float, *, lang: str = "en",
               max_new_tokens: int = 12, strict: bool = True) -> dict:
    """Hide the needle at ``depth`` in ``n_tokens`` of filler, ask for it in the same user turn
    (greedy), and score the reply: ``found``, ``reply``, the actual ``depth``, the prompt's
    length. ``strict=False`` runs a prompt longer than the window instead of refusing it."""
    import torch

    hay = build_haystack(tokenizer, n_tokens, depth, lang=lang)
    marker = "\x00HAYSTACK\x00"  # the haystack's ids go in its place, not re-tokenized
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{marker}\n\n{NEEDLES[lang][1]}"}],
        add_generation_prompt=True, tokenize=False)
    before, after = (tokenizer(t, add_special_tokens=False)["input_ids"]
                     for t in text.split(marker))
    ids = before + hay.ids + after
    if strict:
        check_window(model.config, len(ids) + max_new_tokens)
    x = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=False, max_length=None)
    reply = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
    return {"n_tokens": n_tokens, "depth": hay.depth, "prompt_tokens": len(ids), "reply": reply,
            "found": needle_found(reply, NEEDLES[lang][2])}


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
