"""The lesson 05 exercise solutions are correct."""

from __future__ import annotations

import pytest
import torch

from yi_helpers.quantize import rtn_quantize
from yi_helpers.solutions import lesson05


def test_symmetric_rtn_grid_and_error():
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(0))
    deq = lesson05.symmetric_rtn(w, 4, 64)
    step = w.reshape(8, 2, 64).abs().amax(-1, keepdim=True) / 7
    levels = deq.reshape(8, 2, 64) / step
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 8
    assert torch.all((deq - w).abs().reshape(8, 2, 64) <= step / 2 + 1e-6)
    # lopsided weights: the asymmetric grid fits them better
    shifted = w.abs() + 0.5
    sym = (lesson05.symmetric_rtn(shifted, 4, 64) - shifted).norm()
    asym = (rtn_quantize(shifted, 4, 64)[0] - shifted).norm()
    assert asym < sym


def test_bits_per_weight():
    assert lesson05.bits_per_weight(4, 128) == pytest.approx(4 + 20 / 128)
    assert lesson05.bits_per_weight(4, 32) == pytest.approx(4.625)
    assert lesson05.bits_per_weight(8, 64) > 8
    with pytest.raises(ValueError):
        lesson05.bits_per_weight(4, 0)


def test_worst_layer(embedded):
    model, _ = embedded
    name, rel = lesson05.worst_layer(model, 4, 64)
    assert ".layers." in name and 0 < rel < 1
    layer = dict(model.named_modules())[name].weight.detach().float()
    for other in ("model.layers.0.self_attn.q_proj", "model.layers.5.mlp.down_proj"):
        w = dict(model.named_modules())[other].weight.detach().float()
        assert (rtn_quantize(w, 4, 64)[0] - w).norm() / w.norm() <= rel + 1e-9
    assert layer.shape[1] % 64 == 0
