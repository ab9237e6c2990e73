"""GPU checks: a Yi-shaped model with random weights, memory and speed measured, a roofline.

No download is needed: the model is built from the Yi config in :mod:`yi_helpers.models`, so a
CUDA machine without hub access can still measure what Yi-6B costs. Every function also runs on
a CPU at a tiny scale (``tiny_yi_config``), which is how the tests check the logic.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .models import DEFAULT_CONTEXT_LEN, REGISTRY, ModelSpec, estimate_memory, spec

GB = 1e9


def yi_config(model: str | ModelSpec = "01-ai/Yi-6B", **overrides: Any):
    """A ``LlamaConfig`` with the registry's numbers for ``model`` (Yi-6B by default)."""
    from transformers import LlamaConfig

    s = spec(model)
    fields = dict(
        vocab_size=s.vocab_size, hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads, head_dim=s.head_dim,
        max_position_embeddings=s.max_positions, rope_theta=s.rope_theta,
        rms_norm_eps=s.rms_norm_eps, tie_word_embeddings=s.tie_embeddings,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)


def tiny_yi_config():
    """Yi-6B's layout (grouped-query attention, head size 128, rope theta 5e6, untied LM head) at
    a size a CPU test can run. The MLP keeps Yi's width ratio (11008 / 4096), rounded to a
    multiple of 64 as real widths are: bitsandbytes' 4-bit CPU kernel needs that on CPUs with
    AVX-512 bf16."""
    return yi_config("01-ai/Yi-6B", hidden_size=256, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=128, intermediate_size=704, num_hidden_layers=2, vocab_size=1000,
                     max_position_embeddings=4096)


def random_model(config, *, dtype: torch.dtype = torch.bfloat16, device: str = "cpu",
                 seed: int = 0):
    """A ``LlamaForCausalLM`` with random weights, created directly on ``device``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype).eval()


def _cache_kwarg(model) -> str:
    """transformers 5.2x renamed forward's ``past_key_values`` to ``cache``; accept both."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _out_cache(out):
    """The KV cache a forward pass returned (transformers 5.2x names it ``cache``)."""
    return out["cache"] if "cache" in out else out.past_key_values


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_peak_gb(model, batch_size: int, context_len: int) -> float:
    """Peak memory (GB) to prefill ``batch_size`` sequences of ``context_len`` tokens and decode
    one more token with the KV cache: allocated GPU memory on CUDA (weights included), or on a
    CPU the bytes of weights + KV cache that the run held (an exact count, not RSS)."""
    device = next(model.parameters()).device
    ids = torch.randint(3, model.config.vocab_size, (batch_size, context_len), device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1:].argmax(-1)
        out = model(input_ids=nxt, use_cache=True, logits_to_keep=1,
                    **{_cache_kwarg(model): _out_cache(out)})
    _sync(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        cache = _out_cache(out)
        kv = sum(t.numel() * t.element_size() for layer in cache.layers
                 for t in (layer.keys, layer.values))
        peak = sum(p.numel() * p.element_size() for p in model.parameters()) + kv
    del out
    return peak / GB


def decode_tokens_per_s(model, *, batch_size: int = 1, prompt_len: int = 128,
                        new_tokens: int = 64, repeats: int = 3) -> dict[str, float]:
    """Greedy decode throughput, tokens/s per sequence: one warm-up, then ``repeats`` timed runs.
    Returns the median with min and max (never a single timing)."""
    device = next(model.parameters()).device
    ids = torch.randint(3, model.config.vocab_size, (batch_size, prompt_len), device=device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=0)
    rates = []
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            model.generate(ids, **kwargs)
            _sync(device)
            rates.append(new_tokens / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def measure_bandwidth_gbs(device: str = "cuda", size_mb: int = 1024, repeats: int = 5) -> float:
    """Memory bandwidth by copying a buffer (read + write counted), GB/s, best of ``repeats``."""
    dev = torch.device(device)
    src = torch.empty(size_mb * 1_000_000 // 4, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    best = 0.0
    for _ in range(repeats):
        _sync(dev)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(dev)
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


@dataclass
class MemoryRecord:
    model: str
    batch_size: int
    context_len: int
    measured_gb: float
    estimate_gb: float
    readme_gb: float | None
    weights: str = "bf16"

    @property
    def estimate_error(self) -> float:
        return self.estimate_gb / self.measured_gb - 1


#: The Yi README's memory table has a row per chat model; its quantized rows are the
#: published AWQ 4-bit (``-Chat-4bits``) and GPTQ 8-bit (``-Chat-8bits``) models.
_README_SUFFIX = {16: "", 8: "-8bits", 4: "-4bits"}


def memory_record(model: str | ModelSpec, batch_size: int, context_len: int,
                  measured_gb: float, *, weight_bits: int = 16,
                  weights: str | None = None) -> MemoryRecord:
    """A measurement next to ``estimate_memory`` at the same ``weight_bits`` and, where it has
    the cell, the Yi README (a 4-bit measurement is compared with the README's 4-bit row)."""
    s = spec(model)
    # the README's table lists chat models; a base model has the chat model's shapes
    chat = s.id if s.id.endswith("Chat") else f"{s.id}-Chat"
    readme_model = chat + _README_SUFFIX[weight_bits] if weight_bits in _README_SUFFIX else None
    readme = (REGISTRY[readme_model].readme_memory_gb.get(batch_size)
              if readme_model in REGISTRY else None)
    est = estimate_memory(s, batch_size=batch_size, context_len=context_len,
                          weight_bits=weight_bits).total_gb
    label = weights or ("bf16" if weight_bits == 16 else f"{weight_bits}-bit")
    return MemoryRecord(s.id, batch_size, context_len, measured_gb, est, readme, label)


@dataclass
class GpuReport:
    """What ``tools/gpu_check.py`` writes to ``report.json`` (schema version 1)."""

    device: str
    torch_version: str
    started: str
    notebooks: list[dict] = field(default_factory=list)  # notebook, status, seconds, peak_gpu_gb
    memory: list[dict] = field(default_factory=list)  # MemoryRecord fields + estimate_error
    decode: list[dict] = field(default_factory=list)  # model, dtype, tokens/s, roofline, fraction
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: int = 1

    @classmethod
    def load(cls, path: str | Path) -> "GpuReport":
        """A report read back from its ``report.json`` (to render it again, or to compare)."""
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        lines = [f"# GPU check: {self.device}", "",
                 f"torch {self.torch_version}, started {self.started}", ""]
        if self.notebooks:
            lines += ["## Notebooks (device=cuda)", "", "| notebook | status | seconds | peak GPU GB |",
                      "|---|---|---|---|"]
            lines += [f"| {n['notebook']} | {n['status']} | {n['seconds']:.1f} | "
                      f"{_fmt(n.get('peak_gpu_gb'))} |" for n in self.notebooks]
            lines.append("")
        if self.memory:
            lines += ["## Yi-shaped model, random weights: peak memory", "",
                      "| model | weights | batch | context | measured GB | estimate GB | error | "
                      "Yi README GB |", "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {m['model']} | {m.get('weights', 'bf16')} | {m['batch_size']} | "
                      f"{m['context_len']} | "
                      f"{m['measured_gb']:.1f} | {m['estimate_gb']:.1f} | "
                      f"{m['estimate_error']:+.0%} | {_fmt(m.get('readme_gb'))} |"
                      for m in self.memory]
            lines.append("")
            if any(m.get("readme_gb") is not None and m["context_len"] != DEFAULT_CONTEXT_LEN
                   for m in self.memory):
                lines += ["The Yi README's table states no context length; `estimate_memory` "
                          f"reproduces it at {DEFAULT_CONTEXT_LEN:,} tokens (lesson 01). Rows at "
                          "another context hold another KV cache than the README's cells: judge "
                          "them against the estimate, and the README mainly at small batches, "
                          "where the weights dominate.", ""]
        if self.decode:
            lines += ["## Decode speed vs the memory-bandwidth roofline", "",
                      "| model | weights | batch | tokens/s (median, min–max) | roofline tokens/s | "
                      "fraction |", "|---|---|---|---|---|---|"]
            lines += [f"| {d['model']} | {d['weights']} | {d['batch_size']} | "
                      f"{d['tokens_per_s']:.1f} ({d['min']:.1f}–{d['max']:.1f}) | "
                      f"{d['roofline_tokens_per_s']:.1f} | {d['fraction']:.0%} |"
                      for d in self.decode]
            lines.append("")
        readings = self.readings()
        if readings:
            lines += ["## Reading the numbers", ""] + [f"- {r}" for r in readings] + [""]
        for title, items in (("Skipped", self.skipped), ("Notes", self.notes)):
            if items:
                lines += [f"## {title}", ""] + [f"- {i}" for i in items] + [""]
        return "\n".join(lines)

    def readings(self) -> list[str]:
        """What the tables say, in numbers: memory per added token of batch x context (from
        ``memory_per_token``) and, for each decode row, the time per token against the time its
        weights take to stream at the roofline."""
        out = []
        slope = memory_per_token(self.memory)
        if slope is not None:
            line = (f"{slope['model']}, {slope['weights']}: each added token of batch x context "
                    f"costs {slope['measured_kb']:.0f} KB measured against "
                    f"{slope['estimate_kb']:.0f} KB estimated (batch {slope['batches'][0]} -> "
                    f"{slope['batches'][1]} at {slope['context_len']:,} tokens)")
            if slope.get("kv_kb") is not None:
                line += (f"; its KV cache alone is {slope['kv_kb']:.0f} KB, so "
                         f"{slope['measured_kb'] - slope['kv_kb']:.0f} KB are activations of "
                         "the prefill, which runs every prompt token through the layers at "
                         f"once (`estimate_memory` budgets {slope['estimate_kb'] - slope['kv_kb']:.0f}"
                         " KB): a chunked prefill bounds them by the chunk, not the prompt")
            out.append(line)
        for d in self.decode:
            if d["tokens_per_s"] > 0 and d["roofline_tokens_per_s"] > 0:
                out.append(f"{d['model']}, {d['weights']}, batch {d['batch_size']}: "
                           f"{1e3 / d['tokens_per_s']:.1f} ms per token against "
                           f"{1e3 / d['roofline_tokens_per_s']:.1f} ms to stream its weights "
                           f"and KV cache once ({d['fraction']:.0%} of the roofline)"
                           + (": far from memory-bound, as eager decoding at a small batch "
                              "usually is (each token launches hundreds of small kernels from "
                              "Python; lesson 06's static cache and torch.compile cut that "
                              "overhead)" if d["fraction"] < 0.25 else ""))
        return out

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(self.to_json() + "\n", encoding="utf-8")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        return out / "report.json", out / "report.md"


def memory_per_token(memory: list[dict]) -> dict | None:
    """Memory per added token of batch x context, KB: the slope between the two largest batch
    sizes that share a model, weight format and context, measured and estimated, with the KV
    cache's share where the model is in the registry. ``None`` without two such rows."""
    groups: dict[tuple, dict[int, dict]] = {}
    for m in memory:  # one row per batch size (a repeated measurement: the last one)
        key = (m["model"], m.get("weights", "bf16"), m["context_len"])
        groups.setdefault(key, {})[m["batch_size"]] = m
    pairs = [[rows[b] for b in sorted(rows)[-2:]] for rows in groups.values() if len(rows) >= 2]
    if not pairs:
        return None
    small, large = max(pairs, key=lambda p: (p[1]["batch_size"], p[1]["measured_gb"]))
    tokens = (large["batch_size"] - small["batch_size"]) * large["context_len"]
    kv = REGISTRY[large["model"]].kv_bytes_per_token() / 1e3 if large["model"] in REGISTRY else None
    return {"model": large["model"], "weights": large.get("weights", "bf16"),
            "context_len": large["context_len"],
            "batches": (small["batch_size"], large["batch_size"]),
            "measured_kb": (large["measured_gb"] - small["measured_gb"]) * GB / 1e3 / tokens,
            "estimate_kb": (large["estimate_gb"] - small["estimate_gb"]) * GB / 1e3 / tokens,
            "kv_kb": kv}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if value == float("inf"):
        return "> 80"
    return f"{value:.1f}"


def record_dict(record: MemoryRecord) -> dict:
    return asdict(record) | {"estimate_error": record.estimate_error}
