"""GGML tensor types and llama.cpp file types, without loading anything: bits per weight from the
``gguf`` package's block layouts, the types a file type such as ``Q4_K_M`` mixes, and published
Yi GGUF sizes to check the planner (``yi_helpers.models.gguf_file_bytes``) against."""

from __future__ import annotations

__all__ = ["bits_per_weight", "GGUF_FILE_TYPES", "PUBLISHED_GGUF_GB"]


class GGUFError(ValueError):
    """Not a GGUF, a type that cannot be written, or a context longer than the model's."""


def bits_per_weight(qtype: str) -> float:
    """Bits each weight takes in a GGML type, block overhead included: ``"Q4_1"`` 5.0 (a 16-bit
    scale, a 16-bit minimum and 32 four-bit weights in 20 bytes), ``"Q8_0"`` 8.5, ``"F16"`` 16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    except KeyError:
        known = ", ".join(t.name for t in GGML_QUANT_SIZES)
        raise GGUFError(f"unknown GGML type {qtype!r}; known: {known}") from None
    return size * 8 / block


#: llama.cpp file types (``llama-quantize`` names) and the tensor types each one writes: ``base``
#: for most matrices, ``more`` for the LM head and, in the _M mixes, the ``attn_v`` and
#: ``ffn_down`` of the layers :func:`more_bits` picks. Norms stay F32.
GGUF_FILE_TYPES: dict[str, dict[str, str]] = {
    "F16": {"base": "F16", "more": "F16"},
    "Q8_0": {"base": "Q8_0", "more": "Q8_0"},
    "Q6_K": {"base": "Q6_K", "more": "Q6_K"},
    "Q5_K_M": {"base": "Q5_K", "more": "Q6_K"},
    "Q4_K_M": {"base": "Q4_K", "more": "Q6_K"},
    "Q4_0": {"base": "Q4_0", "more": "Q6_K"},
}

#: Published GGUF file sizes (GB, the "Provided files" tables of the model cards): model id ->
#: (source, {file type: GB}). No Yi-1.5-9B card with a size table was at hand.
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
