"""``quantize()``: a model in, a loadable quantized folder out (lesson 05).

Yi's published ``-8bits`` (GPTQ) and ``-4bits`` (AWQ) chat models were made with AutoGPTQ and
AutoAWQ. Both are unmaintained and fail with transformers 5. GPTQModel (pinned 7.6.0) carries GPTQ
on and quantizes on a CPU. AWQ is written out here (GPTQModel's AWQ runs only in bf16 on a CPU,
3 minutes for 8 conversations here, and needs ``sym=False`` for AWQ's zero-point grid), from
the algorithms of :mod:`.algorithms`; its files are in AWQ's own GEMM format, which
transformers loads through GPTQModel's kernels. torchao does int8 weight-only in seconds::

    result = quantize("embedded", "gptq", bits=4, group_size=64, out_dir="q4")
    model, tokenizer = yi_helpers.load("q4")

Unsupported combinations (AWQ 8-bit, 3 bits, a group size the layers cannot be split into, a
missing back end) raise :class:`UnsupportedQuantizationError` before any work starts.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..chat import default_template, render
from ..resolve import resolve_model
from ..system import import_gptqmodel, quiet_backends
from .algorithms import awq_scales, dequantize_codes, pack_awq_gemm, rtn_codes
from .reload import dequantize, disk_size

__all__ = ["UnsupportedQuantizationError", "calibration_texts", "quantize"]

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
        from ..corpus import calibration_conversations

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




def _source_folder(model_or_path: Any, tokenizer: Any, scratch: Path) -> tuple[Path, Any]:
    """A folder holding the model's safetensors and tokenizer (GPTQModel loads from a folder):
    a name through :func:`yi_helpers.resolve.resolve_model` (a hub id is downloaded, or found in
    the cache), or a loaded model saved to ``scratch``."""
    from transformers import AutoTokenizer

    if isinstance(model_or_path, (str, os.PathLike)):
        source = resolve_model(model_or_path).local()
        if source.quant_method:
            raise UnsupportedQuantizationError(
                f"{os.fspath(model_or_path)!r} is quantized already ({source.quant_method}): "
                "quantize the 16-bit model it came from.")
        folder = Path(source.location)
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
             before_save: Callable[[Any], Any] | None = None, verbose: bool = False,
             device: str = "cpu", gptq_options: Mapping[str, Any] | None = None
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
        device: where the model is loaded and quantized: ``"cpu"`` (float32 there: bf16
            matmuls are slow on CPUs without bf16 instructions) or ``"cuda"`` (GPTQ calibrates
            in bf16 there; AWQ keeps float32, so a 6B model needs about 24 GB of GPU memory for
            its copy). The saved folder is the same format either way.
        gptq_options: more GPTQModel ``QuantizeConfig`` fields for ``method="gptq"``
            (``damp_percent``, ``act_group_aware``, ``desc_act``; ``tools/gptq_sweep.py`` compares
            them). ``sym=False`` is refused: GPTQModel 7.6's asymmetric folders reload broken.

    Returns a :class:`QuantizeResult` (folder, seconds, what ``before_save`` returned).
    Reload with ``yi_helpers.load(out_dir)``.
    """
    check_supported(method, bits, group_size)
    gptq_options = dict(gptq_options or {})
    if gptq_options and method != "gptq":
        raise ValueError(f"gptq_options are for method='gptq', not {method!r}")
    if gptq_options.get("sym") is False:
        raise UnsupportedQuantizationError(
            "sym=False: GPTQModel 7.6's asymmetric GPTQ folders reload broken (perplexity in the "
            "millions); use the symmetric grid, or method='awq' for a zero-point grid.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but torch sees no CUDA GPU: quantize with "
                           "device='cpu' (slow for a 6B model) or on a GPU machine.")
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
        context = contextlib.nullcontext(io.StringIO()) if verbose else quiet_backends()
        with context as log:
            start = time.perf_counter()
            if method == "int8-weight-only":
                seen = _torchao_int8(folder, out_dir, hook_or_none, device)
            elif method == "awq":
                seen = _awq(folder, tokenizer, bits, group_size, texts, out_dir, hook_or_none,
                            seed, device)
            else:
                seen = _gptqmodel(folder, tokenizer, bits, group_size, texts, out_dir,
                                  Path(tmp) / "logs", hook_or_none, device, gptq_options)
            seconds = time.perf_counter() - start - hook_seconds[0]
        tokenizer.save_pretrained(out_dir)
    return QuantizeResult(out_dir=out_dir, method=method, bits=bits,
                          group_size=None if method == "int8-weight-only" else group_size,
                          seconds=seconds, n_calibration=len(texts), before_save=seen,
                          log=log.getvalue())


def _torchao_int8(folder: Path, out_dir: Path, before_save: Callable[[Any], Any] | None,
                  device: str = "cpu") -> Any:
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, use_safetensors=True,
        device_map=None if device == "cpu" else device,
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
            rows.setdefault(key, []).append(args[0][0, current[0].to(args[0].device)].float())
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
                    model(x.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    return {key: torch.cat(value) for key, value in rows.items()}


def _awq(folder: Path, tokenizer: Any, bits: int, group_size: int, texts: list[str],
         out_dir: Path, before_save: Callable[[Any], Any] | None, seed: int,
         device: str = "cpu") -> Any:
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

    # float32 on any device: the weights kept in memory must be exactly what the file
    # dequantizes to, (code - zero) * fp16 step, which bf16 cannot always hold
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                 device_map=None if device == "cpu" else device)
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
                    packed[f"{name}.{part}"] = tensor.cpu()
                # in memory: what the file dequantizes to, (code - zero) * fp16 step
                module.weight.copy_(dequantize_codes(codes, zeros, steps.half()))
        quantized = {f"{name.rpartition('.')[0]}.weight" for name in packed}
        for name, param in model.named_parameters():
            if name not in quantized:  # the rest is stored in bf16: hold those values too
                param.copy_(param.to(torch.bfloat16))
    seen = before_save(model) if before_save else None
    tensors = {k: v.to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()
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

def _gptqmodel(folder: Path, tokenizer: Any, bits: int, group_size: int, texts: list[str],
               out_dir: Path, log_dir: Path, before_save: Callable[[Any], Any] | None,
               device: str = "cpu", options: Mapping[str, Any] | None = None) -> Any:
    """GPTQ through GPTQModel, saved to ``out_dir``; returns what ``before_save`` returned."""
    import_gptqmodel()
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.looper import loop_processor

    # GPTQModel writes per-layer log files to ./logs of the working directory: keep them out
    # of the notebook's folder.
    loop_processor._PROJECT_LOG_DIR = log_dir
    # true_sequential=False: the seven linears of a block are calibrated on one pass over the
    # block's inputs, instead of four passes (q/k/v, o, gate/up, down, each after the ones before
    # it are quantized). GPTQ 4-bit, 32 conversations, on the 2-core CPU: 86-106 s instead of
    # 133-152 s, held-out perplexity en 39.32 / zh 22.09 instead of 39.95 / 22.20.
    # desc_act=True: each layer's columns are quantized in order of their activations' size, the
    # important ones first, with their error pushed onto the rest (GPTQ's "act-order"); on the
    # embedded model it beat GPTQModel's default (act_group_aware) by 7% in English perplexity
    # and 10% in Chinese (tools/gptq_sweep.py; table in docs/notes/lesson05-quantization.md).
    config = QuantizeConfig(**{"bits": bits, "group_size": group_size, "offload_to_disk": False,
                               "true_sequential": False, "desc_act": True,
                               "act_group_aware": False, **(options or {})})
    # In float32 on the CPU: most of GPTQ's time goes into the calibration forward passes, and
    # bf16 matmuls are several times slower on CPUs without bf16 instructions (GPTQ 4-bit with
    # 32 calibration conversations: 106 s in float32 here; bf16 took longer with a quarter of
    # the tokens). On a GPU, bf16 as usual.
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    wrapper = GPTQModel.load(str(folder), config, device=device, dtype=dtype)
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
    # buffers the folder does not store (the rotary embedding's inv_freq) are recomputed in
    # float32 when it loads: keep them as they are, not rounded through bf16 (on a random
    # model, whose logits are nearly tied, that rounding alone changed greedy replies)
    stored = set(ready.state_dict())
    computed = {n: b.clone() for n, b in ready.named_buffers() if n not in stored}
    dense = dequantize(torch.nn.Module.to(ready, torch.bfloat16))
    with torch.no_grad():
        for name, value in computed.items():
            dense.get_buffer(name).copy_(value)
    return dense


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
