"""yi_helpers.llamacpp: GGUF files read and written with the gguf package, run by llama.cpp."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from yi_helpers.embedded import safetensors_dir
from yi_helpers.ggml_types import GGUFError, bits_per_weight
from yi_helpers.llamacpp import LlamaCpp, inspect_gguf, write_gguf


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


@pytest.fixture(scope="module")
def q8_path(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "q8.gguf", "Q8_0")


@pytest.mark.slow
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
        chunks = client.chat.completions.create(model="q8", messages=question, max_tokens=12,
                                                temperature=0, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
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


def test_planner_gives_the_published_gguf_sizes():
    from yi_helpers import estimate_memory
    from yi_helpers.ggml_types import PUBLISHED_GGUF_GB
    from yi_helpers.models import gguf_file_bytes

    for model, (_source, sizes) in PUBLISHED_GGUF_GB.items():
        for file_type, gb in sizes.items():
            assert gguf_file_bytes(model, file_type) / 1e9 == pytest.approx(gb, rel=0.01), (
                model, file_type)
    q4 = estimate_memory("01-ai/Yi-34B-Chat", context_len=4096, gguf_type="Q4_K_M")
    assert q4.weights_gb == pytest.approx(20.66, rel=0.01) and "Q4_K_M" in str(q4)
    assert q4.total_gb > 16 > estimate_memory("01-ai/Yi-6B-Chat", context_len=4096,
                                              gguf_type="Q8_0").total_gb
    with pytest.raises(GGUFError, match="unknown GGUF file type"):
        gguf_file_bytes("01-ai/Yi-6B-Chat", "Q4_K_X")


@pytest.fixture(scope="module")
def standin_gguf(tmp_path_factory):
    from yi_helpers.llamacpp import gguf_from_hf
    from yi_shape import standin

    folder = tmp_path_factory.mktemp("standin-gguf")
    return {q: gguf_from_hf(standin("tiny"), folder / f"standin-{q}.gguf", q) for q in ("F32", "Q8_0")}


def test_gguf_from_hf_keeps_the_config_and_the_tokenizer(standin_gguf):
    from yi_shape import YI_SPECIAL_TOKENS, standin_config

    info = inspect_gguf(standin_gguf["F32"])
    config = standin_config("tiny")
    m = info.metadata
    assert m["llama.attention.head_count_kv"] == config.num_key_value_heads == 1
    assert m["llama.rope.freq_base"] == 5_000_000
    assert len(m["tokenizer.ggml.tokens"]) == config.vocab_size == 64_000
    assert m["tokenizer.ggml.tokens"][:9] == list(YI_SPECIAL_TOKENS)
    assert info.special_tokens()["bos"] == (1, "<|startoftext|>")
    assert "<|im_start|>" in info.chat_template
    assert "output.weight" in {t.name for t in info.tensors}  # untied, as Yi's
    assert set(inspect_gguf(standin_gguf["Q8_0"]).size_by_type()) == {"Q8_0", "F32"}


def test_load_gguf_weights_round_trip_and_wrong_model(standin_gguf):
    import torch

    from yi_helpers import load
    from yi_helpers.llamacpp import load_gguf_weights
    from yi_shape import standin

    model, _ = load(str(standin("tiny")), device="cpu", dtype="float32")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    load_gguf_weights(model, standin_gguf["F32"])  # q/k permuted on the way out and back
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    load_gguf_weights(model, standin_gguf["Q8_0"])
    q = model.model.layers[0].self_attn.q_proj.weight
    ref = before["model.layers.0.self_attn.q_proj.weight"]
    assert 0 < (q - ref).abs().max() <= ref.abs().max() / 127
    with pytest.raises(GGUFError, match="another model|does not fit"):
        load_gguf_weights(model, inspect_gguf().path)  # the embedded model's GGUF


def greedy_ids(llm, prompt_ids, max_tokens):
    """The ids of llama.cpp's greedy continuation of ``prompt_ids``, the end of turn ignored."""
    reply = llm.complete(prompt_ids, max_tokens=max_tokens, ignore_eos=True, logprobs=1)
    return [int(t["id"]) for t in reply["choices"][0]["logprobs"]["content"]]


@pytest.mark.slow
def test_a_converted_gguf_gives_the_same_greedy_tokens_in_both_engines(standin_gguf):
    import torch

    from yi_helpers import load
    from yi_helpers.bench import measure_generation
    from yi_helpers.llamacpp import measure_llamacpp
    from yi_shape import standin

    model, tok = load(str(standin("tiny")), device="cpu", dtype="float32")
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello, who are you? 你好"}],
                                  add_generation_prompt=True, tokenize=True, return_dict=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                             eos_token_id=None, max_length=None)
    expected = out[0, len(ids):].tolist()
    with LlamaCpp(standin_gguf["F32"], n_ctx=256) as llm:
        assert llm.render([{"role": "user", "content": "hi"}]) == tok.apply_chat_template(
            [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
        assert greedy_ids(llm, ids, 10) == expected
        timing = measure_llamacpp(llm, ids, new_tokens=8, repeats=2)
    assert timing["prompt_len"] == len(ids) and timing["decode_tok_s"]["median"] > 0
    with LlamaCpp(standin_gguf["Q8_0"], n_ctx=256) as llm:  # 8-bit: the first tokens agree
        assert greedy_ids(llm, ids, 10)[:4] == expected[:4]
    record = measure_generation(model, prompt_ids=ids, new_tokens=4, repeats=1, warmup=0)
    assert record["prompt_len"] == len(ids)


def test_gguf_from_hf_clear_errors(tmp_path):
    from yi_helpers.llamacpp import gguf_from_hf

    with pytest.raises(GGUFError, match="not a local model folder"):
        gguf_from_hf("01-ai/Yi-6B-Chat", tmp_path / "x.gguf")
    with pytest.raises(GGUFError, match="writes F32"):
        gguf_from_hf(safetensors_dir(), tmp_path / "x.gguf", "Q4_K_M")


def test_raw_tensor_gives_the_stored_blocks(embedded_info):
    from yi_helpers.llamacpp import raw_tensor

    qtype, data = raw_tensor(embedded_info.path, "token_embd.weight")
    tensor = next(t for t in embedded_info.tensors if t.name == "token_embd.weight")
    assert qtype == tensor.qtype == "Q8_0" and data.nbytes == tensor.n_bytes
    with pytest.raises(GGUFError, match="no tensor"):
        raw_tensor(embedded_info.path, "blk.99.attn_q.weight")
