"""Notebook 05 (quantization): solutions to its exercises, answers to its questions."""

import torch

from ..quantize import rtn_quantize

__all__ = ["symmetric_rtn", "bits_per_weight", "worst_layer", "QUESTIONS", "ANSWERS"]


def symmetric_rtn(weight: torch.Tensor, bits: int = 4, group_size: int = 64) -> torch.Tensor:
    """Exercise 1: group-wise RTN without a zero point: levels ``-2**(bits-1) .. 2**(bits-1) - 1``
    times ``max|w| / (2**(bits-1) - 1)``. One level goes unused and the grid spans ``2 max|w|``
    even for lopsided weights, so the error is usually a little larger than asymmetric RTN's."""
    if weight.dim() != 2 or weight.shape[1] % group_size:
        raise ValueError(f"expected a 2-D weight whose columns divide into groups of {group_size}")
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // group_size, group_size)
    top = 2 ** (bits - 1) - 1
    step = (w.abs().amax(-1, keepdim=True) / top).clamp(min=1e-12)
    q = torch.clamp(torch.round(w / step), -top - 1, top)
    return (q * step).reshape(rows, cols).to(weight.dtype)


def bits_per_weight(bits: int, group_size: int, scale_bits: int = 16) -> float:
    """Exercise 2: storage per weight with one ``scale_bits`` scale and one ``bits``-wide zero
    point per group. 4-bit: 4.156 at group 128, 4.625 at group 32."""
    if bits <= 0 or group_size <= 0:
        raise ValueError("bits and group_size must be positive")
    return bits + (scale_bits + bits) / group_size


def worst_layer(model: torch.nn.Module, bits: int = 4, group_size: int = 64) -> tuple[str, float]:
    """Exercise 3: ``(name, relative Frobenius error)`` of the decoder linear layer RTN hurts
    most."""
    errors = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
            w = module.weight.detach().float()
            errors[name] = float((rtn_quantize(w, bits, group_size)[0] - w).norm() / w.norm())
    if not errors:
        raise ValueError("no decoder linear layers found")
    name = max(errors, key=errors.get)
    return name, errors[name]


QUESTIONS = [
    '4-bit weights take an eighth of float32, yet the embedded model only shrinks to about 0.42x of its 16-bit size, Yi-6B to about 0.3x. Why the difference?',
    'Why can GPTQ calibrated on a narrow set of texts do worse than plain rounding on other text?',
    'What does AWQ protect, and how, without storing anything extra at inference?',
]
ANSWERS = [
    'The embedding and LM head stay in 16 bits, and each group of weights adds a scale and a zero point. In a small model with a 49K-token vocabulary the embedding is a large share of all parameters; in Yi-6B the quantized layers dominate.',
    "GPTQ uses the calibration inputs to move the rounding error where those inputs do not look. On text whose inputs differ, that compensation points the wrong way, and the error can exceed round-to-nearest's.",
    'The input channels with large activations: it scales their weights up before rounding (finer steps for them relative to their importance) and folds the inverse scale into the previous norm or linear layer, so the model computes the same function with no extra step.',
]
