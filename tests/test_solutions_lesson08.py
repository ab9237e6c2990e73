"""The exercise solutions of lesson 08 (GGUF and llama.cpp) are correct."""

from __future__ import annotations

import numpy as np
import pytest

from yi_helpers.solutions import lesson08


def test_dequantize_q8_0_matches_the_gguf_package():
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    w = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    packed = quants.quantize(w, T.Q8_0)
    ours = lesson08.dequantize_q8_0(packed.tobytes())
    assert np.array_equal(ours, quants.dequantize(packed, T.Q8_0).reshape(-1))
    assert np.abs(ours - w.reshape(-1)).max() < np.abs(w).max() / 127
    with pytest.raises(ValueError, match="34-byte blocks"):
        lesson08.dequantize_q8_0(b"\x00" * 35)


def test_best_gguf_for_a_laptop():
    assert lesson08.best_gguf_for(16, "01-ai/Yi-6B-Chat") == "Q8_0"
    assert lesson08.best_gguf_for(6, "01-ai/Yi-6B-Chat") == "Q6_K"
    assert lesson08.best_gguf_for(5, "01-ai/Yi-6B-Chat") == "Q5_K_M"
    assert lesson08.best_gguf_for(16, "01-ai/Yi-34B-Chat") is None
    assert lesson08.best_gguf_for(32, "01-ai/Yi-34B-Chat") == "Q6_K"
    with pytest.raises(ValueError, match="unknown GGUF file type"):
        lesson08.best_gguf_for(16, "01-ai/Yi-6B-Chat", file_types=["Q3_X"])


@pytest.mark.slow
def test_stream_ttft_against_llama_cpp():
    from openai import OpenAI

    from yi_helpers.llamacpp import LlamaCpp

    with LlamaCpp(n_ctx=512) as llm:
        client = OpenAI(base_url=llm.base_url, api_key="none")
        result = lesson08.stream_ttft(client, "embedded", [{"role": "user", "content": "Hi"}],
                                      max_tokens=8)
        whole = llm.chat([{"role": "user", "content": "Hi"}], max_tokens=8)
    assert 0 < result["ttft_s"] <= result["total_s"]
    assert result["text"] == whole["choices"][0]["message"]["content"]
