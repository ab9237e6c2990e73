"""How much GPU memory fine-tuning Yi needs: full bf16, LoRA bf16, QLoRA 4-bit.

Computed from the model's config (``yi_helpers.models``), no download:

- **weights**: ``planned_weight_bytes`` of the registry (16-bit, or 4-bit linear layers with per-group
  scales and 16-bit embeddings, LM head and norms for QLoRA).
- **trainable state**: every trainable parameter needs its gradient plus AdamW's two moments.
  Full fine-tuning in mixed precision keeps bf16 weights *and* an fp32 master copy:
  2 (grad, bf16) + 4 (master) + 8 (moments) = 14 bytes on top of the 2-byte weight. LoRA's
  adapters are small and kept in fp32: 4 (weight) + 4 (grad) + 8 (moments) = 16 bytes.
- **activations**: with gradient checkpointing, each layer keeps its input (one bf16 hidden
  vector per token) and one layer at a time is recomputed in full (about 34 hidden-sized bytes
  per token and hidden unit, Korthikanti et al. 2022, without the attention matrix thanks to
  fused attention); plus the logits in fp32 and their gradient (8 bytes per token and
  vocabulary entry).
- a fixed reserve for the CUDA context and allocator (``RUNTIME_RESERVE_GB``).

These are planning numbers (±20%); measure on the GPU (``make gpu-check``) before buying one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..models import RUNTIME_RESERVE_GB, ModelSpec, planned_weight_bytes, spec
from ..units import GB

#: The seven projections of a Llama block that lesson 04 adapts with LoRA.
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

__all__ = ["METHODS", "lora_parameters", "lora_share", "training_memory", "memory_table"]

METHODS = ("full-bf16", "lora-bf16", "qlora-4bit")
#: Bytes per trainable parameter beyond its weight: bf16 grad + fp32 master + AdamW moments.
FULL_STATE_BYTES = 2 + 4 + 8
#: Bytes per LoRA parameter (fp32 weight + grad + AdamW moments).
LORA_PARAM_BYTES = 4 + 4 + 8
#: Activation bytes per token and hidden unit in one transformer layer (bf16, fused attention).
LAYER_ACTIVATION_BYTES = 34


def lora_parameters(model: str | ModelSpec, r: int = 16,
                    target_modules: Sequence[str] = LLAMA_PROJECTIONS) -> int:
    """LoRA parameters: ``r * (in + out)`` per adapted projection, every layer."""
    s = spec(model)
    h, q = s.hidden_size, s.num_heads * s.head_dim
    kv, ff = s.num_kv_heads * s.head_dim, s.intermediate_size
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h)}
    unknown = [m for m in target_modules if m not in shapes]
    if unknown:
        raise ValueError(f"unknown target modules {unknown}; known: {list(shapes)}")
    return s.num_layers * sum(r * sum(shapes[m]) for m in target_modules)


def lora_share(model: str | ModelSpec, r: int = 16,
               target_modules: Sequence[str] = LLAMA_PROJECTIONS) -> float:
    """LoRA parameters as a percentage of base + LoRA parameters (what peft prints)."""
    lora = lora_parameters(model, r, target_modules)
    return 100.0 * lora / (spec(model).num_parameters() + lora)


@dataclass(frozen=True)
class TrainingMemory:
    """Memory to fine-tune one model on one GPU, in GB (1e9 bytes)."""

    model: str
    method: str
    weights_gb: float
    trainable_state_gb: float
    activations_gb: float
    reserve_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.trainable_state_gb + self.activations_gb + self.reserve_gb


def training_memory(model: str | ModelSpec, method: str = "qlora-4bit", *, batch_size: int = 4,
                    seq_len: int = 512, lora_r: int = 16, gradient_checkpointing: bool = True
                    ) -> TrainingMemory:
    """Memory to fine-tune ``model`` with ``method`` (``"full-bf16"``, ``"lora-bf16"``,
    ``"qlora-4bit"``) at ``batch_size`` sequences of ``seq_len`` tokens."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be positive")
    s = spec(model)
    weights = planned_weight_bytes(s, 4 if method == "qlora-4bit" else 16)
    if method == "full-bf16":
        state = s.num_parameters() * FULL_STATE_BYTES
    else:
        state = lora_parameters(s, lora_r) * LORA_PARAM_BYTES
    tokens = batch_size * seq_len
    per_layer = tokens * s.hidden_size * LAYER_ACTIVATION_BYTES
    if gradient_checkpointing:
        activations = s.num_layers * tokens * s.hidden_size * 2 + per_layer
    else:
        activations = s.num_layers * per_layer
    activations += tokens * s.vocab_size * 8
    return TrainingMemory(model=s.id, method=method, weights_gb=weights / GB,
                          trainable_state_gb=state / GB, activations_gb=activations / GB,
                          reserve_gb=RUNTIME_RESERVE_GB)


def memory_table(models: Sequence[str] = ("01-ai/Yi-6B-Chat", "01-ai/Yi-34B-Chat"),
                 **kwargs) -> list[dict]:
    """One row per (model, method): the parts and the total in GB, and LoRA's share."""
    rows = []
    for name in models:
        for method in METHODS:
            m = training_memory(name, method, **kwargs)
            rows.append({"model": name, "method": method, "weights_gb": m.weights_gb,
                         "state_gb": m.trainable_state_gb, "activations_gb": m.activations_gb,
                         "total_gb": m.total_gb})
    return rows
