"""tools/yi_shape.py and gpu_report.inference_peak_gb: Yi-shaped random models, checked on the
CPU at a tiny scale."""

from __future__ import annotations

import pytest
import torch

from gpu_report import inference_peak_gb
from yi_helpers.models import spec
from yi_shape import random_model, tiny_yi_config, yi_config


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


# --- the Yi-Chat stand-in ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory):
    from yi_shape import build_standin

    return build_standin(tmp_path_factory.mktemp("standin") / "yi-chat-standin-tiny")


def test_standin_has_yi_chat_conventions(standin_dir):
    import json

    from transformers import AutoConfig, AutoTokenizer

    from yi_helpers.chat import YI_CHAT_TEMPLATE

    config = AutoConfig.from_pretrained(standin_dir)
    yi = spec("01-ai/Yi-6B-Chat")
    assert config.architectures == ["LlamaForCausalLM"] and config.vocab_size == 64000
    assert config.num_attention_heads // config.num_key_value_heads == yi.num_heads // yi.num_kv_heads
    assert config.rope_parameters["rope_theta"] == 5e6 and config.rms_norm_eps == yi.rms_norm_eps
    assert not config.tie_word_embeddings
    tok = AutoTokenizer.from_pretrained(standin_dir)
    assert len(tok) == 64000
    ids = {"<unk>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "<|im_start|>": 6,
           "<|im_end|>": 7, "<|im_sep|>": 8}
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.chat_template == YI_CHAT_TEMPLATE
    # a special token is one token, never split by the BPE
    assert tok("<|im_start|>user\nhi<|im_end|>")["input_ids"][0] == 6
    generation = json.loads((standin_dir / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["eos_token_id"] == 7
    assert (generation["temperature"], generation["top_p"]) == (0.6, 0.8)


def test_standin_loads_and_stops_at_im_end(standin_dir):
    from yi_helpers import load
    from yi_helpers.chat import chat, render

    model, tok = load(str(standin_dir))
    assert set(model.generation_config.eos_token_id) == {7, 2}  # <|im_end|> stops a reply
    messages = [{"role": "user", "content": "你好"}]
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        render(messages)
    reply = chat(model, tok, messages, max_new_tokens=6)
    assert reply == chat(model, tok, messages, max_new_tokens=6)  # greedy is repeatable


def test_standin_is_the_same_every_time(standin_dir, tmp_path):
    from safetensors.torch import load_file

    from yi_shape import build_standin

    again = build_standin(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (standin_dir / "tokenizer.json").read_bytes()
    a, b = load_file(str(again / "model.safetensors")), load_file(str(standin_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_size_standin_has_yi_6b_chat_dimensions():
    from transformers import LlamaForCausalLM

    from yi_shape import standin_config

    with torch.device("meta"):
        meta = LlamaForCausalLM(standin_config("6b"))
    assert sum(p.numel() for p in meta.parameters()) == spec("01-ai/Yi-6B-Chat").num_parameters()
    with pytest.raises(ValueError, match="size must be one of"):
        standin_config("7b")
