"""The Yi registry and the memory planner."""

from __future__ import annotations

import math

import pytest

from yi_helpers.models import (README_BATCH_SIZES, README_TABLE_MODELS, REGISTRY, count_parameters,
                               estimate_memory, known_models, readme_comparison, recommend, spec,
                               spec_from_config)


@pytest.mark.parametrize("model", README_TABLE_MODELS)
@pytest.mark.parametrize("batch", README_BATCH_SIZES)
def test_estimate_reproduces_readme_table(model, batch):
    readme = REGISTRY[model].readme_memory_gb[batch]
    est = estimate_memory(model, batch_size=batch).total_gb
    if math.isinf(readme):  # Yi-34B-Chat, batch 32: "> 80" GB
        assert est > 80
    else:
        assert abs(est / readme - 1) <= 0.20, f"{model} batch {batch}: {est:.1f} vs {readme}"


def test_readme_table_is_complete():
    rows = readme_comparison()
    assert len(rows) == 6 * 4
    assert {r["model"] for r in rows} == set(README_TABLE_MODELS)


@pytest.mark.parametrize("model,kib", [("01-ai/Yi-6B", 64), ("01-ai/Yi-1.5-9B", 96),
                                       ("01-ai/Yi-34B", 240)])
def test_kv_cache_per_token_matches_yi_facts(model, kib):
    assert spec(model).kv_bytes_per_token() == kib * 1024


def test_kv_cache_at_200k_tokens():
    # yi-facts: "at 200K tokens about 12 GiB (6B) and 46 GiB (34B)"
    for model, gib in [("01-ai/Yi-6B-200K", 12), ("01-ai/Yi-34B-200K", 46)]:
        kv = estimate_memory(model, context_len=200_000).kv_cache_gb * 1e9 / 2**30
        assert abs(kv - gib) < 1


@pytest.mark.parametrize("model,params", [("01-ai/Yi-6B", 6.06e9), ("01-ai/Yi-34B-Chat", 34.389e9)])
def test_parameter_counts(model, params):
    assert abs(spec(model).num_parameters() / params - 1) < 0.002


def test_gqa_layout_in_registry():
    assert spec("Yi-6B-Chat").num_kv_heads == 4 and spec("Yi-34B").num_kv_heads == 8
    assert spec("01-ai/Yi-6B-200K").max_positions == 200_000
    assert spec("01-ai/Yi-6B-Chat-4bits").quantization == "awq"
    assert spec("01-ai/Yi-6B-Chat-8bits").quantization == "gptq"
    assert spec("01-ai/Yi-1.5-9B").num_layers == 48 and spec("01-ai/Yi-1.5-9B").rms_norm_eps == 1e-6


def test_quantized_weights_are_smaller():
    bf16 = estimate_memory("01-ai/Yi-6B-Chat").weights_gb
    assert estimate_memory("01-ai/Yi-6B-Chat-8bits").weights_gb < 0.6 * bf16
    assert estimate_memory("01-ai/Yi-6B-Chat-4bits").weights_gb < 0.35 * bf16
    assert estimate_memory("01-ai/Yi-6B-Chat", weight_bits=32).weights_gb == pytest.approx(2 * bf16)


@pytest.mark.parametrize("memory,expected", [
    (3, None), (8, "01-ai/Yi-6B-Chat-8bits"), (24, "01-ai/Yi-34B-Chat-4bits"),
    (40, "01-ai/Yi-34B-Chat-8bits"), (80, "01-ai/Yi-1.5-34B-Chat"),
])
def test_recommend(memory, expected):
    assert recommend(memory) == expected


def test_recommend_fits_and_grows_with_memory():
    previous = 0
    for gb in range(5, 200, 5):
        name = recommend(gb)
        assert estimate_memory(name).total_gb <= gb
        assert spec(name).num_parameters() >= previous
        previous = spec(name).num_parameters()


def test_errors_are_clear():
    with pytest.raises(KeyError, match="Known models: embedded, 01-ai/Yi-6B"):
        spec("Yi-7B")
    with pytest.raises(ValueError, match="batch_size"):
        estimate_memory("Yi-6B-Chat", batch_size=0)
    with pytest.raises(ValueError, match="context_len"):
        estimate_memory("Yi-6B-Chat", context_len=-1)
    with pytest.raises(ValueError, match="weight_bits"):
        estimate_memory("Yi-6B-Chat", weight_bits=5)
    with pytest.raises(ValueError, match="memory_gb"):
        recommend(0)


def test_known_models_cover_the_family():
    names = known_models()
    for suffix in ["6B", "6B-Chat", "6B-Chat-4bits", "6B-Chat-8bits", "6B-200K", "34B",
                   "34B-Chat", "34B-Chat-4bits", "34B-Chat-8bits", "34B-200K", "1.5-6B",
                   "1.5-9B-Chat", "1.5-34B-Chat"]:
        assert f"01-ai/Yi-{suffix}" in names
    assert "embedded" in names


def test_spec_from_config_and_count_on_a_tiny_llama(tiny_llama_config):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config)
    s = spec_from_config(tiny_llama_config, id="tiny")
    assert s.num_kv_heads == 2 and s.head_dim == 8 and s.rope_theta == 5e6
    assert count_parameters(model) == s.parameter_breakdown()
    assert s.num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_embedded_spec_matches_loaded_model(embedded):
    model, _ = embedded
    from_config = spec_from_config(model.config, id="embedded")
    for field in ["hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "max_positions", "tie_embeddings"]:
        assert getattr(from_config, field) == getattr(spec("embedded"), field), field
    assert count_parameters(model) == spec("embedded").parameter_breakdown()


def test_spec_for_a_folder_comes_from_its_config(tiny_llama_config):
    from yi_helpers.models import spec_for

    assert spec_for("01-ai/Yi-6B-Chat") is spec("01-ai/Yi-6B-Chat")
    folder = spec_for("/some/folder", tiny_llama_config)
    assert folder.id == "/some/folder" and folder.num_kv_heads == 2 and folder.vocab_size == 64000
    with pytest.raises(KeyError):
        spec_for("/some/folder")  # no config to read it from
