"""GGML tensor types and llama.cpp file types, without loading anything: bits per weight from
the block layouts (the ``gguf`` package's table), which types a file type such as ``Q4_K_M``
mixes, and published Yi GGUF sizes to check the planner against. The planner itself
(``yi_helpers.models.gguf_file_bytes``, ``estimate_memory(..., gguf_type=...)``) and the files
(``yi_helpers.llamacpp``) build on it.
"""

from __future__ import annotations

__all__ = ["GGUFError", "bits_per_weight", "GGUF_FILE_TYPES", "more_bits", "PUBLISHED_GGUF_GB"]


class GGUFError(ValueError):
    """A file that is not a GGUF, a type that cannot be written, or a request the model cannot
    take (a context longer than it was trained for)."""


def bits_per_weight(qtype: str) -> float:
    """Bits each weight takes in a GGML type, block overhead included: ``"Q4_1"`` 5.0,
    ``"Q8_0"`` 8.5, ``"Q4_0"`` 4.5, ``"Q4_K"`` 4.5, ``"F16"`` 16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    except KeyError:
        known = ", ".join(t.name for t in GGML_QUANT_SIZES)
        raise GGUFError(f"unknown GGML type {qtype!r}; known: {known}") from None
    return size * 8 / block


#: llama.cpp file types (``llama-quantize`` names) and the tensor types each one writes:
#: ``base`` for most matrices, ``more`` for the tensors it keeps at more bits (the LM head; in
#: the _M mixes also ``attn_v`` and ``ffn_down`` of the first and last eighth of the layers and
#: of every third layer between: llama.cpp's ``use_more_bits`` rule). Norms stay F32.
GGUF_FILE_TYPES: dict[str, dict[str, str]] = {
    "F16": {"base": "F16", "more": "F16"},
    "Q8_0": {"base": "Q8_0", "more": "Q8_0"},
    "Q6_K": {"base": "Q6_K", "more": "Q6_K"},
    "Q5_K_M": {"base": "Q5_K", "more": "Q6_K"},
    "Q4_K_M": {"base": "Q4_K", "more": "Q6_K"},
    "Q4_0": {"base": "Q4_0", "more": "Q6_K"},
}


#: Published GGUF file sizes (GB, the "Provided files" tables of the model cards) for the
#: planner to be checked against: model id -> (source, {file type: GB}). No Yi-1.5-9B card
#: with a size table was at hand.
PUBLISHED_GGUF_GB: dict[str, tuple[str, dict[str, float]]] = {
    "01-ai/Yi-6B-Chat": ("https://huggingface.co/XeIaso/yi-chat-6b-GGUF",
                         {"Q4_K_M": 3.67, "Q5_K_M": 4.30, "Q8_0": 6.44}),
    "01-ai/Yi-34B-Chat": ("https://huggingface.co/TheBloke/Yi-34B-Chat-GGUF",
                          {"Q4_K_M": 20.66, "Q5_K_M": 24.32, "Q8_0": 36.54}),
    "01-ai/Yi-1.5-34B-Chat": ("https://huggingface.co/bartowski/Yi-1.5-34B-Chat-GGUF",
                              {"Q4_K_M": 20.65, "Q5_K_M": 24.32, "Q8_0": 36.54}),
}


def more_bits(layer: int, n_layers: int) -> bool:
    """Whether a ``_M`` file type keeps layer ``layer``'s ``attn_v`` and ``ffn_down`` at more
    bits (llama.cpp's ``use_more_bits``: the first and last eighth, and every third between)."""
    return (layer < n_layers // 8 or layer >= 7 * n_layers // 8
            or (layer - n_layers // 8) % 3 == 2)
