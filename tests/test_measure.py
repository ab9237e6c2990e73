"""yi_helpers.measure and units: the one byte counter, memory readings, GB vs GiB."""

from __future__ import annotations

import pytest
import torch

from yi_helpers import measure, units


def test_model_bytes_counts_tied_weights_once():
    emb = torch.nn.Embedding(100, 8)
    head = torch.nn.Linear(8, 100, bias=False)
    head.weight = emb.weight  # tied, as in SmolLM2
    model = torch.nn.ModuleDict({"emb": emb, "head": head}).to(torch.bfloat16)
    model.register_buffer("scale", torch.ones(4))  # buffers count too
    assert measure.model_bytes(model) == 100 * 8 * 2 + 4 * 4


def test_model_bytes_counts_a_torchao_int8_tensor_by_its_parts():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = torch.nn.Sequential(torch.nn.Linear(64, 128, bias=False))
    dense = measure.model_bytes(model)
    quantize_(model, Int8WeightOnlyConfig())
    packed = measure.model_bytes(model)
    # int8 codes (1 byte a weight) plus one scale per output row: about a quarter of float32
    assert 64 * 128 <= packed < dense / 3


def test_units_say_decimal_and_binary_apart():
    assert units.GB == 1e9 and units.GiB == 2 ** 30 and units.MB == 1e6 and units.MiB == 2 ** 20
    assert units.GiB / units.GB == pytest.approx(1.0737, abs=1e-4)  # a GiB is 7% more


def test_process_memory_readings():
    before = measure.peak_rss_mb()
    assert before >= measure.rss_mb() > 0
    assert measure.device_memory_gb("cpu") > 0

