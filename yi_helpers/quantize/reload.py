"""Back from a quantized folder: its stored weights as plain float32 layers (accuracy measured
on the same numbers with plain arithmetic, while ``yi_helpers.load`` keeps the kernels for
timing); its size on disk and as planned."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..loading import eager, load
from ..models import ModelSpec, planned_weight_bytes, spec

__all__ = ["dequantize", "dense_copy", "disk_size", "size_ratio"]


def _dense_weight(module: Any) -> torch.Tensor | None:
    """The (out, in) float32 weight a GPTQModel GPTQ or AWQ layer, or a linear holding a
    torchao quantized weight, computes with; else None."""
    weight = getattr(module, "weight", None)
    if isinstance(module, torch.nn.Linear) and type(weight).__module__.startswith("torchao"):
        return weight.dequantize().float()  # int8 codes x their scales
    if hasattr(module, "qweight") and hasattr(module, "dequantize_weight"):  # GPTQ: (in, out)
        return eager(module).dequantize_weight().T.float()
    if hasattr(module, "qweight") and "Awq" in type(module).__name__:
        from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm

        return dequantize_gemm(module.qweight, module.qzeros, module.scales, module.bits,
                               module.group_size).T.float()
    return None


def dense_copy(model: Any, folder: str | os.PathLike) -> Any:
    """:func:`dequantize` of a copy of a loaded quantized ``model``, on its device; the model
    keeps its kernels. On a GPU the copy comes from a fresh CPU load of ``folder``: the CUDA
    kernels (Marlin, Machete, ExLlama) repack the weights and cannot give them back."""
    device = next(model.parameters()).device
    if device.type == "cpu":
        return dequantize(copy.deepcopy(model))
    return dequantize(load(folder, device="cpu")[0]).to(device)


def dequantize(model: Any) -> Any:
    """Replace every GPTQ, AWQ or torchao int8 layer of a loaded model by a float32
    ``nn.Linear`` with the weights it dequantizes to; cast the model to float32 (in place).

    Same numbers, float32 arithmetic: GPTQModel's 8-bit CPU layer computes in bf16 (minutes
    for a perplexity on CPUs without bf16 instructions) and its int4 kernels round their own
    way. Call it before the model's first forward pass (or on a ``copy.deepcopy`` made before):
    the int4 CPU kernels repack their weights then and no longer dequantize.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        try:
            weight = _dense_weight(module)
        except (RuntimeError, NotImplementedError, ValueError) as err:
            raise ValueError(
                f"{name} no longer dequantizes ({err}): it ran a forward pass already. "
                "Call dequantize(load(folder)[0]) on a fresh load, or on a "
                "copy.deepcopy of it made before its first use.") from err
        if weight is None:
            continue
        bias = getattr(module, "bias", None)
        dense = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                device=weight.device)
        with torch.no_grad():
            dense.weight.copy_(weight)
            if bias is not None:
                dense.bias.copy_(bias.float())
        model.set_submodule(name, dense)
        replaced += 1
    if not replaced:
        raise ValueError("no GPTQ, AWQ or torchao layers found: dequantize() is for models "
                         "that yi_helpers.load loaded from a folder quantize() wrote")
    # transformers refuses .float() on a model it loaded quantized; every layer is plain now
    return torch.nn.Module.float(model)


def disk_size(folder: str | os.PathLike) -> int:
    """Bytes of the weight files (``*.safetensors``) in a folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def size_ratio(model: str | ModelSpec, bits: int, group_size: int | None = None) -> float:
    """Weights at ``bits`` (decoder linears; embedding, LM head and norms 16-bit, plus a scale
    and zero point per group) over the 16-bit weights, from the config alone."""
    s = spec(model)
    if group_size is not None:
        s = dataclasses.replace(s, group_size=group_size)
    return planned_weight_bytes(s, bits) / planned_weight_bytes(s, 16)
