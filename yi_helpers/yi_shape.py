"""Yi-shaped models with random weights, built from a config: shape and convention checks.

No download is needed: the config comes from the Yi registry (:mod:`yi_helpers.models`), so a
machine without hub access can still build a model with Yi-6B's layers and measure what it
costs. Such a model knows nothing (its weights are random); it checks shapes, memory and
speed, never answers. ``tiny_yi_config`` keeps Yi's layout at a size a CPU test runs in
seconds.
"""

from __future__ import annotations

from typing import Any

from .models import ModelSpec, spec

__all__ = ["yi_config", "tiny_yi_config", "random_model"]


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


def random_model(config: Any, *, dtype: Any = None, device: str = "cpu", seed: int = 0):
    """A ``LlamaForCausalLM`` with random weights (seeded), created directly on ``device``, in
    ``dtype`` (default bfloat16), in eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype or torch.bfloat16).eval()
