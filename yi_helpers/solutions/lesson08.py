"""Notebook 08 (GGUF and llama.cpp): solutions to its exercises, answers to its questions."""

import time
from typing import Any, Mapping, Sequence

import numpy as np

from ..models import estimate_memory

__all__ = ["dequantize_q8_0", "best_gguf_for", "stream_ttft", "QUESTIONS", "ANSWERS"]


def dequantize_q8_0(raw: bytes) -> np.ndarray:
    """Exercise 1: the float32 weights of Q8_0 blocks: 34 bytes each, a float16 scale ``d``
    then 32 signed 8-bit integers ``q``; the weights are ``d * q``."""
    if len(raw) % 34:
        raise ValueError(f"Q8_0 data comes in 34-byte blocks, got {len(raw)} bytes")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)  # (n, 32)
    return (d * q).reshape(-1)


def best_gguf_for(ram_gb: float, model: str, *, context_len: int = 4096,
                  file_types: Sequence[str] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
                  ) -> str | None:
    """Exercise 2: the most precise of ``file_types`` (most precise first) whose planned memory
    fits in ``ram_gb``; ``None`` when even the smallest does not."""
    for file_type in file_types:
        if estimate_memory(model, context_len=context_len, gguf_type=file_type).total_gb <= ram_gb:
            return file_type
    return None


def stream_ttft(client: Any, model: str, messages: Sequence[Mapping[str, str]], *,
                max_tokens: int = 32) -> dict:
    """Exercise 3: a streamed chat completion timed from the client: seconds to the first piece
    of text (what a user waits before anything shows) and to the whole reply, and the text."""
    start, first, pieces = time.perf_counter(), None, []
    for chunk in client.chat.completions.create(model=model, messages=list(messages),
                                                max_tokens=max_tokens, temperature=0,
                                                stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - start
            pieces.append(chunk.choices[0].delta.content)
    return {"ttft_s": first, "total_s": time.perf_counter() - start, "text": "".join(pieces)}


QUESTIONS = [
    "Where do the 5.0 bits per weight of Q4_1 come from, and why is a Q4_1 file not simply an eighth of the float32 one?",
    "Why does llama.cpp decode several times faster than transformers on the same CPU and the same weights?",
    "Which Yi GGUF would you run on a laptop with 16 GB of RAM, and why not Yi-34B?",
]
ANSWERS = [
    "A Q4_1 block stores 32 weights as 4-bit integers (16 bytes) plus a float16 scale and a float16 minimum (4 bytes): 20 bytes for 32 weights, 5.0 bits each. Files are larger than the ratio suggests because some tensors keep more bits (the embedding at Q8_0 in the embedded GGUF, norms in F32).",
    "Per token, transformers runs hundreds of small PyTorch operations from Python (dispatch and launch overhead) on float32 or bfloat16 weights; llama.cpp runs fused C++ kernels on 4-5-bit weights, so it reads several times fewer bytes per token, and decoding is bound by memory bandwidth. Threads are set to the cores in both.",
    "Yi-6B-Chat or Yi-1.5-9B-Chat at Q4_K_M to Q8_0 (the planner: 4-10 GB with a 4K context). Yi-34B-Chat needs about 22 GB even at Q4_K_M: its file alone is 20.66 GB, more than the RAM.",
]
