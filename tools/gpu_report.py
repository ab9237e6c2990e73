"""The GPU runner's report (``tools/gpu_check.py``): memory and decode rows of a Yi-shaped model,
the notebooks' times, written as ``report.json`` and ``report.md``.

Not part of the learners' package: only the runner writes it. The measurements themselves come
from ``yi_helpers`` (``bench.speed``; ``inference_peak_gb`` here); this module puts them next
to the planner's estimate and the Yi README's table, and reads the numbers out.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yi_helpers.models import DEFAULT_CONTEXT_LEN, REGISTRY, ModelSpec, estimate_memory, spec
from yi_helpers.units import GB, KB

__all__ = ["MemoryRecord", "memory_record", "GpuReport", "memory_per_token", "record_dict"]


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
    notebook_parameters: dict = field(default_factory=dict)  # what every notebook ran with
    memory: list[dict] = field(default_factory=list)  # MemoryRecord fields + estimate_error
    decode: list[dict] = field(default_factory=list)  # model, dtype, tokens/s, roofline, fraction
    long_context: list[dict] = field(default_factory=list)  # model, tokens, prefill GB vs plan
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
            ran_with = ", ".join(f"{k}={v}" for k, v in self.notebook_parameters.items())
            lines += [f"## Notebooks ({ran_with or 'DEVICE=cuda'})", "",
                      "| notebook | status | seconds | peak GPU GB |", "|---|---|---|---|"]
            lines += [f"| {n['notebook']} | {n['status']} | {n['seconds']:.1f} | "
                      f"{_fmt(n.get('peak_gpu_gb'))} |" for n in self.notebooks]
            peaks = [n["peak_gpu_gb"] for n in self.notebooks if n.get("peak_gpu_gb") is not None]
            lines += [f"| **all** | | {sum(n['seconds'] for n in self.notebooks):.1f} | "
                      f"{_fmt(max(peaks) if peaks else None)} (largest) |", ""]
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
        if self.long_context:
            lines += ["## Long context: one prefill (bf16, SDPA, `logits_to_keep=1`)", "",
                      "| model | tokens | KV cache GB | added GB | planned GB | error | "
                      "prefill tokens/s | decode ms/token |", "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['model']} | {r['tokens']:,} | {r['cache_gb']:.2f} | "
                      f"{r['added_gb']:.2f} | {r['planned_gb']:.2f} | "
                      f"{r['added_gb'] / r['planned_gb'] - 1:+.0%} | {r['prefill_tok_s']:,.0f} | "
                      f"{r['decode_ms_per_token']:.1f} |" for r in self.long_context]
            lines.append("")
        if self.decode:
            lines += ["## Decode speed vs the memory-bandwidth roofline", "",
                      "| model | weights | decode path | batch | tokens/s (median, min–max) | "
                      "roofline tokens/s | fraction | compile s |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {d['model']} | {d['weights']} | {d.get('path', 'eager, dynamic cache')} | "
                      f"{d['batch_size']} | "
                      f"{d['tokens_per_s']:.1f} ({d['min']:.1f}–{d['max']:.1f}) | "
                      f"{d['roofline_tokens_per_s']:.1f} | {d['fraction']:.0%} | "
                      f"{_fmt(d.get('compile_s'))} |"
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
                path = d.get("path", "eager, dynamic cache")
                out.append(f"{d['model']}, {d['weights']}, {path}, batch {d['batch_size']}: "
                           f"{1e3 / d['tokens_per_s']:.1f} ms per token against "
                           f"{1e3 / d['roofline_tokens_per_s']:.1f} ms to stream its weights "
                           f"and KV cache once ({d['fraction']:.0%} of the roofline)"
                           + (": far from memory-bound, as eager decoding at a small batch "
                              "usually is (each token launches hundreds of small kernels from "
                              "Python; lesson 06's static cache and torch.compile cut that "
                              "overhead)" if d["fraction"] < 0.25 and path.startswith("eager")
                              else ""))
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
    kv = REGISTRY[large["model"]].kv_bytes_per_token() / KB if large["model"] in REGISTRY else None
    return {"model": large["model"], "weights": large.get("weights", "bf16"),
            "context_len": large["context_len"],
            "batches": (small["batch_size"], large["batch_size"]),
            "measured_kb": (large["measured_gb"] - small["measured_gb"]) * GB / KB / tokens,
            "estimate_kb": (large["estimate_gb"] - small["estimate_gb"]) * GB / KB / tokens,
            "kv_kb": kv}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if value == float("inf"):
        return "> 80"
    return f"{value:.1f}"


def record_dict(record: MemoryRecord) -> dict:
    return asdict(record) | {"estimate_error": record.estimate_error}


def inference_peak_gb(model: Any, batch_size: int, context_len: int) -> float:
    """Peak memory (GB) to prefill ``batch_size`` sequences of ``context_len`` tokens and decode
    one more token with the KV cache: allocated GPU memory on CUDA (weights included), or on a
    CPU the bytes of weights + KV cache that the run held (an exact count, not RSS)."""
    import torch

    from yi_helpers.compat import cache_kwarg, output_cache
    from yi_helpers.measure import TensorBytes, cache_bytes, model_bytes

    from yi_helpers.bench.speed import random_prompt

    cuda = next(model.parameters()).device.type == "cuda"
    ids = random_prompt(model, batch_size, context_len)
    peak = TensorBytes(model) if cuda else contextlib.nullcontext()  # a CPU: the count below
    with torch.no_grad(), peak:
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        out = model(input_ids=out.logits[:, -1:].argmax(-1), use_cache=True, logits_to_keep=1,
                    **{cache_kwarg(model): output_cache(out)})
    if cuda:
        return (peak.start + peak.peak) / GB
    return (model_bytes(model) + cache_bytes(output_cache(out))) / GB
