"""yi_helpers.llamacpp: GGUF files written with the gguf package (and read back with its
``GGUFReader``, as lesson 08 reads them), run by llama.cpp."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from yi_helpers.embedded import gguf_path, safetensors_dir
from yi_helpers.ggml_types import GGUFError, bits_per_weight
from yi_helpers.llamacpp import LlamaCpp, write_gguf

ROOT = Path(__file__).resolve().parents[1]


def metadata(reader: GGUFReader) -> dict:
    """Key -> value of a GGUF's metadata, as lesson 08 reads it."""
    return {key: field.contents() for key, field in reader.fields.items()}


def types_of(reader: GGUFReader) -> set[str]:
    return {t.tensor_type.name for t in reader.tensors}


@pytest.fixture(scope="module")
def embedded_reader():
    return GGUFReader(gguf_path())


def test_metadata_read_equals_the_config(embedded_reader):
    config = json.loads((safetensors_dir() / "config.json").read_text())
    m = metadata(embedded_reader)
    assert m["general.architecture"] == "llama"
    assert m["llama.block_count"] == config["num_hidden_layers"]
    assert m["llama.embedding_length"] == config["hidden_size"]
    assert m["llama.attention.head_count"] == config["num_attention_heads"]
    assert m["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert m["llama.feed_forward_length"] == config["intermediate_size"]
    assert len(m["tokenizer.ggml.tokens"]) == config["vocab_size"]
    eos = m["tokenizer.ggml.eos_token_id"]
    assert (eos, m["tokenizer.ggml.tokens"][eos]) == (2, "<|im_end|>")
    assert "<|im_start|>" in m["tokenizer.chat_template"]
    embedding = next(t for t in embedded_reader.tensors if t.name == "token_embd.weight")
    assert [int(n) for n in embedding.shape] == [config["hidden_size"], config["vocab_size"]]


def test_bits_per_weight_from_the_block_layouts(embedded_reader):
    # Q4_1: fp16 scale + fp16 minimum + 32 x 4 bits = 20 bytes per 32 weights
    assert bits_per_weight("Q4_1") == 5.0
    assert bits_per_weight("Q8_0") == 8.5  # fp16 scale + 32 bytes
    assert bits_per_weight("Q4_0") == 4.5 and bits_per_weight("F16") == 16
    assert types_of(embedded_reader) == {"Q4_1", "Q8_0", "F32"}
    for t in embedded_reader.tensors:  # the file's bytes are what the layouts say
        assert t.n_bytes * 8 == pytest.approx(t.n_elements * bits_per_weight(t.tensor_type.name))
        assert t.data.nbytes == t.n_bytes  # the data as stored: packed blocks for a quantized type
    with pytest.raises(GGUFError, match="unknown GGML type"):
        bits_per_weight("Q3_X")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        LlamaCpp(tmp_path / "missing.gguf")
    (tmp_path / "model.safetensors").write_bytes(b"not a gguf at all")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        write_gguf(tmp_path / "x.gguf", "Q8_0", source=tmp_path / "model.safetensors")
    with pytest.raises(GGUFError, match="llama-quantize"):
        write_gguf(tmp_path / "x.gguf", "Q4_K_M")
    with pytest.raises(GGUFError, match="trained for"):
        LlamaCpp(n_ctx=100_000)


@pytest.fixture(scope="module")
def q8_path(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "q8.gguf", "Q8_0")


@pytest.mark.slow
def test_a_written_gguf_holds_the_same_weights_within_its_type(q8_path, embedded_reader):
    from gguf import quants

    a, b = embedded_reader, GGUFReader(q8_path)
    assert b.fields["general.file_type"].contents() == 7  # MOSTLY_Q8_0
    assert types_of(b) == {"Q8_0", "F32"}
    assert [t.name for t in b.tensors] == [t.name for t in a.tensors]
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


def test_lesson_08s_ollama_template_renders_what_the_yi_template_renders():
    """Lesson 08 writes Ollama's Modelfile itself: its ChatML template (Ollama's Go-template
    syntax), filled in by hand for two turns, renders what the Yi template renders."""
    from yi_helpers.chat import render

    notebook = ROOT / "notebooks" / "08_gguf_llamacpp.ipynb"
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text(encoding="utf-8"))[
        "cells"] if c["cell_type"] == "code" and "Modelfile" in "".join(c["source"]))
    template = next(ast.literal_eval(node.value) for node in ast.walk(ast.parse(code))
                    if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "chatml")
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

    reader = GGUFReader(standin_gguf["F32"])
    config = standin_config("tiny")
    m = metadata(reader)
    assert m["llama.attention.head_count_kv"] == config.num_key_value_heads == 1
    assert m["llama.rope.freq_base"] == 5_000_000
    assert len(m["tokenizer.ggml.tokens"]) == config.vocab_size == 64_000
    assert m["tokenizer.ggml.tokens"][:9] == list(YI_SPECIAL_TOKENS)
    bos = m["tokenizer.ggml.bos_token_id"]
    assert (bos, m["tokenizer.ggml.tokens"][bos]) == (1, "<|startoftext|>")
    assert "<|im_start|>" in m["tokenizer.chat_template"]
    assert "output.weight" in {t.name for t in reader.tensors}  # untied, as Yi's
    assert types_of(reader) == {"F32"}
    assert types_of(GGUFReader(standin_gguf["Q8_0"])) == {"Q8_0", "F32"}


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
        load_gguf_weights(model, gguf_path())  # the embedded model's GGUF


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
    assert timing["dtype"] == 0  # the file's general.file_type: ALL_F32
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
