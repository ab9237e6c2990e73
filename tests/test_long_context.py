"""yi_helpers.long_context: KV maths, the filler text, the window check."""

from __future__ import annotations

import pytest
import torch

from yi_helpers.long_context import (ContextTooLongError, check_window, context_window,
                                     filler_ids, loss_by_position, max_batch, measure_prefill,
                                     rope_inv_freq, with_rope_scaling)
from yi_helpers.measure import cache_bytes
from yi_helpers.models import kv_cache_bytes


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig

    from yi_shape import random_model

    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256)
    return random_model(config, dtype=torch.float32)


@pytest.fixture(scope="module")
def embedded():
    from yi_helpers import load

    return load("embedded", device="cpu", dtype="float32")


def test_kv_bytes_equal_the_formula_and_the_published_numbers(tiny):
    # Yi's published KV cache per token (fp16): 64 KiB for 6B, 240 KiB for 34B (GQA, 4 / 8 KV heads)
    assert kv_cache_bytes("01-ai/Yi-6B-200K", 1) == 64 * 1024
    assert kv_cache_bytes("01-ai/Yi-34B-200K", 1) == 240 * 1024
    assert kv_cache_bytes("01-ai/Yi-6B-200K", 1, gqa=False) == 8 * 64 * 1024  # 32 / 4 heads
    assert kv_cache_bytes("01-ai/Yi-6B", 100, batch_size=3, kv_bits=8) == 300 * 32 * 1024
    with torch.no_grad():
        out = tiny(torch.arange(10)[None], use_cache=True)
    from yi_helpers.compat import output_cache

    measured = cache_bytes(output_cache(out))
    assert measured == kv_cache_bytes(tiny, 10, kv_bits=32) == 2 * 2 * 2 * 16 * 4 * 10


def test_context_window_and_clear_errors(tiny):
    assert context_window(tiny.config) == 256
    scaled = with_rope_scaling(tiny.config, "dynamic", 4)
    assert context_window(scaled) == 1024 and tiny.config.max_position_embeddings == 256
    check_window(tiny.config, 256)
    with pytest.raises(ContextTooLongError, match="rope_scaling|RoPE scaling"):
        check_window(tiny.config, 257)
    with pytest.raises(ContextTooLongError):
        measure_prefill(tiny, torch.arange(300)[None])
    with pytest.raises(ValueError, match="linear, dynamic or yarn"):
        with_rope_scaling(tiny.config, "ntk", 2)


def test_filler_has_the_length_asked_for_in_either_language(embedded):
    _, tok = embedded
    once = filler_ids(tok)
    assert len(filler_ids(tok, 300)) == 300 and filler_ids(tok, 300) == once[:300]
    longer = filler_ids(tok, 3 * len(once))  # longer than the text: it repeats
    assert longer == once * 3
    zh = tok.decode(filler_ids(tok, 200, "zh"))
    assert "铁路" in zh or "山谷" in zh
    with pytest.raises(ValueError, match="lang must be 'en' or 'zh'"):
        filler_ids(tok, 10, "fr")


@pytest.mark.slow
def test_prefill_memory_is_within_15_percent_of_the_planner(embedded):
    from yi_helpers import estimate_memory
    from yi_helpers.long_context import filler_ids
    from yi_helpers.models import spec_from_config

    model, tok = embedded
    ids = torch.tensor([filler_ids(tok, 1024)])
    for n in (16, 512, 1024):
        record = measure_prefill(model, ids[:, :n], decode_steps=1)
        planned = estimate_memory(spec_from_config(model.config), 1, n, kv_bits=32,
                                  activation_bits=32)
        assert record["cache_mb"] * 1e6 == pytest.approx(planned.kv_cache_gb * 1e9)
        assert record["added_mb"] / (planned.prefill_gb * 1e3) == pytest.approx(1, abs=0.15), n
    chunked = measure_prefill(model, ids, chunk=256, decode_steps=1)
    assert chunked["cache_mb"] == record["cache_mb"] and chunked["added_mb"] < record["added_mb"]


def test_tensor_bytes_counts_new_tensors_not_views_of_weights():
    from yi_helpers.measure import TensorBytes

    layer = torch.nn.Linear(256, 256)
    x = torch.zeros(8, 256)
    with torch.no_grad(), TensorBytes(layer, known=[x]) as counted:
        y = layer(x)  # 8 x 256 float32 out
        del y
        z = layer.weight.t()  # a view of a weight: nothing new
    assert counted.peak == 8 * 256 * 4 and counted.now == 0 and z.shape == (256, 256)


def test_rope_scaling_through_transformers(tiny):
    base = rope_inv_freq(tiny.config)
    assert torch.allclose(rope_inv_freq(with_rope_scaling(tiny.config, "linear", 2)), base / 2)
    dynamic = with_rope_scaling(tiny.config, "dynamic", 2)
    assert torch.allclose(rope_inv_freq(dynamic, seq_len=128), base)  # inside the window: as is
    assert (rope_inv_freq(dynamic, seq_len=1024)[1:] < base[1:]).all()  # past it: a larger base


def test_loss_by_position_covers_every_token(tiny):
    buckets = loss_by_position(tiny, list(range(3, 203)), bucket=64)
    assert [(b["start"], b["end"]) for b in buckets] == [(1, 64), (65, 128), (129, 192),
                                                         (193, 199)]
    assert all(b["loss"] > 0 for b in buckets)


def test_max_batch_from_the_planner():
    from yi_helpers import estimate_memory

    batch = max_batch("01-ai/Yi-6B-200K", 32_768, 80)
    assert batch >= 1
    assert estimate_memory("01-ai/Yi-6B-200K", batch, 32_768).total_gb <= 80
    assert estimate_memory("01-ai/Yi-6B-200K", batch + 1, 32_768).total_gb > 80
    assert max_batch("01-ai/Yi-34B-200K", 131_072, 40) == 0


def test_chat_refuses_a_prompt_longer_than_the_window_at_once():
    import time

    from yi_helpers import load
    from yi_helpers.chat import chat
    from yi_shape import standin

    model, tok = load(str(standin("tiny")), device="cpu", dtype="float32")  # a 4,096-token window
    long_message = [{"role": "user", "content": "hello world " * 3000}]
    start = time.perf_counter()
    with pytest.raises(ContextTooLongError, match=r"Conversation\(tokenizer, max_context=4096\)"):
        chat(model, tok, long_message, max_new_tokens=4)
    assert time.perf_counter() - start < 5  # refused before any generation
