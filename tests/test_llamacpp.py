"""yi_helpers.llamacpp: GGUF files read and written with the gguf package, run by llama.cpp."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from yi_helpers.embedded import safetensors_dir
from yi_helpers.llamacpp import (GGUFError, LlamaCpp, bits_per_weight, inspect_gguf,
                                 write_gguf)


@pytest.fixture(scope="module")
def embedded_info():
    return inspect_gguf()


def test_metadata_read_equals_the_config(embedded_info):
    config = json.loads((safetensors_dir() / "config.json").read_text())
    m = embedded_info.metadata
    assert embedded_info.architecture == "llama"
    assert m["llama.block_count"] == config["num_hidden_layers"]
    assert m["llama.embedding_length"] == config["hidden_size"]
    assert m["llama.attention.head_count"] == config["num_attention_heads"]
    assert m["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert m["llama.feed_forward_length"] == config["intermediate_size"]
    assert len(m["tokenizer.ggml.tokens"]) == config["vocab_size"]
    assert embedded_info.special_tokens()["eos"] == (2, "<|im_end|>")
    assert "<|im_start|>" in embedded_info.chat_template
    embedding = next(t for t in embedded_info.tensors if t.name == "token_embd.weight")
    assert embedding.shape == (config["vocab_size"], config["hidden_size"])


def test_bits_per_weight_from_the_block_layouts(embedded_info):
    # Q4_1: fp16 scale + fp16 minimum + 32 x 4 bits = 20 bytes per 32 weights
    assert bits_per_weight("Q4_1") == 5.0
    assert bits_per_weight("Q8_0") == 8.5  # fp16 scale + 32 bytes
    assert bits_per_weight("Q4_0") == 4.5 and bits_per_weight("F16") == 16
    for t in embedded_info.tensors:  # the file's bytes are what the layouts say
        assert t.n_bytes * 8 == pytest.approx(t.n_elements * bits_per_weight(t.qtype))
    with pytest.raises(GGUFError, match="unknown GGML type"):
        bits_per_weight("Q3_X")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        inspect_gguf(tmp_path / "missing.gguf")
    (tmp_path / "model.safetensors").write_bytes(b"not a gguf at all")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        inspect_gguf(tmp_path / "model.safetensors")
    with pytest.raises(GGUFError, match="llama-quantize"):
        write_gguf(tmp_path / "x.gguf", "Q4_K_M")
    with pytest.raises(GGUFError, match="trained for"):
        LlamaCpp(n_ctx=100_000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError, match="in use"):
            LlamaCpp(port=s.getsockname()[1])


@pytest.fixture(scope="module")
def q8_path(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "q8.gguf", "Q8_0")


def test_a_written_gguf_holds_the_same_weights_within_its_type(q8_path, embedded_info):
    from gguf import GGUFReader, quants

    written = inspect_gguf(q8_path)
    assert written.metadata["general.file_type"] == 7  # MOSTLY_Q8_0
    assert set(written.size_by_type()) == {"Q8_0", "F32"}
    assert [t.name for t in written.tensors] == [t.name for t in embedded_info.tensors]
    a, b = GGUFReader(str(embedded_info.path)), GGUFReader(str(q8_path))
    for ta, tb in list(zip(a.tensors, b.tensors))[::9]:  # every 9th tensor: each kind, each depth
        wa = quants.dequantize(ta.data, ta.tensor_type).astype(np.float32)
        wb = quants.dequantize(tb.data, tb.tensor_type).astype(np.float32)
        # Q8_0: a block's step is max|w| / 127, stored in fp16: half a step of rounding, plus
        # 127 steps times fp16's relative error (2^-11) for the rounded scale
        step = np.abs(wa).max() / 127
        assert np.abs(wa - wb).max() <= step * (0.5 + 127 / 2048) + 1e-6, ta.name


@pytest.mark.slow
def test_llama_cpp_runs_it_greedy_and_repeatable_and_serves_openai(q8_path):
    from openai import OpenAI

    question = [{"role": "user", "content": "What is the capital of France?"}]
    with LlamaCpp(q8_path, n_ctx=1024) as llm:
        first = llm.chat(question, max_tokens=12)
        again = llm.chat(question, max_tokens=12)
        assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
        assert first["usage"]["completion_tokens"] <= 12
        assert first["timings"]["predicted_per_second"] > 0
        client = OpenAI(base_url=llm.base_url, api_key="none")
        reply = client.chat.completions.create(model="q8", messages=question, max_tokens=12,
                                               temperature=0)
        assert reply.choices[0].message.content == first["choices"][0]["message"]["content"]
        streamed = "".join(llm.stream(question, max_tokens=12))
        assert streamed == reply.choices[0].message.content
        port = llm.port
    with socket.socket() as s:  # closed: the port is free again
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(RuntimeError, match="closed"):
        llm.chat(question)


def test_ollama_modelfile_has_chatml_and_the_stop():
    from yi_helpers.chat import render
    from yi_helpers.llamacpp import ollama_modelfile

    text = ollama_modelfile("./yi-6b-chat.Q4_K_M.gguf", system="You are Yi.")
    assert text.splitlines()[0] == "FROM ./yi-6b-chat.Q4_K_M.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0.6" in text
    template = text.split('TEMPLATE """')[1].split('"""')[0]
    # Ollama's template, filled in by hand for two turns, renders what the Yi template renders
    messages = [{"role": "system", "content": "You are Yi."}, {"role": "user", "content": "hi"}]
    body = template.split("{{- range .Messages }}")[1].split("{{ end }}")[0]
    filled = "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                     for m in messages) + template.split("{{ end }}")[1]
    assert filled == render(messages, template="yi", add_generation_prompt=True)
