"""devices: what "auto" means for a device and a dtype, and the rule that keeps the embedded
model in float32 everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from yi_helpers.devices import load_dtype, resolve_device, resolve_dtype


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", 0])
def test_bad_device_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(ValueError, match="no CUDA GPU.*device='auto' or 'cpu'"):
        resolve_device("cuda")


def test_dtypes():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype(torch.float16, "cpu") == torch.float16
    for bad in ["int8", "float64", None, torch.int8]:
        with pytest.raises(ValueError, match="dtype"):
            resolve_dtype(bad, "cpu")


def test_the_embedded_model_stays_float32_on_a_gpu():
    # "auto" on a GPU would be bf16: the lessons' greedy outputs and checks come from float32
    assert load_dtype("embedded", "auto", "cuda") == torch.float32
    assert load_dtype("embedded", "bfloat16", "cuda") == torch.bfloat16  # asked for: given
    assert load_dtype("01-ai/Yi-6B-Chat", "auto", "cpu") == torch.float32
    assert load_dtype(None, "float16", "cuda") == torch.float16


def test_a_quantized_folder_loads_in_bfloat16_everywhere():
    assert load_dtype(None, "auto", "cpu", quantized=True) == torch.bfloat16
    assert load_dtype(None, "float32", "cpu", quantized=True) == torch.float32  # asked for
    assert load_dtype(None, "auto", "cpu") == torch.float32


def test_devices_and_serve_import_no_transformers():
    code = ("import sys, yi_helpers.devices, yi_helpers.serve; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
