"""Round-to-nearest, GPTQ and AWQ written out to read (lesson 05), AWQ's GEMM packing, and the
measurements they are judged by: the few dozen lines each method really is."""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["rtn_quantize", "rtn_quantize_model", "gptq_quantize_weight", "awq_scales",
           "layer_inputs", "output_error"]


def _check_groups(weight: torch.Tensor, group_size: int) -> None:
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {tuple(weight.shape)}")
    if weight.shape[1] % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {weight.shape[1]} columns")


def _grid(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(step, zero point) per row for a group of columns ``w`` (rows x columns)."""
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
    """Group-wise round-to-nearest, as stored: ``(codes, zeros, steps)``, codes ``0 ..
    2**bits - 1`` shaped like ``weight``, one zero and step per group (rows x groups)."""
    _check_groups(weight, group_size)
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // group_size, group_size)
    step, zero = _grid(w, bits, symmetric)
    codes = torch.clamp(torch.round(w / step.unsqueeze(-1)) + zero.unsqueeze(-1), 0, 2 ** bits - 1)
    return codes.reshape(rows, cols).to(torch.int32), zero.to(torch.int32), step


def rtn_quantize(weight: torch.Tensor, bits: int = 4, group_size: int = 64,
                 symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-wise round-to-nearest: ``(dequantized weight, step size per group)``.

    Asymmetric (default, as AWQ): each group's minimum and maximum span ``2**bits - 1`` steps,
    with a zero point. Symmetric (GPTQ's ``sym=True``): ``-2**(bits-1) .. 2**(bits-1) - 1``
    steps of ``2 max|w| / (2**bits - 1)`` around 0. The error is at most half a step.
    """
    codes, zero, step = rtn_codes(weight, bits, group_size, symmetric)
    return dequantize_codes(codes, zero, step).to(weight.dtype), step


def dequantize_codes(codes: torch.Tensor, zeros: torch.Tensor, steps: torch.Tensor
                     ) -> torch.Tensor:
    """``(code - zero) * step`` per group, in the dtype of ``steps``."""
    group_size = codes.shape[1] // steps.shape[1]
    return ((codes - zeros.repeat_interleave(group_size, 1))
            * steps.repeat_interleave(group_size, 1))


def rtn_quantize_model(model: Any, bits: int = 4, group_size: int = 64,
                       symmetric: bool = False) -> int:
    """RTN fake quantization of every linear of the decoder blocks, in place (the embedding and
    LM head stay, as in GPTQ/AWQ checkpoints). Returns the number of layers changed."""
    changed = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
                module.weight.copy_(rtn_quantize(module.weight, bits, group_size, symmetric)[0])
                changed += 1
    return changed


def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, bits: int = 4,
                         group_size: int = 64, symmetric: bool = False, damp: float = 0.01,
                         act_order: bool = True) -> torch.Tensor:
    """GPTQ (Frantar et al., 2022) on one weight matrix: the dequantized weight, on the grid of
    :func:`rtn_quantize`. ``hessian``: ``2 X^T X / n`` of the layer's inputs ``X``.

    Columns are rounded one at a time; each one's error is spread over the columns not yet
    rounded through the inverse Hessian, so the output ``X W^T`` changes as little as possible.
    ``damp`` (a fraction of the mean diagonal) keeps the inverse stable. ``act_order``: largest
    inputs first, each group's grid fixed beforehand (GPTQModel's ``act_group_aware``).
    """
    if hessian.shape != (weight.shape[-1],) * 2:
        raise ValueError(f"expected weight (out, in) and hessian (in, in), got "
                         f"{tuple(weight.shape)} and {tuple(hessian.shape)}")
    _check_groups(weight, group_size)
    rows, cols = weight.shape
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
    for i in range(cols):  # (GPTQModel does the same in blocks of 128 columns, for speed)
        if act_order:
            step, zero = steps[:, i], zeros[:, i]
        elif i % group_size == 0:  # the group's grid from its weights as updated so far
            step, zero = _grid(W[:, i:i + group_size], bits, symmetric)
        Q[:, i] = (torch.clamp(torch.round(W[:, i] / step) + zero, 0, levels) - zero) * step
        error = (W[:, i] - Q[:, i]) / Hinv[i, i]
        W[:, i:] -= error.unsqueeze(1) * Hinv[i, i:].unsqueeze(0)
    if act_order:
        Q = Q[:, torch.argsort(order)]
    return Q.to(weight.dtype)


def awq_scales(weights: Sequence[torch.Tensor], inputs: torch.Tensor, bits: int = 4,
               group_size: int = 64, grid: int = 20
               ) -> tuple[torch.Tensor, float, list[torch.Tensor]]:
    """AWQ's search (Lin et al., 2023) for linears that read the same inputs (q/k/v, or
    gate/up): ``(scales, a, fake-quantized weights)``.

    ``W_q = Q(W * s) / s`` with ``s_c = mean|x_c| ** a``: channels with large activations get
    finer steps. ``1/s`` is folded into the previous norm or linear (hence linears sharing an
    input share ``s``). The ``a`` of ``grid + 1`` in [0, 1] with the smallest output error on
    ``inputs`` wins; ``a = 0`` is RTN.
    """
    x = inputs.reshape(-1, inputs.shape[-1]).float()
    ws = [w.detach().float() for w in weights]
    if any(w.shape[1] != x.shape[1] for w in ws):
        raise ValueError("every weight must have as many input features as the inputs")
    mean_abs = x.abs().mean(0).clamp(min=1e-4)
    refs = [x @ w.T for w in ws]

    def trial(a: float) -> tuple[float, torch.Tensor, float, list[torch.Tensor]]:
        s = mean_abs ** a
        s = s / (s.max() * s.min()).sqrt()  # centre the scales around 1
        quantized = [rtn_quantize(w * s, bits, group_size)[0] / s for w in ws]
        err = sum(float(((x @ q.T - ref) ** 2).sum()) for q, ref in zip(quantized, refs))
        return err, s, a, quantized

    _, s, a, quantized = min((trial(i / grid) for i in range(grid + 1)), key=lambda t: t[0])
    return s, a, [q.to(w.dtype) for q, w in zip(quantized, weights)]


def pack_awq_gemm(codes: torch.Tensor, zeros: torch.Tensor, steps: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """4-bit :func:`rtn_codes` of a linear in AWQ's GEMM format (AutoAWQ, GPTQModel, vLLM).

    The file stores the transposes, eight 4-bit values of neighbouring output channels per
    int32 in the order 0 2 4 6 1 3 5 7, and fp16 scales: ``qweight`` in x out/8, ``qzeros``
    groups x out/8, ``scales`` groups x out.
    """
    if codes.shape[0] % 8:
        raise ValueError(f"AWQ packs 8 output channels per int32: {codes.shape[0]} is not a "
                         "multiple of 8")

    def pack(values: torch.Tensor) -> torch.Tensor:
        v = values.T.to(torch.int64)
        v = v.reshape(v.shape[0], -1, 8)[..., [0, 2, 4, 6, 1, 3, 5, 7]]
        words = (v << torch.arange(0, 32, 4, device=v.device)).sum(-1)
        return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)

    return {"qweight": pack(codes), "qzeros": pack(zeros),
            "scales": steps.T.contiguous().to(torch.float16)}


class _StopForward(Exception):
    """Raised by :func:`layer_inputs`' hook: nothing after the module is needed."""


def layer_inputs(model: Any, tokenizer: Any, texts: Sequence[str], module: Any) -> torch.Tensor:
    """Every token's input to ``module`` (a linear of ``model``) on ``texts``: tokens x
    in-features, float32, one forward pass per text, stopped at ``module`` (the later blocks
    and the LM head are never computed)."""
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
    w = weight.float()
    return float((x @ (quantized.float() - w).T).norm() / (x @ w.T).norm())
