"""yi_helpers.machine: facts about the machine the numbers are measured on."""

from __future__ import annotations

import torch

from yi_helpers.machine import cpu_features, cpu_flags, machine_summary, native_bf16
from yi_helpers.models import estimate_memory


def test_machine_summary_names_cpu_and_versions():
    line = machine_summary()
    assert f"torch {torch.__version__}" in line and "cores" in line and "transformers" in line


# Shortened /proc/cpuinfo texts of the machines this hub was measured on, and of an Arm server.
EPYC_AVX512 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n"


def test_cpu_flags_read_x86_and_arm_cpuinfo():
    assert {"avx2", "avx512_bf16"} <= cpu_flags(EPYC_AVX512)
    assert "bf16" in cpu_flags(GRAVITON3) and "asimd" in cpu_flags(GRAVITON3)
    assert cpu_flags("model name : Apple M2\n") == frozenset()


def test_native_bf16_needs_a_bf16_flag_and_says_when_it_cannot_tell():
    assert native_bf16(cpu_flags(EPYC_AVX512)) is True
    assert native_bf16(cpu_flags(GRAVITON3)) is True
    assert native_bf16(cpu_flags(EPYC_AVX2)) is False  # avx2 alone converts bf16 on the fly
    assert native_bf16(frozenset()) is None


def test_cpu_features_names_torch_kernels_and_bf16():
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_features(cpu_flags(EPYC_AVX2)) == f"{capability} kernels, no native bf16"
    assert cpu_features(cpu_flags(EPYC_AVX512)).endswith("native bf16 (avx512_bf16)")
    assert cpu_features(frozenset()).endswith("bf16 support unknown")
    assert cpu_features().startswith(capability)  # this machine's own flags


def test_memory_estimate_prints_its_parts():
    text = str(estimate_memory("01-ai/Yi-6B-Chat", batch_size=4))
    assert text.startswith("01-ai/Yi-6B-Chat: 13.2 GB (weights 12.1 + KV cache")
    assert "batch 4, 2048 tokens, 16-bit weights" in text
