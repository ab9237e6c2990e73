"""load(): devices, dtypes, sources, memory checks, offline errors, chat stopping."""

from __future__ import annotations

import time

import pytest
import torch

from yi_helpers import ModelNotAvailableError, NotEnoughMemoryError, load
from yi_helpers.loading import IM_END, check_fits, configure_chat_stopping


def test_embedded_loads_in_eval_mode_on_cpu(embedded):
    model, tokenizer = embedded
    assert not model.training
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert tokenizer.convert_tokens_to_ids(IM_END) in _stop_ids(model)


def _stop_ids(model):
    eos = model.generation_config.eos_token_id
    return eos if isinstance(eos, list) else [eos]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="known models: embedded, 01-ai/Yi-6B"):
        load("Yi-7B-Chat")


#: from_pretrained options a caller might pass to run remote code or read pickles.
UNSAFE_OPTIONS = {"trust_remote_code": True, "use_safetensors": False}


@pytest.mark.parametrize("option", UNSAFE_OPTIONS)
def test_unsafe_loading_options_are_refused(option):
    with pytest.raises(ValueError, match="never runs remote code"):
        load("embedded", **{option: UNSAFE_OPTIONS[option]})


def test_remote_code_and_pickles_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="safetensors only"):
        load(str(tmp_path))


def test_offline_hub_id_fails_fast_with_advice(offline_hub_cache):
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="model='embedded'.*hf download 01-ai/Yi-6B-Chat"):
        load("01-ai/Yi-6B-Chat", check_memory=False)
    assert time.perf_counter() - start < 30


def test_cached_hub_id_loads_offline_as_a_chat_model(offline_hub_cache, tiny_llama_dir):
    offline_hub_cache("someone/tiny-chat", tiny_llama_dir)
    model, tok = load("someone/tiny-chat", device="cpu")
    assert model.config.hidden_size == 64
    stops = model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (stops if isinstance(stops, list) else [stops])
    assert model.generation_config.pad_token_id is not None  # set by configure_chat_stopping


def test_cached_hub_repo_without_safetensors_is_refused(offline_hub_cache, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\0")
    offline_hub_cache("someone/pickled", pickled)
    with pytest.raises(ValueError, match="safetensors only"):
        load("someone/pickled", device="cpu")


def test_too_big_is_refused_with_a_model_that_fits():
    with pytest.raises(NotEnoughMemoryError, match="01-ai/Yi-34B-Chat-4bits"):
        check_fits("01-ai/Yi-34B-Chat", "cuda", available_gb=24)
    with pytest.raises(NotEnoughMemoryError, match="model='embedded'"):
        check_fits("01-ai/Yi-6B-Chat", "cuda", available_gb=2)
    check_fits("01-ai/Yi-6B-Chat-4bits", "cuda", available_gb=8)  # fits: no error


def test_load_refuses_before_downloading_when_memory_is_short(monkeypatch):
    # A 24 GB machine (this one's size) cannot hold the ~70 GB Yi-34B-Chat needs: refused at
    # once, before any download is tried.
    import yi_helpers.loading

    monkeypatch.setattr(yi_helpers.loading, "device_memory_gb", lambda device: 24.0)
    start = time.perf_counter()
    with pytest.raises(NotEnoughMemoryError, match="needs about"):
        load("01-ai/Yi-34B-Chat", device="cpu")
    assert time.perf_counter() - start < 5


def test_local_folder_round_trip(tmp_path, tiny_llama_config):
    from transformers import LlamaForCausalLM

    from yi_helpers import embedded

    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config).save_pretrained(tmp_path, safe_serialization=True)
    # a tokenizer is needed next to the weights; borrow the embedded one (shapes don't matter)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(embedded.prepare(verbose=False)).save_pretrained(tmp_path)
    model, tokenizer = load(str(tmp_path), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.config.num_key_value_heads == 2


def test_chat_stopping_adds_im_end_when_eos_differs(embedded):
    """Yi chat models: tokenizer eos is <|endoftext|>, turns end with <|im_end|>."""
    import copy

    model, tokenizer = embedded
    tok = copy.deepcopy(tokenizer)
    tok.eos_token = "<|endoftext|>"  # what Yi's tokenizer says
    gen_model = copy.copy(model)
    gen_model.generation_config = copy.deepcopy(model.generation_config)
    gen_model.generation_config.eos_token_id = tok.eos_token_id
    stop = configure_chat_stopping(gen_model, tok)
    assert stop[0] == tok.convert_tokens_to_ids(IM_END)
    assert tok.eos_token_id in stop and len(stop) == len(set(stop))


@pytest.mark.slow
def test_greedy_reply_stops_at_im_end(embedded):
    model, tokenizer = embedded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert new[-1] == tokenizer.convert_tokens_to_ids(IM_END) and len(new) < 64
    assert "Paris" in tokenizer.decode(new, skip_special_tokens=True)
