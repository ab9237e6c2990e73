"""yi_helpers.yi_shape and measure.inference_peak_gb: Yi-shaped random models, checked on the
CPU at a tiny scale."""

from __future__ import annotations

import pytest
import torch

from yi_helpers.measure import inference_peak_gb
from yi_helpers.models import spec
from yi_helpers.yi_shape import random_model, tiny_yi_config, yi_config


@pytest.mark.parametrize("model", ["01-ai/Yi-6B", "01-ai/Yi-34B", "01-ai/Yi-1.5-9B"])
def test_yi_config_has_the_registry_numbers(model):
    from transformers import LlamaForCausalLM

    config = yi_config(model)
    with torch.device("meta"):  # shapes only: no memory
        meta = LlamaForCausalLM(config)
    assert sum(p.numel() for p in meta.parameters()) == spec(model).num_parameters()
    assert config.num_key_value_heads == spec(model).num_kv_heads
    assert config.rope_parameters["rope_theta"] == 5e6


def test_tiny_config_keeps_yi_layout():
    c = tiny_yi_config()
    assert c.head_dim == 128 and c.num_attention_heads // c.num_key_value_heads == 2
    assert c.rope_parameters["rope_theta"] == 5e6 and not c.tie_word_embeddings


def test_peak_memory_counts_weights_and_kv_cache(tiny_model):
    tensors = list(tiny_model.parameters()) + list(tiny_model.buffers())  # rotary tables too
    weights = sum(t.numel() * t.element_size() for t in tensors) / 1e9
    kv_per_token = 2 * 2 * 1 * 128 * 4  # K and V, 2 layers, 1 KV head, head 128, fp32
    one = inference_peak_gb(tiny_model, 1, 64)
    four = inference_peak_gb(tiny_model, 4, 64)
    assert one == pytest.approx(weights + 65 * kv_per_token / 1e9)
    assert four - one == pytest.approx(3 * 65 * kv_per_token / 1e9)


@pytest.fixture(scope="module")
def tiny_model():
    return random_model(tiny_yi_config(), dtype=torch.float32, device="cpu")
