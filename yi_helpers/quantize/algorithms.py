"""Quantization algorithms written out to read: round-to-nearest, GPTQ, AWQ.

These are the few dozen lines each method really is, for lesson 05 to show and test against
the libraries: group-wise round-to-nearest (``rtn_quantize``, the baseline both improve on),
GPTQ's column-by-column error compensation (``gptq_quantize_weight``), AWQ's activation-aware
scale search (``awq_scales``), AWQ's GEMM packing (``pack_awq_gemm``), and the measurements
they are judged by (``layer_inputs``, ``output_error``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["rtn_codes", "rtn_quantize", "dequantize_codes", "rtn_quantize_model",
           "gptq_quantize_weight", "awq_scales", "pack_awq_gemm", "layer_inputs",
           "output_error"]

# ---------------------------------------------------------------------------------------------
# Round-to-nearest, by hand
# ---------------------------------------------------------------------------------------------

def _grid(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(step, zero point) per row for a group of columns ``w`` (rows x columns), as in
    :func:`rtn_quantize`."""
    levels = 2 ** bits - 1
    if symmetric:
        step = (2 * w.abs().amax(-1) / levels).clamp(min=1e-12)
        return step, torch.full_like(step, 2 ** (bits - 1))
    # the range always includes 0, so the zero point fits in ``bits`` bits too (AWQ's qzeros),
    # also for a group whose weights all have one sign
    low, high = w.amin(-1).clamp(max=0), w.amax(-1).clamp(min=0)
    step = ((high - low) / levels).clamp(min=1e-12)
    return step, torch.round(-low / step)


def rtn_codes(weight: torch.Tensor, bits: int = 4, group_size: int = 64,
              symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise round-to-nearest, as stored: ``(codes, zeros, steps)``.

    ``codes`` are integers ``0 .. 2**bits - 1`` shaped like ``weight``; ``zeros`` and ``steps``
    hold one zero point and one step per group (rows x groups). ``(codes - zero) * step`` is the
    dequantized weight. See :func:`rtn_quantize` for the two grids.
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if cols % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {cols} columns")
    w = weight.detach().float().reshape(rows, cols // group_size, group_size)
    step, zero = _grid(w, bits, symmetric)
    codes = torch.clamp(torch.round(w / step.unsqueeze(-1)) + zero.unsqueeze(-1), 0, 2 ** bits - 1)
    return codes.reshape(rows, cols).to(torch.int32), zero.to(torch.int32), step


def rtn_quantize(weight: torch.Tensor, bits: int = 4, group_size: int = 64,
                 symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-wise round-to-nearest: ``(dequantized weight, step size per group)``.

    Each row is cut into groups of ``group_size`` columns. Asymmetric (default, as AWQ): the
    group's minimum and maximum span ``2**bits - 1`` equal steps, with a zero point. Symmetric
    (as GPTQ's default ``sym=True``): the grid is ``-2**(bits-1) .. 2**(bits-1) - 1`` steps
    around 0, with ``step = 2 max|w| / (2**bits - 1)``. Every weight moves to the nearest step:
    the error of a weight is at most half its group's step, and weights already on the grid are
    unchanged.
    """
    codes, zero, step = rtn_codes(weight, bits, group_size, symmetric)
    return dequantize_codes(codes, zero, step).to(weight.dtype), step


def dequantize_codes(codes: torch.Tensor, zeros: torch.Tensor, steps: torch.Tensor
                     ) -> torch.Tensor:
    """``(code - zero) * step`` with each group's zero and step (as :func:`rtn_codes` returns
    them) repeated over its columns; the result has the dtype of ``steps``."""
    group_size = codes.shape[1] // steps.shape[1]
    return ((codes - zeros.repeat_interleave(group_size, 1))
            * steps.repeat_interleave(group_size, 1))


def rtn_quantize_model(model: Any, bits: int = 4, group_size: int = 64,
                       symmetric: bool = False) -> int:
    """Replace every linear weight of the decoder blocks with its RTN fake-quantized version (in
    place; the embedding and LM head stay as they are, as in GPTQ/AWQ checkpoints). Returns the
    number of layers changed."""
    changed = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
                module.weight.copy_(rtn_quantize(module.weight, bits, group_size, symmetric)[0])
                changed += 1
    return changed


def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, bits: int = 4,
                         group_size: int = 64, symmetric: bool = False, damp: float = 0.01,
                         act_order: bool = True, block: int = 128) -> torch.Tensor:
    """GPTQ (Frantar et al., 2022) on one weight matrix, written out to read: the dequantized
    weight (fake quantization, the same grid as :func:`rtn_quantize`).

    ``hessian`` is ``2 X^T X / n`` of the layer's inputs ``X`` (n tokens x in-features) on
    calibration text. Columns are rounded one at a time; each column's rounding error is spread
    over the columns not yet rounded through the inverse Hessian, so that the layer's *output*
    ``X W^T`` on that text changes as little as possible. ``damp`` (a fraction of the mean
    diagonal added to it) keeps the inverse stable and limits how far weights move for the
    sake of the calibration text. ``act_order``: columns with the largest inputs first, each
    group's grid fixed from the original weights beforehand (GPTQModel's ``act_group_aware``).
    With uncorrelated inputs of equal size (``hessian`` = identity), no error can be
    compensated and GPTQ gives exactly RTN's result.
    """
    if weight.dim() != 2 or hessian.shape != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"expected weight (out, in) and hessian (in, in), got "
                         f"{tuple(weight.shape)} and {tuple(hessian.shape)}")
    rows, cols = weight.shape
    if cols % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {cols} columns")
    W = weight.detach().float().clone()
    H = hessian.detach().float().clone()
    dead = torch.diag(H) == 0  # inputs that were always 0: their weights never matter
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
    levels = 2 ** bits - 1
    order = torch.arange(cols, device=W.device)
    if act_order:  # fixed grids per group, then the most active columns first
        step, zero = _grid(W.reshape(rows, cols // group_size, group_size), bits, symmetric)
        steps, zeros = step.repeat_interleave(group_size, 1), zero.repeat_interleave(group_size, 1)
        order = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, order], H[order][:, order]
        steps, zeros = steps[:, order], zeros[:, order]
    # upper Cholesky factor of H^-1: row i holds how column i's error spreads to later columns
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for start in range(0, cols, block):
        end = min(start + block, cols)
        W1, Hinv1 = W[:, start:end].clone(), Hinv[start:end, start:end]
        errors = torch.zeros_like(W1)
        for j in range(end - start):
            i = start + j
            if act_order:
                step, zero = steps[:, i], zeros[:, i]
            elif i % group_size == 0:  # the group's grid from its weights as updated so far
                step, zero = _grid(W1[:, j:j + group_size], bits, symmetric)
            w = W1[:, j]
            q = (torch.clamp(torch.round(w / step) + zero, 0, levels) - zero) * step
            Q[:, i] = q
            errors[:, j] = (w - q) / Hinv1[j, j]
            W1[:, j:] -= errors[:, j:j + 1] * Hinv1[j, j:].unsqueeze(0)
        W[:, end:] -= errors @ Hinv[start:end, end:]  # the block's errors, to the later columns
    if act_order:
        Q = Q[:, torch.argsort(order)]
    return Q.to(weight.dtype)


def awq_scales(weights: Sequence[torch.Tensor], inputs: torch.Tensor, bits: int = 4,
               group_size: int = 64, grid: int = 20
               ) -> tuple[torch.Tensor, float, list[torch.Tensor]]:
    """AWQ's search (Lin et al., 2023), written out to read, for linears that read the same
    inputs (q/k/v, or gate/up): ``(scales, a, fake-quantized weights)``.

    Input channels with large activations matter most, so their weights get finer steps: each
    input channel ``c`` is scaled by ``s_c = mean|x_c| ** a`` before rounding (on the asymmetric
    grid of :func:`rtn_quantize`) and divided back after, ``W_q = Q(W * s) / s``. In a real model
    the ``1/s`` is folded into the previous norm or linear, so it costs nothing at run time; that
    is why linears sharing an input share ``s``. ``a`` is tried on ``grid + 1`` points in [0, 1]
    and the one with the smallest summed output error on ``inputs`` wins. ``a = 0`` is plain RTN,
    so the result is never worse than RTN on these inputs.
    """
    x = inputs.reshape(-1, inputs.shape[-1]).float()
    ws = [w.detach().float() for w in weights]
    if any(w.shape[1] != x.shape[1] for w in ws):
        raise ValueError("every weight must have as many input features as the inputs")
    mean_abs = x.abs().mean(0).clamp(min=1e-4)
    refs = [x @ w.T for w in ws]
    best: tuple[float, torch.Tensor, float, list[torch.Tensor]] | None = None
    for i in range(grid + 1):
        a = i / grid
        s = mean_abs ** a
        s = s / (s.max() * s.min()).sqrt()  # centre the scales around 1
        quantized = [rtn_quantize(w * s, bits, group_size)[0] / s for w in ws]
        err = sum(float(((x @ q.T - ref) ** 2).sum()) for q, ref in zip(quantized, refs))
        if best is None or err < best[0]:
            best = (err, s, a, quantized)
    _, s, a, quantized = best
    return s, a, [q.to(w.dtype) for q, w in zip(quantized, weights)]


#: AWQ's 4-bit GEMM layout packs eight codes per int32 in this order (AutoAWQ, GPTQModel, vLLM).
AWQ_PACK_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def pack_awq_gemm(codes: torch.Tensor, zeros: torch.Tensor, steps: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """4-bit codes of a linear layer in AWQ's GEMM format: ``qweight``, ``qzeros``, ``scales``.

    ``codes`` (out x in), ``zeros`` and ``steps`` (out x groups) as :func:`rtn_codes` returns
    them. The file stores the transposes, with eight 4-bit values of neighbouring output
    channels in each int32 (in :data:`AWQ_PACK_ORDER`), and fp16 scales: ``qweight`` is
    in x out/8, ``qzeros`` groups x out/8, ``scales`` groups x out.
    """
    if codes.shape[0] % 8:
        raise ValueError(f"AWQ packs 8 output channels per int32: {codes.shape[0]} is not a "
                         "multiple of 8")

    def pack(values: torch.Tensor) -> torch.Tensor:
        v = values.T.to(torch.int64)
        v = v.reshape(v.shape[0], -1, 8)[..., list(AWQ_PACK_ORDER)]
        words = (v << torch.arange(0, 32, 4, device=v.device)).sum(-1)
        return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)

    return {"qweight": pack(codes), "qzeros": pack(zeros),
            "scales": steps.T.contiguous().to(torch.float16)}


class _StopForward(Exception):
    """Raised by :func:`layer_inputs`' hook: nothing after the module is needed."""


def layer_inputs(model: Any, tokenizer: Any, texts: Sequence[str], module: Any) -> torch.Tensor:
    """What ``module`` (a linear layer of ``model``) reads: every token's input on ``texts``
    (tokens x in-features, float32), one forward pass per text. GPTQ builds its Hessian
    ``2 X^T X / n`` from these; AWQ its per-channel activation sizes.

    Each pass stops at ``module``: the blocks after it and the LM head (a fifth of the
    embedded model's arithmetic) are never computed.
    """
    rows: list[torch.Tensor] = []

    def keep(_module: Any, args: tuple[Any, ...]) -> None:
        rows.append(args[0].reshape(-1, args[0].shape[-1]).float())
        raise _StopForward

    handle = module.register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                try:
                    model(ids.to(model.device))
                except _StopForward:
                    pass
    finally:
        handle.remove()
    if len(rows) != len(texts):
        raise ValueError(f"{type(module).__name__} did not run in the forward pass: pass a "
                         "module of this model")
    return torch.cat(rows)


def output_error(weight: torch.Tensor, quantized: torch.Tensor, inputs: torch.Tensor) -> float:
    """Relative error of a layer's output: ``|X (Q - W)^T| / |X W^T|`` on inputs ``X``."""
    x = inputs.reshape(-1, inputs.shape[-1]).float()
    return float((x @ (quantized.float() - weight.float()).T).norm() / (x @ weight.float().T).norm())
