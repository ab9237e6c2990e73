"""Quantize a model (GPTQ, AWQ, int8 weight-only), and measure what it costs and saves.

Yi's published ``-8bits`` (GPTQ) and ``-4bits`` (AWQ) chat models were made with AutoGPTQ and
AutoAWQ. Both are unmaintained and fail with transformers 5. GPTQModel (pinned 7.6.0) carries GPTQ
on and quantizes on a CPU. AWQ is written out in this module (GPTQModel's AWQ runs only in bf16 on
a CPU, 3 minutes for 8 conversations here, and needs ``sym=False`` for AWQ's zero-point grid); its
files are in AWQ's own GEMM format, which transformers loads through GPTQModel's kernels. torchao
does int8 weight-only in seconds::

    result = quantize("embedded", "gptq", bits=4, group_size=64, out_dir="q4")
    model, tokenizer = load_quantized("q4")     # or yi_helpers.load("q4") for AWQ and torchao

Unsupported combinations (AWQ 8-bit, 3 bits, a group size the layers cannot be split into, a
missing back end) raise :class:`UnsupportedQuantizationError` before any work starts.

Also here: group-wise round-to-nearest (``rtn_quantize``), the baseline GPTQ and AWQ improve on;
``perplexity``; ``decode_tokens_per_s``; sizes on disk; the size ratio a format gives a model.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from .chat import default_template, render
from .models import ModelSpec, spec, weight_bytes

#: method -> supported bits. ``gptq`` comes from GPTQModel; ``awq`` is written out here (scale
#: search, folding, AWQ's GEMM file format) and loads through GPTQModel's kernels;
#: ``int8-weight-only`` comes from torchao. ``rtn`` (round-to-nearest fake quantization) is in
#: this module, for comparison only.
SUPPORTED: dict[str, tuple[int, ...]] = {"gptq": (8, 4), "awq": (4,), "int8-weight-only": (8,)}
BACKENDS = {"gptq": "gptqmodel", "awq": "gptqmodel", "int8-weight-only": "torchao"}
DEFAULT_CALIBRATION_SAMPLES = 32


class UnsupportedQuantizationError(ValueError):
    """A method / bits / group size combination, or a back end, that this hub cannot quantize."""


def _supported_text() -> str:
    return ", ".join(f"{m} ({'/'.join(map(str, b))}-bit)" for m, b in SUPPORTED.items())


def check_supported(method: str, bits: int, group_size: int = 128,
                    widths: Sequence[int] = ()) -> None:
    """Raise :class:`UnsupportedQuantizationError` unless ``method`` can quantize to ``bits``
    with ``group_size`` on layers whose input widths are ``widths``, with its back end installed."""
    if method not in SUPPORTED:
        raise UnsupportedQuantizationError(
            f"Unknown method {method!r}. Supported: {_supported_text()}.")
    if bits not in SUPPORTED[method]:
        raise UnsupportedQuantizationError(
            f"{method} does not do {bits}-bit here. Supported: {_supported_text()}.")
    if method != "int8-weight-only":
        if not isinstance(group_size, int) or group_size <= 0:
            raise UnsupportedQuantizationError(f"group_size must be a positive integer, got "
                                               f"{group_size!r}")
        bad = sorted({w for w in widths if w % group_size})
        if bad:
            fits = [g for g in (128, 64, 32) if all(w % g == 0 for w in widths)]
            raise UnsupportedQuantizationError(
                f"group_size={group_size} does not divide the layer widths {bad}: use "
                f"group_size={fits[0] if fits else 'a divisor of every width'} (the embedded "
                "model's 576 needs 64; Yi's 4096/11008/7168/20480 take 128).")
    package = BACKENDS[method]
    if importlib.util.find_spec(package) is None:
        pin = "gptqmodel==7.6.0" if package == "gptqmodel" else package
        raise UnsupportedQuantizationError(
            f"{method} needs the {package!r} package, which is not installed: "
            f"`pip install {pin}` (or `make setup`). Supported here: {_supported_text()}.")


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


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------

def calibration_texts(tokenizer: Any, calibration: Any = None,
                      n: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0) -> list[str]:
    """Calibration texts: chat-formatted through the tokenizer's chat template.

    ``calibration`` is ``None`` (the hub's bilingual calibration set,
    ``corpus.calibration_conversations()``: 32 conversations on everyday topics),
    or a list of strings, of conversations (lists of messages), or of ``{"messages": ...}`` rows.
    At most ``n`` samples are kept, drawn with ``seed``.
    """
    if calibration is None:
        from .corpus import calibration_conversations

        calibration = calibration_conversations()
    if isinstance(calibration, (str, bytes)) or not isinstance(calibration, Sequence):
        raise ValueError("calibration must be a list of texts or conversations")
    items = list(calibration)
    if n and len(items) > n:
        items = random.Random(seed).sample(items, n)
    template = default_template(tokenizer)
    texts = []
    for item in items:
        if isinstance(item, Mapping) and "messages" in item:
            item = item["messages"]
        texts.append(item if isinstance(item, str) else
                     render(item, add_generation_prompt=False, template=template))
    if not texts:
        raise ValueError("calibration is empty: pass a few texts or conversations")
    return texts


# ---------------------------------------------------------------------------------------------
# quantize()
# ---------------------------------------------------------------------------------------------

@dataclass
class QuantizeResult:
    """What :func:`quantize` made: the folder, the settings, the time it took."""

    out_dir: Path
    method: str
    bits: int
    group_size: int | None
    seconds: float
    n_calibration: int
    before_save: Any = dataclasses.field(default=None, repr=False)  # what before_save returned
    log: str = dataclasses.field(default="", repr=False)  # the back end's console output

    @property
    def size_bytes(self) -> int:
        return disk_size(self.out_dir)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture the back ends' very long console logs (tables, progress bars) in a buffer."""
    import logging

    buffer = io.StringIO()
    levels = {name: logging.getLogger(name).level for name in ("tokenicer", "gptqmodel", "torchao")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _source_folder(model_or_path: Any, tokenizer: Any, scratch: Path) -> tuple[Path, Any]:
    """A folder holding the model's safetensors and tokenizer (GPTQModel loads from a folder)."""
    from transformers import AutoTokenizer

    if isinstance(model_or_path, (str, os.PathLike)):
        name = os.fspath(model_or_path)
        if name == "embedded":
            from .embedded import prepare

            folder = Path(prepare(verbose=False))
        else:
            folder = Path(name).expanduser()
            if not folder.is_dir():
                raise ValueError(f"{name!r} is not a folder: pass 'embedded', a local folder, or "
                                 "a loaded model with tokenizer=...")
        return folder, tokenizer or AutoTokenizer.from_pretrained(folder)
    if tokenizer is None:
        raise ValueError("pass tokenizer=... with a loaded model")
    folder = scratch / "source"
    model_or_path.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def _layer_widths(folder: Path) -> list[int]:
    config = json.loads((folder / "config.json").read_text())
    return [w for w in (config.get("hidden_size"), config.get("intermediate_size")) if w]


def quantize(model_or_path: Any, method: str, *, bits: int, group_size: int = 128,
             calibration: Any = None, out_dir: str | os.PathLike, tokenizer: Any = None,
             n_calibration: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0,
             before_save: Callable[[Any], Any] | None = None, verbose: bool = False
             ) -> QuantizeResult:
    """Quantize a model and save a loadable folder to ``out_dir`` (replaced if it exists).

    Args:
        model_or_path: ``"embedded"``, a local model folder, or a loaded model (with ``tokenizer``).
        method: ``"gptq"`` (8 or 4 bit), ``"awq"`` (4 bit) or ``"int8-weight-only"`` (torchao).
        bits, group_size: weight bits, and columns sharing one scale (GPTQ/AWQ; 64 for the
            embedded model, whose width 576 is not a multiple of 128; Yi uses 128).
        calibration: GPTQ/AWQ calibration data, see :func:`calibration_texts` (default: the hub's
            chat data set through the chat template); ``n_calibration`` samples are used.
        before_save: called with the quantized model in memory, before it is saved: for GPTQ
            and AWQ a float32 model holding exactly the weights the saved folder dequantizes to
            (for GPTQ a copy made ready as GPTQModel's loader would, see :func:`_gptq_as_saved`);
            for int8 weight-only torchao's model itself. What it returns is kept in
            ``result.before_save``. Its time is not counted in ``result.seconds``.
        verbose: show the back end's own (long) log instead of keeping it in ``result.log``.

    Returns a :class:`QuantizeResult` (folder, seconds, what ``before_save`` returned).
    Reload with :func:`load_quantized` (or ``yi_helpers.load`` for AWQ and int8 weight-only).
    """
    check_supported(method, bits, group_size)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="yi-quantize-") as tmp:
        folder, tokenizer = _source_folder(model_or_path, tokenizer, Path(tmp))
        check_supported(method, bits, group_size, _layer_widths(folder))
        texts = (calibration_texts(tokenizer, calibration, n_calibration, seed)
                 if method in ("gptq", "awq") else [])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        hook_seconds = [0.0]

        def hook(model: Any) -> Any:
            begin = time.perf_counter()
            try:
                return before_save(model)
            finally:
                hook_seconds[0] += time.perf_counter() - begin

        hook_or_none = hook if before_save is not None else None
        context = contextlib.nullcontext(io.StringIO()) if verbose else quiet()
        with context as log:
            start = time.perf_counter()
            if method == "int8-weight-only":
                seen = _torchao_int8(folder, out_dir, hook_or_none)
            elif method == "awq":
                seen = _awq(folder, tokenizer, bits, group_size, texts, out_dir, hook_or_none,
                            seed)
            else:
                seen = _gptqmodel(folder, tokenizer, bits, group_size, texts, out_dir,
                                  Path(tmp) / "logs", hook_or_none)
            seconds = time.perf_counter() - start - hook_seconds[0]
        tokenizer.save_pretrained(out_dir)
    return QuantizeResult(out_dir=out_dir, method=method, bits=bits,
                          group_size=None if method == "int8-weight-only" else group_size,
                          seconds=seconds, n_calibration=len(texts), before_save=seen,
                          log=log.getvalue())


def _torchao_int8(folder: Path, out_dir: Path, before_save: Callable[[Any], Any] | None) -> Any:
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, use_safetensors=True,
        quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    model.eval()
    seen = before_save(model) if before_save else None
    model.save_pretrained(out_dir)
    return seen


#: Calibration tokens (drawn at random from all the texts) on which AWQ compares its scales.
AWQ_SEARCH_TOKENS = 256


def _llama_layers(model: Any) -> Any:
    layers = getattr(getattr(model, "model", None), "layers", None)
    needed = ("input_layernorm", "post_attention_layernorm", "self_attn", "mlp")
    if layers is None or not all(hasattr(layer, n) for layer in layers for n in needed):
        raise UnsupportedQuantizationError(
            "awq here folds its scales into Llama-style blocks (the embedded model, Yi): "
            f"{type(model).__name__} has another layout; use method='gptq'.")
    return layers


def _awq_inputs(model: Any, tokenizer: Any, texts: list[str], tokens: int, seed: int
                ) -> dict[tuple[int, str], torch.Tensor]:
    """Inputs of every block's q/k/v, gate/up and down projections on ``tokens`` calibration
    tokens drawn at random (one float forward pass per text)."""
    ids = [tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"] for t in texts]
    lengths = [x.shape[1] for x in ids]
    picks = torch.randperm(sum(lengths), generator=torch.Generator().manual_seed(seed))[:tokens]
    rows: dict[tuple[int, str], list[torch.Tensor]] = {}
    current: list[torch.Tensor] = []

    def hook(key: tuple[int, str]) -> Callable[..., None]:
        def keep(_module: Any, args: tuple[Any, ...]) -> None:
            rows.setdefault(key, []).append(args[0][0, current[0]].float())
        return keep

    handles = []
    for i, layer in enumerate(_llama_layers(model)):
        for name, module in (("attn", layer.self_attn.q_proj), ("mlp", layer.mlp.gate_proj),
                             ("down", layer.mlp.down_proj)):
            handles.append(module.register_forward_pre_hook(hook((i, name))))
    try:
        start = 0
        with torch.no_grad():
            for x, n in zip(ids, lengths):
                mine = picks[(picks >= start) & (picks < start + n)] - start
                start += n
                if len(mine):
                    current[:] = [mine]
                    model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {key: torch.cat(value) for key, value in rows.items()}


def _awq(folder: Path, tokenizer: Any, bits: int, group_size: int, texts: list[str],
         out_dir: Path, before_save: Callable[[Any], Any] | None, seed: int) -> Any:
    """AWQ written out: search the scales (:func:`awq_scales`), fold them into the previous norm
    or linear, round on the asymmetric grid, save in AWQ's GEMM format (``zero_point: true``,
    as Yi's ``-4bits`` models), which transformers loads through GPTQModel's kernels.

    Scales are searched for q/k/v (folded into ``input_layernorm``), gate/up (into
    ``post_attention_layernorm``) and down (into ``up_proj``); ``o_proj`` is rounded as it is
    (its input is the attention output, which grouped-query attention cannot rescale per
    channel through ``v_proj``: AWQ skips it as well).
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    model.eval()
    layers = _llama_layers(model)
    inputs = _awq_inputs(model, tokenizer, texts, AWQ_SEARCH_TOKENS, seed)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            attn, mlp = layer.self_attn, layer.mlp
            for key, norm, linears in (("attn", layer.input_layernorm,
                                        (attn.q_proj, attn.k_proj, attn.v_proj)),
                                       ("mlp", layer.post_attention_layernorm,
                                        (mlp.gate_proj, mlp.up_proj))):
                scales, _, _ = awq_scales([m.weight for m in linears], inputs[i, key], bits,
                                          group_size)
                norm.weight.div_(scales)
                for m in linears:
                    m.weight.mul_(scales)
            scales, _, _ = awq_scales([mlp.down_proj.weight], inputs[i, "down"], bits, group_size)
            mlp.up_proj.weight.div_(scales.unsqueeze(1))
            mlp.down_proj.weight.mul_(scales)
        packed: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
                codes, zeros, steps = rtn_codes(module.weight, bits, group_size)
                for part, tensor in pack_awq_gemm(codes, zeros, steps).items():
                    packed[f"{name}.{part}"] = tensor
                # in memory: what the file dequantizes to, (code - zero) * fp16 step
                module.weight.copy_(dequantize_codes(codes, zeros, steps.half()))
        quantized = {f"{name.rpartition('.')[0]}.weight" for name in packed}
        for name, param in model.named_parameters():
            if name not in quantized:  # the rest is stored in bf16: hold those values too
                param.copy_(param.to(torch.bfloat16))
    seen = before_save(model) if before_save else None
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
               if k not in quantized}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    tensors.update(packed)
    out_dir.mkdir(parents=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    model.config.dtype = "bfloat16"
    model.config.quantization_config = {
        "quant_method": "awq", "bits": bits, "group_size": group_size, "zero_point": True,
        "version": "gemm", "modules_to_not_convert": None}
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    return seen


def _import_gptqmodel():
    # GPTQModel sizes its CPU worker pool at import; on a 2-core machine its own default fails
    # ("requests 2 workers but parent 'cpu' only has 1").
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(2, os.cpu_count() or 1))))
    from .system import quiet_gptqmodel_banner

    quiet_gptqmodel_banner()
    import gptqmodel

    return gptqmodel


def _gptqmodel(folder: Path, tokenizer: Any, bits: int, group_size: int, texts: list[str],
               out_dir: Path, log_dir: Path, before_save: Callable[[Any], Any] | None) -> Any:
    """GPTQ through GPTQModel, saved to ``out_dir``; returns what ``before_save`` returned."""
    _import_gptqmodel()
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.looper import loop_processor

    # GPTQModel writes per-layer log files to ./logs of the working directory: keep them out
    # of the notebook's folder.
    loop_processor._PROJECT_LOG_DIR = log_dir
    # true_sequential=False: the seven linears of a block are calibrated on one pass over the
    # block's inputs, instead of four passes (q/k/v, o, gate/up, down, each after the ones before
    # it are quantized). GPTQ 4-bit, 32 conversations, on the 2-core CPU: 86-106 s instead of
    # 133-152 s, held-out perplexity en 39.32 / zh 22.09 instead of 39.95 / 22.20.
    config = QuantizeConfig(bits=bits, group_size=group_size, offload_to_disk=False,
                            true_sequential=False)
    # In float32 on the CPU: most of GPTQ's time goes into the calibration forward passes, and
    # bf16 matmuls are several times slower on CPUs without bf16 instructions (GPTQ 4-bit with
    # 32 calibration conversations: 106 s in float32 here; bf16 took longer with a quarter of
    # the tokens).
    wrapper = GPTQModel.load(str(folder), config, device="cpu", dtype=torch.float32)
    wrapper.quantize(texts, tokenizer=tokenizer)
    seen = before_save(_gptq_as_saved(wrapper.model)) if before_save else None
    wrapper.save(str(out_dir))
    _store_16bit(out_dir)
    return seen


def _gptq_as_saved(model: Any) -> Any:
    """A float32 copy of GPTQModel's model right after ``quantize()``, holding exactly the weights
    its saved folder loads and dequantizes to.

    The model itself is not ready for inference: GPTQModel 7.6.0's layers hold the zero points
    in the checkpoint's v1 layout (``zero - 1``), which only its loader converts for the kernels,
    so every weight in memory is exactly one step off. The copy gets the loader's conversion and
    the 16-bit values the folder stores (bf16, as it loads), then :func:`dequantize`.
    """
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module

    ready = copy.deepcopy(model)
    for module in ready.modules():
        if isinstance(module, BaseQuantLinear) and getattr(module, "REQUIRES_FORMAT_V2", False):
            convert_gptq_v1_to_v2_format_module(module, module.bits, module.pack_dtype)
    return dequantize(torch.nn.Module.to(ready, torch.bfloat16))


def _store_16bit(folder: Path) -> None:
    """Rewrite a saved folder's float32 tensors in 16 bits, as quantized checkpoints ship: the
    float32 load above would otherwise store the embedding (a fifth of the embedded model) in
    float32. Scales in fp16 (the GPTQ convention), everything else in bf16."""
    from safetensors.torch import load_file, save_file

    for path in folder.glob("*.safetensors"):
        tensors = load_file(str(path))
        if not any(t.dtype == torch.float32 for t in tensors.values()):
            continue
        for name, t in tensors.items():
            if t.dtype == torch.float32:
                tensors[name] = t.to(torch.float16 if name.endswith(".scales") else torch.bfloat16)
        save_file(tensors, str(path), metadata={"format": "pt"})
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "bfloat16"
    config.pop("torch_dtype", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def eager(model: Any) -> Any:
    """Undo GPTQModel's ``torch.compile`` of its CPU dequantize step (in place).

    On a CPU the compiled function recompiles again and again during generation (8-bit GPTQ
    decoded at about 3 tokens/s); the eager function is the same maths.
    """
    for module in model.modules():
        if "dequantize_weight" in vars(module):
            del module.dequantize_weight  # the class's own (eager) method shows through again
    return model


# ---------------------------------------------------------------------------------------------
# Loading a quantized folder back
# ---------------------------------------------------------------------------------------------

def quantization_config(folder: str | os.PathLike) -> dict:
    """The ``quantization_config`` of a folder's ``config.json``; ``{}`` for a plain model."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return config.get("quantization_config") or {}


def quant_method(folder: str | os.PathLike) -> str | None:
    """``"gptq"``, ``"awq"``, ``"torchao"``... from a folder's ``config.json``; None if plain."""
    return quantization_config(folder).get("quant_method")


#: GPTQModel's kernel for GPTQ and AWQ layers, by device type. On a GPU its own choice
#: (``"auto"``) is a kernel it builds on first use: Machete on an H100 / H200 downloads CUTLASS
#: and compiles for minutes, Marlin compiles with nvcc; offline that fails. ``"torch"`` (plain
#: PyTorch, about 80% of the Triton kernel's speed by GPTQModel's own account) builds nothing.
#: On a CPU GPTQModel's choice is kept (what the lessons were measured with).
KERNEL_BY_DEVICE = {"cuda": "torch"}


def kernel_backend(device: str, backend: str | None = None) -> str | None:
    """The GPTQModel kernel ``load_quantized`` asks for on ``device``: ``backend`` when given
    (``"auto"`` lets GPTQModel pick, and build, the fastest), else ``KERNEL_BY_DEVICE``'s entry
    for the device type; None: GPTQModel's own choice."""
    if backend is not None:
        return backend
    return KERNEL_BY_DEVICE.get(str(device).split(":")[0])


def load_quantized(folder: str | os.PathLike, *, device: str = "cpu", dtype: Any = None,
                   backend: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a folder :func:`quantize` wrote, or from a quantized hub
    model (``"01-ai/Yi-6B-Chat-4bits"``: downloaded first, safetensors only), greedy and
    stopping at ``<|im_end|>`` like ``yi_helpers.load``.

    GPTQ folders load through GPTQModel (transformers would need the ``optimum`` package);
    everything else through ``yi_helpers.load``. ``dtype`` defaults to bfloat16 for quantized
    folders (the dtype they were quantized in). ``backend``: the GPTQ / AWQ kernel
    (:func:`kernel_backend`: ``"torch"`` on a GPU unless you pass ``"auto"``, ``"triton"``,
    ``"marlin"``...).

    Raises:
        FileNotFoundError: neither a folder with a ``config.json`` nor a hub id.
        ModelNotAvailableError: a hub id that is not cached while the hub is unreachable.
    """
    from .devices import resolve_device, resolve_dtype
    from .loading import configure_chat_stopping, download, is_hub_id, load

    folder = download(folder) if is_hub_id(folder) else Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a model folder (no config.json): pass the out_dir that quantize() "
            "wrote, or a quantized model's hub id such as '01-ai/Yi-6B-Chat-4bits'.")
    quant = quantization_config(folder)
    method = quant.get("quant_method")
    dtype = dtype or ("bfloat16" if method else "auto")
    kernel = kernel_backend(resolve_device(device), backend)
    if method == "awq" and kernel is not None:  # transformers hands AWQ layers to GPTQModel
        from transformers import AwqConfig

        # transformers names GPTQModel's AWQ kernels itself: "torch_awq", "gemm", "marlin"...
        config = AwqConfig.from_dict({**quant, "backend": "torch_awq" if kernel == "torch" else kernel})
        with warnings.catch_warnings():  # "loading attributes ... will be overwritten": wanted
            warnings.filterwarnings("ignore", message=".*already has a `quantization_config`")
            return load(str(folder), device=device, dtype=dtype, quantization_config=config)
    if method != "gptq":
        return load(str(folder), device=device, dtype=dtype)
    from transformers import AutoTokenizer

    _import_gptqmodel()
    from gptqmodel import GPTQModel

    with quiet():
        wrapper = GPTQModel.load(str(folder), device=device, dtype=resolve_dtype(dtype, device),
                                 **({"backend": kernel} if kernel else {}))
    model = eager(wrapper.model)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    configure_chat_stopping(model, tokenizer)
    return model, tokenizer


def _dense_weight(module: Any) -> torch.Tensor | None:
    """The (out, in) float32 weight a GPTQ or AWQ layer of GPTQModel, or a linear holding a
    torchao quantized weight, computes with; else None."""
    weight = getattr(module, "weight", None)
    if isinstance(module, torch.nn.Linear) and type(weight).__module__.startswith("torchao"):
        return weight.dequantize().float()  # int8 codes x their scales
    if not hasattr(module, "qweight"):
        return None
    if hasattr(module, "dequantize_weight"):  # GPTQ layers return (in, out)
        return eager(module).dequantize_weight().T.float()
    if "Awq" in type(module).__name__:
        from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm

        return dequantize_gemm(module.qweight, module.qzeros, module.scales, module.bits,
                               module.group_size).T.float()
    return None


def dense_copy(model: Any, folder: str | os.PathLike) -> Any:
    """A float32 copy of a loaded quantized ``model`` holding the weights its ``folder`` stores,
    on the model's device (the model itself is kept, with its kernels, for timing).

    On a CPU: :func:`dequantize` of a ``copy.deepcopy`` (call it before the model's first
    forward pass). On a GPU the copy is dequantized from a fresh CPU load of ``folder``: the
    CUDA kernels GPTQModel picks there (Marlin, Machete, ExLlama) repack the weights and cannot
    give them back.
    """
    device = next(model.parameters()).device
    if device.type == "cpu":
        return dequantize(copy.deepcopy(model))
    return dequantize(load_quantized(folder, device="cpu")[0]).to(device)


def dequantize(model: Any) -> Any:
    """Replace every GPTQ, AWQ or torchao int8 layer of a loaded model by a float32
    ``nn.Linear`` holding the weights it dequantizes to, and cast the model to float32 (in
    place; returns it).

    The weights are the same numbers; only the arithmetic is float32. For measuring accuracy
    fast and exactly: GPTQModel's 8-bit CPU layer computes in bf16, and on CPUs without bf16
    instructions its perplexity on 1,400 tokens took minutes; its int4 kernels round
    differently from a float matmul. Call it on a freshly loaded model, or on a copy of one
    (``dequantize(copy.deepcopy(model))`` keeps the kernels for timing): the int4 CPU kernels
    repack their weights at the first forward pass, after which they no longer dequantize.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        try:
            weight = _dense_weight(module)
        except (RuntimeError, NotImplementedError, ValueError) as err:
            raise ValueError(
                f"{name} no longer dequantizes ({err}): it ran a forward pass already. "
                "Call dequantize(load_quantized(folder)[0]) on a fresh load, or on a "
                "copy.deepcopy of it made before its first use.") from err
        if weight is None:
            continue
        bias = getattr(module, "bias", None)
        dense = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                device=weight.device)
        with torch.no_grad():
            dense.weight.copy_(weight)
            if bias is not None:
                dense.bias.copy_(bias.float())
        model.set_submodule(name, dense)
        replaced += 1
    if not replaced:
        raise ValueError("no GPTQ, AWQ or torchao layers found: dequantize() is for models "
                         "that load_quantized loaded from a folder quantize() wrote")
    # transformers refuses .float() on a model it loaded quantized; every layer is plain now
    return torch.nn.Module.float(model)


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------

def disk_size(folder: str | os.PathLike) -> int:
    """Bytes of the weight files (``*.safetensors``) in a folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def _nbytes(t: torch.Tensor) -> int:
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None and type(t) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = flatten()  # a tensor subclass (torchao): count the tensors inside it
        return sum(_nbytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def memory_bytes(model: Any) -> int:
    """Bytes of a model's parameters and buffers, packed quantized tensors included (torchao's
    int8 tensors are counted by the int8 data and scales inside them). Shared tensors once."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        try:
            key = t.untyped_storage().data_ptr()
        except RuntimeError:  # tensor subclasses have no single storage
            key = id(t)
        if key in seen:
            continue
        seen.add(key)
        total += _nbytes(t)
    return total


def perplexity(model: Any, tokenizer: Any, text: str, *, window: int = 512) -> float:
    """Perplexity of ``text``: exp of the mean next-token loss, over consecutive windows of at
    most ``window`` tokens (each window starts fresh; fine for texts of a few hundred tokens)."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if len(ids) < 2:
        raise ValueError("text is too short for perplexity (needs at least 2 tokens)")
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start:start + window + 1].unsqueeze(0).to(model.device)
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum")
            total += float(loss)
            count += chunk.shape[1] - 1
    return float(torch.exp(torch.tensor(total / count)))


def decode_tokens_per_s(model: Any, tokenizer: Any, prompt: str = "Tell me about the sea.",
                        new_tokens: int = 32, warmup: int = 4) -> float:
    """Greedy decoding speed, batch 1, in generated tokens per second (after a short warm-up;
    ``new_tokens`` are forced, no early stop)."""
    messages = [{"role": "user", "content": prompt}]
    inputs = tokenizer(render(messages, template=default_template(tokenizer)),
                       add_special_tokens=False, return_tensors="pt").to(model.device)
    kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                  pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=warmup, min_new_tokens=warmup, **kwargs)
        start = time.perf_counter()
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    return new_tokens / (time.perf_counter() - start)


def size_ratio(model: str | ModelSpec, bits: int, group_size: int | None = None) -> float:
    """Weights at ``bits`` (decoder linear layers; embedding, LM head and norms 16-bit, plus one
    scale and zero point per group) divided by the 16-bit weights, from the config alone."""
    s = spec(model)
    if group_size is not None:
        s = dataclasses.replace(s, group_size=group_size)
    return weight_bytes(s, bits) / weight_bytes(s, 16)
