"""Devices and dtypes: the one place that decides what ``"auto"`` means.

- device ``"auto"``: ``"cuda"``, else ``"mps"``, else ``"cpu"``; a named device that is absent
  is an error, not a silent fallback.
- dtype ``"auto"``: bfloat16 on a CUDA GPU (float16 on older ones), float32 on a CPU and on MPS
  (identical greedy outputs across CPUs; most CPUs multiply bfloat16 slower). For a model
  (:func:`load_dtype`) the embedded model stays float32 everywhere (the lessons print the same
  on a GPU), and a quantized folder loads in bfloat16 everywhere (what it was quantized in).

Light on purpose: torch only, imported inside the functions; no transformers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]

_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "bfloat16": "bfloat16",
           "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16"}


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA GPU is present, else ``"mps"``, else ``"cpu"``."""
    import torch

    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
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
    if base == "mps" and not mps:
        raise ValueError("device='mps' was asked for, but MPS is not available: use 'cpu'.")
    return name


def load_dtype(model_id: str | None, dtype: Any, device: str, *, quantized: bool = False):
    """The torch dtype a model is loaded in: :func:`resolve_dtype`, except that ``"auto"`` keeps
    the embedded model (``model_id == "embedded"``) in float32 and gives a ``quantized`` folder
    bfloat16, everywhere."""
    if isinstance(dtype, str) and dtype.strip().lower() == "auto":
        if model_id == "embedded":
            dtype = "float32"
        elif quantized:
            dtype = "bfloat16"
    return resolve_dtype(dtype, device)


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` → ``"bfloat16"`` (a name for configs, command lines and records)."""
    return str(dtype).removeprefix("torch.")


def resolve_dtype(dtype: Any = "auto", device: str = "cpu"):
    """``"auto"`` → bfloat16 on a GPU that supports it (float16 otherwise), float32 on a CPU."""
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
