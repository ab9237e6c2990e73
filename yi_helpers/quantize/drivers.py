"""``quantize()``: a model in, a folder ``yi_helpers.load`` reloads out (lesson 05).

AutoGPTQ and AutoAWQ (which made Yi's published GPTQ/AWQ models) fail with transformers 5. GPTQ
goes through GPTQModel 7.6.0; AWQ is written out here (GPTQModel's runs only in bf16 on a CPU:
3 minutes for 8 conversations) in AWQ's GEMM format; torchao does int8 weight-only.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..chat import default_template, render
from ..corpus import calibration_conversations
from ..devices import load_dtype, resolve_device, resolve_dtype
from ..resolve import resolve_model
from ..quiet import import_gptqmodel, quiet_backends
from .algorithms import awq_scales, dequantize_codes, pack_awq_gemm, rtn_codes
from .reload import dequantize, disk_size

__all__ = ["UnsupportedQuantizationError", "calibration_texts", "quantize"]

#: method -> supported bits, and the package it needs (AWQ's files load with GPTQModel's kernels)
SUPPORTED: dict[str, tuple[int, ...]] = {"gptq": (8, 4), "awq": (4,), "int8-weight-only": (8,)}
BACKENDS = {"gptq": "gptqmodel", "awq": "gptqmodel", "int8-weight-only": "torchao"}
DEFAULT_CALIBRATION_SAMPLES = 32
#: Calibration tokens (drawn at random from all the texts) on which AWQ compares its scales.
AWQ_SEARCH_TOKENS = 256


class UnsupportedQuantizationError(ValueError):
    """A method / bits / group size combination, or a back end, that this hub cannot quantize."""


def check_supported(method: str, bits: int, group_size: int = 128,
                    widths: Sequence[int] = ()) -> None:
    """Raise :class:`UnsupportedQuantizationError` unless ``method`` can quantize to ``bits``
    with ``group_size`` on layers whose input widths are ``widths``, with its back end installed."""
    supported = ", ".join(f"{m} ({'/'.join(map(str, b))}-bit)" for m, b in SUPPORTED.items())
    if method not in SUPPORTED:
        raise UnsupportedQuantizationError(f"Unknown method {method!r}. Supported: {supported}.")
    if bits not in SUPPORTED[method]:
        raise UnsupportedQuantizationError(
            f"{method} does not do {bits}-bit here. Supported: {supported}.")
    bad = sorted({w for w in widths if w % group_size}) if method != "int8-weight-only" else []
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
            f"`pip install {pin}` (or `make setup`). Supported here: {supported}.")


def calibration_texts(tokenizer: Any, calibration: Any = None,
                      n: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0) -> list[str]:
    """At most ``n`` calibration texts (drawn with ``seed``) through the chat template, from
    strings, conversations or ``{"messages": ...}`` rows; ``None``: the hub's bilingual set."""
    if calibration is None:
        calibration = calibration_conversations()
    if isinstance(calibration, (str, bytes)) or not isinstance(calibration, Sequence):
        raise ValueError("calibration must be a list of texts or conversations")
    items = list(calibration)
    if n and len(items) > n:
        items = random.Random(seed).sample(items, n)
    template = default_template(tokenizer)
    texts = [item if isinstance(item, str) else render(
        item["messages"] if isinstance(item, Mapping) else item, add_generation_prompt=False,
        template=template) for item in items]
    if not texts:
        raise ValueError("calibration is empty: pass a few texts or conversations")
    return texts


@dataclass
class QuantizeResult:
    """What :func:`quantize` made, and what its ``before_save`` returned."""

    out_dir: Path
    seconds: float
    n_calibration: int
    size_bytes: int
    before_save: Any = field(default=None, repr=False)


def _source_folder(model_or_path: Any, tokenizer: Any, scratch: Path) -> tuple[Path, Any]:
    """A folder with the model and tokenizer (GPTQModel loads from one): a name's through
    :func:`~yi_helpers.resolve.resolve_model`, a loaded model's saved to ``scratch``."""
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
    model_or_path.save_pretrained(scratch / "source")
    tokenizer.save_pretrained(scratch / "source")
    return scratch / "source", tokenizer


def quantize(model_or_path: Any, method: str, *, bits: int, group_size: int = 128,
             calibration: Any = None, out_dir: str | os.PathLike, tokenizer: Any = None,
             n_calibration: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0,
             before_save: Callable[[Any], Any] | None = None, device: str = "cpu",
             gptq_options: Mapping[str, Any] | None = None) -> QuantizeResult:
    """Quantize ``model_or_path`` (a name, a folder, or a loaded model with ``tokenizer``) and
    save a loadable folder to ``out_dir`` (replaced if it exists).

    ``group_size``: columns sharing one scale (64 for the embedded model's width 576).
    ``before_save(model)`` gets the quantized model before it is saved (GPTQ, AWQ: a float32
    model with exactly the weights the folder dequantizes to); its time is not counted.
    ``device`` goes through :func:`~yi_helpers.devices.resolve_device`, and GPTQ's dtype through
    ``resolve_dtype`` (float32 on a CPU, bf16 on a GPU); AWQ keeps float32 (~24 GB for a 6B
    model). ``gptq_options``: more GPTQModel ``QuantizeConfig`` fields.
    """
    check_supported(method, bits, group_size)
    gptq_options = dict(gptq_options or {})
    if gptq_options and method != "gptq":
        raise ValueError(f"gptq_options are for method='gptq', not {method!r}")
    if gptq_options.get("sym") is False:
        raise UnsupportedQuantizationError(
            "sym=False: GPTQModel 7.6's asymmetric GPTQ folders reload broken (perplexity in the "
            "millions); use the symmetric grid, or method='awq' for a zero-point grid.")
    device = resolve_device(device)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="yi-quantize-") as tmp:
        folder, tokenizer = _source_folder(model_or_path, tokenizer, Path(tmp))
        config = json.loads((folder / "config.json").read_text())
        widths = [w for w in (config.get("hidden_size"), config.get("intermediate_size")) if w]
        check_supported(method, bits, group_size, widths)
        texts = (calibration_texts(tokenizer, calibration, n_calibration, seed)
                 if method in ("gptq", "awq") else [])
        if out_dir.exists():
            shutil.rmtree(out_dir)
        with quiet_backends():
            # each back end yields (a way to get) the quantized model, then saves it
            start = time.perf_counter()
            if method == "int8-weight-only":
                steps = _torchao_int8(folder, out_dir, device)
            elif method == "awq":
                steps = _awq(folder, tokenizer, bits, group_size, texts, out_dir, seed, device)
            else:
                steps = _gptqmodel(folder, tokenizer, bits, group_size, texts, out_dir,
                                   Path(tmp) / "logs", device, gptq_options)
            quantized = next(steps)
            seconds = time.perf_counter() - start
            seen = before_save(quantized()) if before_save else None
            start = time.perf_counter()
            next(steps, None)
            seconds += time.perf_counter() - start
        tokenizer.save_pretrained(out_dir)
    return QuantizeResult(out_dir, seconds, len(texts), disk_size(out_dir), seen)


def _torchao_int8(folder: Path, out_dir: Path, device: str) -> Iterator[Callable[[], Any]]:
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=load_dtype(None, "auto", device, quantized=True), use_safetensors=True,
        device_map=None if device == "cpu" else device,
        quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    yield lambda: model
    model.save_pretrained(out_dir)


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
    """Inputs of each block's q/k/v, gate/up and down on ``tokens`` random calibration tokens."""
    ids = [tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"] for t in texts]
    lengths = [x.shape[1] for x in ids]
    picks = torch.randperm(sum(lengths), generator=torch.Generator().manual_seed(seed))[:tokens]
    rows: dict[tuple[int, str], list[torch.Tensor]] = {}
    current: list[torch.Tensor] = []  # this text's picked token positions

    def keep(key: tuple[int, str], _module: Any, args: tuple[Any, ...]) -> None:
        rows.setdefault(key, []).append(args[0][0, current[0].to(args[0].device)].float())

    handles = [module.register_forward_pre_hook(functools.partial(keep, (i, name)))
               for i, layer in enumerate(_llama_layers(model))
               for name, module in (("attn", layer.self_attn.q_proj),
                                    ("mlp", layer.mlp.gate_proj), ("down", layer.mlp.down_proj))]
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
         out_dir: Path, seed: int, device: str) -> Iterator[Callable[[], Any]]:
    """AWQ: search the scales (:func:`awq_scales`), fold them into the previous norm or linear
    (q/k/v: ``input_layernorm``, gate/up: ``post_attention_layernorm``, down: ``up_proj``;
    ``o_proj`` as AWQ skips it: grouped-query attention cannot rescale its input through
    ``v_proj``), round asymmetrically, save in the GEMM format (``zero_point: true``)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    # float32 on any device: the weights kept in memory must be exactly what the file
    # dequantizes to, (code - zero) * fp16 step, which bf16 cannot always hold
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                 device_map=None if device == "cpu" else device)
    layers = _llama_layers(model)
    inputs = _awq_inputs(model, tokenizer, texts, AWQ_SEARCH_TOKENS, seed)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            attn, mlp = layer.self_attn, layer.mlp
            for key, previous, linears in (
                    ("attn", layer.input_layernorm.weight, (attn.q_proj, attn.k_proj, attn.v_proj)),
                    ("mlp", layer.post_attention_layernorm.weight, (mlp.gate_proj, mlp.up_proj)),
                    ("down", mlp.up_proj.weight, (mlp.down_proj,))):
                scales = awq_scales([m.weight for m in linears], inputs[i, key], bits,
                                    group_size)[0]
                previous.div_(scales if previous.dim() == 1 else scales.unsqueeze(1))
                for m in linears:
                    m.weight.mul_(scales)
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
    yield lambda: model
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


def _gptqmodel(folder: Path, tokenizer: Any, bits: int, group_size: int, texts: list[str],
               out_dir: Path, log_dir: Path, device: str, options: Mapping[str, Any]
               ) -> Iterator[Callable[[], Any]]:
    gptqmodel = import_gptqmodel()
    from gptqmodel.looper import loop_processor

    # GPTQModel writes per-layer logs to ./logs: keep them out of the notebook's folder
    loop_processor._PROJECT_LOG_DIR = log_dir
    # true_sequential=False: a block's seven linears calibrate on one pass over its inputs, not
    # four (GPTQ 4-bit, 32 conversations, 2-core CPU: 86-106 s instead of 133-152 s, perplexity
    # en 39.32 / zh 22.09 instead of 39.95 / 22.20). desc_act=True (largest activations first)
    # beat the default act_group_aware by 7% en / 10% zh perplexity (tools/gptq_sweep.py).
    config = gptqmodel.QuantizeConfig(**{
        "bits": bits, "group_size": group_size, "offload_to_disk": False,
        "true_sequential": False, "desc_act": True, "act_group_aware": False, **options})
    wrapper = gptqmodel.GPTQModel.load(str(folder), config, device=device,
                                       dtype=resolve_dtype("auto", device))
    wrapper.quantize(texts, tokenizer=tokenizer)
    yield lambda: _gptq_as_saved(wrapper.model)
    wrapper.save(str(out_dir))
    _store_16bit(out_dir)


def _gptq_as_saved(model: Any) -> Any:
    """A float32 copy of GPTQModel's model after ``quantize()`` with exactly the weights its
    saved folder dequantizes to. GPTQModel 7.6.0 holds zero points in the v1 layout (``zero -
    1``) that only its loader converts: the copy gets that conversion and bf16 16-bit parts."""
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module

    ready = copy.deepcopy(model)
    for module in ready.modules():
        if isinstance(module, BaseQuantLinear) and getattr(module, "REQUIRES_FORMAT_V2", False):
            convert_gptq_v1_to_v2_format_module(module, module.bits, module.pack_dtype)
    # buffers the folder does not store (the rotary inv_freq) are recomputed in float32 on load:
    # keep them, not rounded through bf16 (on a random model that alone changed greedy replies)
    stored = set(ready.state_dict())
    computed = {n: b.clone() for n, b in ready.named_buffers() if n not in stored}
    dense = dequantize(torch.nn.Module.to(ready, torch.bfloat16))
    with torch.no_grad():
        for name, value in computed.items():
            dense.get_buffer(name).copy_(value)
    return dense


def _store_16bit(folder: Path) -> None:
    """Rewrite a saved folder's float32 tensors in 16 bits, as quantized checkpoints ship (else
    the embedding, a fifth of the embedded model, stays float32): fp16 scales (the GPTQ
    convention), bf16 for the rest."""
    from safetensors.torch import load_file, save_file

    for path in folder.glob("*.safetensors"):
        tensors = load_file(str(path))
        for name, t in tensors.items():
            if t.dtype == torch.float32:
                tensors[name] = t.to(torch.float16 if name.endswith(".scales") else torch.bfloat16)
        save_file(tensors, str(path), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = "bfloat16"
    config.pop("torch_dtype", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
