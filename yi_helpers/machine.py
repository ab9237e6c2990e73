"""Facts about the machine a notebook runs on: lessons measure where they run, and
``machine_summary()`` names that machine next to the numbers."""

from __future__ import annotations

import os
import platform

__all__ = ["cpu_features", "machine_summary"]

# Flags that mean the CPU multiplies bfloat16 natively: x86's AVX-512 BF16 and AMX (Intel Cooper
# Lake / Sapphire Rapids and later, AMD Zen 4 and later), Arm's BF16 extension (Graviton 3, ...).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:  # macOS, Windows
        return ""


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or ``platform.processor()``."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` line of ``/proc/cpuinfo`` on x86, ``Features`` on
    Arm; empty when unknown. ``cpuinfo`` replaces the file's text."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str]) -> bool | None:
    """Whether a CPU with these flags multiplies bfloat16 natively; ``None`` when no flags are
    known (then measure: time a bf16 matmul against a float32 one)."""
    return any(flag in flags for flag in BF16_FLAGS) if flags else None


def cpu_features(flags: frozenset[str] | set[str] | None = None) -> str:
    """What decides CPU speed and rounding in the lessons, in words: the vector instructions
    torch's kernels use and whether bfloat16 is native, e.g. ``"AVX2 kernels, no native bf16"``."""
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

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    return (f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), "
            f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}")
