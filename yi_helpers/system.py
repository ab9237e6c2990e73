"""Facts about the machine a notebook runs on, and small measurement helpers.

Numbers in the lessons are measured where the notebook runs; ``machine_summary()`` names that
machine next to them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Flags that mean the CPU multiplies bfloat16 natively: x86's AVX-512 BF16 and AMX (Intel Cooper
# Lake / Sapphire Rapids and later, AMD Zen 4 and later), Arm's BF16 extension (Graviton 3, ...).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` line of ``/proc/cpuinfo`` on x86, ``Features`` on
    Arm. Empty when the file is missing (macOS, Windows). ``cpuinfo`` replaces the file's text."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str]) -> bool | None:
    """Whether a CPU with these flags multiplies bfloat16 natively; ``None`` when no flags are
    known (then measure: time a bf16 matmul against a float32 one)."""
    if not flags:
        return None
    return any(flag in flags for flag in BF16_FLAGS)


def cpu_features(flags: frozenset[str] | set[str] | None = None) -> str:
    """What decides CPU speed and rounding in the lessons, in words: the vector instructions
    torch's kernels use (``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, ...) and
    whether bfloat16 is native, e.g. ``"AVX2 kernels, no native bf16"``."""
    import torch

    flags = cpu_flags() if flags is None else flags
    bf16 = native_bf16(flags)
    if bf16 is None:
        bf16_text = "bf16 support unknown"
    elif bf16:
        bf16_text = "native bf16 (" + ", ".join(f for f in BF16_FLAGS if f in flags) + ")"
    else:
        bf16_text = "no native bf16"
    return f"{torch.backends.cpu.get_cpu_capability()} kernels, {bf16_text}"


def machine_summary() -> str:
    """One line: CPU, cores, GPU if any, and the torch / transformers versions."""
    import torch
    import transformers

    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU")
    return (f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), "
            f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}")


def tensor_bytes(model) -> int:
    """Bytes held by a model's parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = t.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def progress(iterable=None, **kwargs):
    """A tqdm progress bar: text in notebooks without ipywidgets (so no widget state is stored;
    the package's ``__init__`` silences tqdm's hint about widgets)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 5.0)  # few redraws: short logs in notebooks and CI
    return tqdm(iterable, **kwargs)


def quiet_gptqmodel_banner() -> None:
    """Keep gptqmodel's import banner out of lesson outputs (call before anything imports it).

    gptqmodel (imported by peft when an adapter is added or loaded, and by lesson 05's
    quantizer) logs a banner and a free-threading hint through logbar's shared logger on
    import. That logger resets its level when first created, so create it here, quietly, and
    raise its level. Nothing happens when logbar is not installed.
    """
    import contextlib
    import importlib.util
    import io
    import logging

    if importlib.util.find_spec("logbar") is None:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)


def artifact_dir(name: str) -> Path:
    """Folder where a lesson leaves something a later lesson can reuse (an adapter, a quantized
    model): ``<hub cache>/artifacts/<name>`` (``$YI_HUB_CACHE`` moves the cache). Not created."""
    from .embedded import cache_dir

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact name must be a plain folder name, got {name!r}")
    return Path(cache_dir()) / "artifacts" / name
