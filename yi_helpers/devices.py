"""Devices and dtypes: what ``"auto"`` means for a model on this machine.

Light on purpose (torch only, imported inside the functions): ``yi_helpers.loading`` builds
``load()`` on these, and ``yi_helpers.serve`` picks a server's device and dtype with them
without importing transformers' model code.
"""

from __future__ import annotations

from typing import Any

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA GPU is present, else ``"mps"``, else ``"cpu"``."""
    import torch

    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    base, _, index = name.partition(":")
    if base not in {"cpu", "cuda", "mps"} or (index and not index.isdigit()):
        raise ValueError(
            f"Unsupported device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for, but this machine has no CUDA GPU visible to torch. "
            "Use device='auto' or 'cpu' (the embedded model runs fine on a CPU)."
        )
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for, but MPS is not available: use 'cpu'.")
    return name


def _is_auto(dtype: Any) -> bool:
    return isinstance(dtype, str) and dtype.strip().lower() == "auto"


def load_dtype(model_id: str | None, dtype: Any, device: str):
    """The dtype ``yi_helpers.load`` (and the lesson-07 server) gives ``model_id``:
    :func:`resolve_dtype`, except that ``"auto"`` keeps the tiny embedded model in float32 on a
    GPU too, so that the lessons' outputs and checks are the same there as on the CPU they were
    written on."""
    if model_id == "embedded" and _is_auto(dtype):
        dtype = "float32"
    return resolve_dtype(dtype, device)


def resolve_dtype(dtype: Any = "auto", device: str = "cpu"):
    """``"auto"`` → bfloat16 on a GPU that supports it (float16 otherwise), float32 on a CPU.

    float32 on the CPU keeps greedy outputs identical across machines; pass ``"bfloat16"`` to
    halve the memory.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"Unsupported dtype {dtype}: use float32, bfloat16 or float16.")
        return dtype
    if not isinstance(dtype, str):
        raise ValueError(f"dtype must be a string or torch.dtype, got {dtype!r}")
    name = dtype.strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in _DTYPES:
        raise ValueError(
            f"Unsupported dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'."
        )
    return getattr(torch, _DTYPES[name])
