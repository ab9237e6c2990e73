"""``load()``: the one loader of the hub, for every kind of model the lessons use.

::

    model, tokenizer = load()                                   # embedded, CPU, offline
    model, tokenizer = load("01-ai/Yi-6B-Chat", device="cuda")  # on a GPU with hub access
    model, tokenizer = load("01-ai/Yi-6B-Chat", quantization="nf4")  # QLoRA's 4-bit base
    model, tokenizer = load(folder)   # a folder lesson 05 quantized: GPTQ, AWQ or torchao

The name is interpreted by :func:`yi_helpers.resolve.resolve_model`, "auto" device and dtype
by :mod:`yi_helpers.devices`. What a folder holds decides the path: GPTQ folders load through
GPTQModel (transformers alone would need the ``optimum`` package), AWQ and torchao folders and
plain models through transformers, ``quantization="nf4"`` through bitsandbytes.

It always loads safetensors, never runs remote code, returns the model in eval mode, and makes
chat models stop at ``<|im_end|>`` (the "never stops" problem of Yi chat models).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer

from .chat import IM_END, ensure_pad_token, stop_token_ids
from .devices import dtype_name, load_dtype, resolve_device
from .measure import device_memory_gb
from .models import ModelSpec, estimate_memory, recommend, spec
from .resolve import ModelNotAvailableError, ModelSource, resolve_model
from .system import import_gptqmodel, quiet_backends, quiet_hf_progress

__all__ = ["load", "NotEnoughMemoryError", "ModelNotAvailableError", "check_fits",
           "bnb_4bit_config", "eager"]

#: from_pretrained options load() always sets, and refuses to have changed.
_FIXED_OPTIONS = {"trust_remote_code": False, "use_safetensors": True}

#: Quantizations ``load`` applies while loading (a folder quantized by lesson 05 needs none:
#: its config says how it is stored). ``"nf4"``: bitsandbytes 4-bit NormalFloat, QLoRA's base.
QUANTIZATIONS = ("nf4",)


class NotEnoughMemoryError(MemoryError):
    """Raised before loading a model that would not fit on the device."""


def check_fits(model: str | ModelSpec, device: str, available_gb: float | None = None, *,
               weight_bits: int | None = None) -> None:
    """Raise :class:`NotEnoughMemoryError`, with advice, when ``model`` (its weights at
    ``weight_bits``, default as published) will not fit on ``device``."""
    s = spec(model)
    need = estimate_memory(s, weight_bits=weight_bits).total_gb
    have = device_memory_gb(device) if available_gb is None else available_gb
    if need <= have:
        return
    advice = recommend(have)
    hint = (f"The largest Yi chat model that fits in {have:.1f} GB is {advice!r}: "
            f"load({advice!r}, ...)." if advice else
            "No Yi chat model fits there: use model='embedded', a bigger GPU, or a quantized "
            "variant on another machine.")
    raise NotEnoughMemoryError(
        f"{s.id} needs about {need:.1f} GB (estimate_memory, batch 1) but {device} has "
        f"{have:.1f} GB free. {hint} Pass check_memory=False to try anyway."
    )


def configure_chat_stopping(model: Any, tokenizer: Any) -> list[int]:
    """Make ``generate`` stop at ``<|im_end|>`` as well as the tokenizer's eos.

    Yi chat models end each turn with ``<|im_end|>`` (id 7) while their tokenizer's eos is
    ``<|endoftext|>`` (id 2): without this, generation runs on to the token limit.
    Returns the stop ids now set on ``model.generation_config``.
    """
    stop = stop_token_ids(tokenizer, model)
    gen = model.generation_config
    gen.eos_token_id = stop if len(stop) > 1 else (stop[0] if stop else None)
    gen.pad_token_id = ensure_pad_token(tokenizer)
    return stop


def bnb_4bit_config(dtype: Any = "bfloat16"):
    """bitsandbytes' 4-bit config as QLoRA uses it: NF4, double quantization, compute and
    storage in ``dtype``. bitsandbytes is imported here only."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "quantization='nf4' needs bitsandbytes, which is not installed: "
            "`pip install bitsandbytes` (or `pip install 'yi-helpers[lessons]'`), or load the "
            "model unquantized (more memory)") from None
    import torch
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, dtype_name(dtype))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_quant_storage=compute)


#: GPTQModel's kernel for GPTQ and AWQ layers, by device type. On a GPU its own choice
#: (``"auto"``) is a kernel it builds on first use: Machete on an H100 / H200 downloads CUTLASS
#: and compiles for minutes, Marlin compiles with nvcc; offline that fails. ``"torch"`` (plain
#: PyTorch, about 80% of the Triton kernel's speed by GPTQModel's own account) builds nothing.
#: On a CPU GPTQModel's choice is kept (what the lessons were measured with).
KERNEL_BY_DEVICE = {"cuda": "torch"}


def kernel_backend(device: str, backend: str | None = None) -> str | None:
    """The GPTQModel kernel ``load`` asks for on ``device``: ``backend`` when given (``"auto"``
    lets GPTQModel pick, and build, the fastest), else ``KERNEL_BY_DEVICE``'s entry for the
    device type; None: GPTQModel's own choice."""
    if backend is not None:
        return backend
    return KERNEL_BY_DEVICE.get(str(device).split(":")[0])


def eager(model: Any) -> Any:
    """Undo GPTQModel's ``torch.compile`` of its CPU dequantize step (in place).

    On a CPU the compiled function recompiles again and again during generation (8-bit GPTQ
    decoded at about 3 tokens/s); the eager function is the same maths.
    """
    for module in model.modules():
        if "dequantize_weight" in vars(module):
            del module.dequantize_weight  # the class's own (eager) method shows through again
    return model


def _load_gptq(folder: str, device: str, torch_dtype: Any, backend: str | None) -> Any:
    """A GPTQ folder through GPTQModel, its CPU dequantize step made eager again."""
    import_gptqmodel()
    from gptqmodel import GPTQModel

    kernel = kernel_backend(device, backend)
    with quiet_backends():
        wrapper = GPTQModel.load(folder, device=device, dtype=torch_dtype,
                                 **({"backend": kernel} if kernel else {}))
    return eager(wrapper.model)


def _awq_config(folder: str, device: str, backend: str | None) -> Any:
    """transformers' AwqConfig naming GPTQModel's kernel for this device; None: the default."""
    kernel = kernel_backend(device, backend)
    if kernel is None:
        return None
    from transformers import AwqConfig

    from .resolve import quantization_config

    # transformers names GPTQModel's AWQ kernels itself: "torch_awq", "gemm", "marlin"...
    return AwqConfig.from_dict({**quantization_config(folder),
                                "backend": "torch_awq" if kernel == "torch" else kernel})


def load(model: str | os.PathLike = "embedded", *, device: str = "auto", dtype: Any = "auto",
         quantization: str | None = None, backend: str | None = None, check_memory: bool = True,
         **from_pretrained_kwargs: Any) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``: the embedded model, a Hugging Face id, or a local folder,
    plain or quantized.

    Args:
        model: ``"embedded"`` (default, offline), a registry id such as ``"01-ai/Yi-6B-Chat"``,
            any other hub id, or a local folder with safetensors weights (a folder that
            ``yi_helpers.quantize.quantize`` wrote included).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``
            (:mod:`yi_helpers.devices` says what "auto" picks).
        dtype: ``"auto"`` (see :func:`yi_helpers.devices.load_dtype`), ``"float32"``,
            ``"bfloat16"``, ``"float16"``.
        quantization: ``None``, or ``"nf4"`` to quantize while loading (bitsandbytes 4-bit,
            QLoRA's base); a folder that is quantized already needs nothing here.
        backend: the GPTQModel kernel for GPTQ / AWQ folders (:func:`kernel_backend`).
        check_memory: refuse, with advice, a registry model that would not fit on the device.
        from_pretrained_kwargs: passed on to ``from_pretrained`` (``revision=...`` for example).

    Raises:
        ValueError: unknown model, unsupported device, dtype or quantization, a folder without
            safetensors, ``quantization`` asked of a model that is quantized already.
        NotEnoughMemoryError: the model would not fit (the message names one that does).
        ModelNotAvailableError: the hub is unreachable and nothing is cached.
    """
    for option, fixed in _FIXED_OPTIONS.items():
        if from_pretrained_kwargs.pop(option, fixed) != fixed:
            raise ValueError(f"{option} cannot be changed: the hub never runs remote code "
                             "and loads safetensors only.")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"Unsupported quantization {quantization!r}: use one of {QUANTIZATIONS} "
                         "(or quantize a folder with yi_helpers.quantize and load that folder).")
    device = resolve_device(device)
    source: ModelSource = resolve_model(model)
    published = source.spec.quantization if source.spec is not None else None
    if check_memory and source.spec is not None and source.kind != "embedded":
        check_fits(source.spec, device, weight_bits=4 if quantization == "nf4" else None)
    source = source.local(revision=from_pretrained_kwargs.pop("revision", None))
    if quantization is not None and source.quant_method:
        raise ValueError(f"{model!r} is quantized already ({source.quant_method}): load it "
                         "without quantization=.")
    torch_dtype = load_dtype(source.registry_id, dtype, device,
                             quantized=bool(source.quant_method or published))
    if source.quant_method == "gptq":
        lm = _load_gptq(source.location, device, torch_dtype, backend)
        tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
    else:
        kwargs = dict(trust_remote_code=False, **from_pretrained_kwargs)
        if quantization == "nf4":
            kwargs["quantization_config"] = bnb_4bit_config(torch_dtype)
        elif source.quant_method == "awq" and "quantization_config" not in kwargs:
            awq = _awq_config(source.location, device, backend)
            if awq is not None:
                kwargs["quantization_config"] = awq
        tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
        if device != "cpu" or quantization == "nf4":  # straight onto the device
            kwargs.setdefault("device_map", {"": device})
        backend_logs = contextlib.nullcontext()
        if source.quant_method == "awq":  # through GPTQModel's kernels, quietly as for GPTQ
            import_gptqmodel()
            backend_logs = quiet_backends()
        with quiet_hf_progress(), warnings.catch_warnings(), backend_logs:
            # a folder's own quantization_config "will be overwritten" by the kernel's: wanted
            warnings.filterwarnings("ignore", message=".*already has a `quantization_config`")
            lm = AutoModelForCausalLM.from_pretrained(source.location, dtype=torch_dtype,
                                                      use_safetensors=True, **kwargs)
    lm.eval()
    chat = source.spec.is_chat if source.spec is not None else IM_END in tokenizer.get_vocab()
    if chat:
        configure_chat_stopping(lm, tokenizer)
    return lm, tokenizer
