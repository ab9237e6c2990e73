"""How much GPU memory fine-tuning Yi needs: full bf16, LoRA bf16, QLoRA 4-bit (GB, 1e9 bytes).

From the model's config (``yi_helpers.models``), no download; planning numbers (±20%): measure
on the GPU (``make gpu-check``) before buying one.

- **weights**: the registry's ``planned_weight_bytes``, 16-bit, or for QLoRA 4-bit linear layers
  with per-group scales (embeddings, LM head and norms stay 16-bit).
- **trainable state**: each trainable parameter's gradient and AdamW's two moments. Full
  fine-tuning in mixed precision also keeps an fp32 master copy: 2 (bf16 grad) + 4 (master) +
  8 (moments) = 14 bytes on top of the 2-byte weight. LoRA's small adapters are kept in fp32:
  4 (weight) + 4 (grad) + 8 (moments) = 16 bytes.
- **activations**, with gradient checkpointing: each layer's bf16 input, one layer recomputed in
  full (about 34 bytes per token and hidden unit, Korthikanti et al. 2022, no attention matrix
  with fused attention), the fp32 logits and their gradient (8 bytes per token and vocabulary
  entry); plus ``RUNTIME_RESERVE_GB`` for the CUDA context and allocator.
"""

from typing import Sequence

from ..models import RUNTIME_RESERVE_GB, ModelSpec, planned_weight_bytes, spec
from ..units import GB

#: The seven projections of a Llama block that lesson 04 adapts with LoRA.
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

__all__ = ["lora_parameters", "lora_share", "training_memory", "memory_table"]

METHODS = ("full-bf16", "lora-bf16", "qlora-4bit")
FULL_STATE_BYTES = 2 + 4 + 8  # per parameter beyond its weight: bf16 grad, fp32 master, moments
LORA_PARAM_BYTES = 4 + 4 + 8  # per LoRA parameter: fp32 weight, grad, AdamW moments
LAYER_ACTIVATION_BYTES = 34  # per token and hidden unit, one layer recomputed in full


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


def training_memory(model: str | ModelSpec, method: str = "qlora-4bit", *, batch_size: int = 4,
                    seq_len: int = 512) -> dict:
    """GB to fine-tune ``model`` with ``method`` (one of ``METHODS``, LoRA rank 16, gradient
    checkpointing) on one GPU at ``batch_size`` sequences of ``seq_len`` tokens."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be positive")
    s = spec(model)
    weights = planned_weight_bytes(s, 4 if method == "qlora-4bit" else 16)
    if method == "full-bf16":
        state = s.num_parameters() * FULL_STATE_BYTES
    else:
        state = lora_parameters(s) * LORA_PARAM_BYTES
    tokens = batch_size * seq_len
    activations = (s.num_layers * tokens * s.hidden_size * 2
                   + tokens * s.hidden_size * LAYER_ACTIVATION_BYTES + tokens * s.vocab_size * 8)
    parts = {"weights_gb": weights / GB, "state_gb": state / GB,
             "activations_gb": activations / GB}
    total = parts["weights_gb"] + parts["state_gb"] + parts["activations_gb"] + RUNTIME_RESERVE_GB
    return {"model": s.id, "method": method, **parts, "total_gb": total}


def memory_table(models: Sequence[str] = ("01-ai/Yi-6B-Chat", "01-ai/Yi-34B-Chat"),
                 **kwargs) -> list[dict]:
    """``training_memory`` of each model with each method."""
    return [training_memory(name, method, **kwargs) for name in models for method in METHODS]
