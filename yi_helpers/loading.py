"""``load()``: the one loader of the hub, for every kind of model the lessons use.

::

    model, tokenizer = load()                                   # embedded, CPU, offline
    model, tokenizer = load("01-ai/Yi-6B-Chat", device="cuda")  # on a GPU with hub access
    model, tokenizer = load(folder)   # a folder lesson 05 quantized: GPTQ, AWQ or torchao

Names mean what :func:`yi_helpers.resolve.resolve_model` says, "auto" what
:mod:`yi_helpers.devices` says. GPTQ folders load through GPTQModel (transformers alone would
need ``optimum``), the rest through transformers. It always
loads safetensors, never runs remote code, returns the model in eval mode, and makes chat
models stop at ``<|im_end|>`` (the "never stops" problem of Yi chat models).
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
from .resolve import quantization_config, resolve_model
from .quiet import import_gptqmodel, quiet_backends, quiet_hf_progress

__all__ = ["load"]

#: from_pretrained options load() always sets, and refuses to have changed.
_FIXED_OPTIONS = {"trust_remote_code": False, "use_safetensors": True}


class NotEnoughMemoryError(MemoryError):
    """Raised before loading a model that would not fit on the device."""


def check_fits(model: str | ModelSpec, device: str, available_gb: float | None = None) -> None:
    """Raise :class:`NotEnoughMemoryError`, with advice, when ``model`` will not fit on
    ``device``."""
    s = spec(model)
    need = estimate_memory(s).total_gb
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
    """Make ``generate`` stop at ``<|im_end|>`` as well as the tokenizer's eos; returns the stop
    ids set. Yi chat models end a turn with ``<|im_end|>`` (id 7) while their tokenizer's eos is
    ``<|endoftext|>`` (id 2): without this, generation runs on to the token limit."""
    stop = stop_token_ids(tokenizer, model)
    gen = model.generation_config
    gen.eos_token_id = stop if len(stop) > 1 else (stop[0] if stop else None)
    gen.pad_token_id = ensure_pad_token(tokenizer)
    return stop


def kernel_backend(device: str, backend: str | None = None) -> str | None:
    """The GPTQModel kernel for GPTQ and AWQ layers: ``backend`` when given (``"auto"``: GPTQModel
    picks, and builds, the fastest); on a GPU ``"torch"``, plain PyTorch that builds nothing
    (about 80% of the Triton kernel's speed): GPTQModel's own choice there is built on first
    use (Machete on an H100 downloads CUTLASS and compiles for minutes, Marlin needs nvcc), and
    fails offline. None on a CPU: GPTQModel's choice, what the lessons were measured with."""
    if backend is not None:
        return backend
    return "torch" if str(device).startswith("cuda") else None


def eager(model: Any) -> Any:
    """Undo GPTQModel's ``torch.compile`` of its CPU dequantize step (in place): on a CPU it
    recompiles again and again during generation (8-bit GPTQ decoded at about 3 tokens/s); the
    eager function is the same maths."""
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
    """transformers' AwqConfig naming GPTQModel's kernel for this device; None: the folder's."""
    kernel = kernel_backend(device, backend)
    if kernel is None:
        return None
    from transformers import AwqConfig

    # transformers names GPTQModel's AWQ kernels itself: "torch_awq", "gemm", "marlin"...
    return AwqConfig.from_dict({**quantization_config(folder),
                                "backend": "torch_awq" if kernel == "torch" else kernel})


def load(model: str | os.PathLike = "embedded", *, device: str = "auto", dtype: Any = "auto",
         backend: str | None = None, check_memory: bool = True,
         **from_pretrained_kwargs: Any) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``: ``"embedded"`` (offline), a registry id such as
    ``"01-ai/Yi-6B-Chat"``, any other hub id, or a local folder of safetensors, plain or
    quantized (as ``yi_helpers.quantize`` writes them). ``device``: ``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``, ``"mps"``; ``dtype``: ``"auto"`` or a name (both:
    :mod:`yi_helpers.devices`); ``backend``: the GPTQModel kernel of GPTQ / AWQ folders
    (:func:`kernel_backend`); ``check_memory``: refuse, with advice, a registry model that
    would not fit. Other keywords go to ``from_pretrained`` (``revision=...``). Raises
    ValueError, NotEnoughMemoryError (naming a model that fits), ModelNotAvailableError."""
    for option, fixed in _FIXED_OPTIONS.items():
        if from_pretrained_kwargs.pop(option, fixed) != fixed:
            raise ValueError(f"{option} cannot be changed: the hub never runs remote code "
                             "and loads safetensors only.")
    device = resolve_device(device)
    source = resolve_model(model)
    published = source.spec.quantization if source.spec is not None else None
    if check_memory and source.spec is not None and source.kind != "embedded":
        check_fits(source.spec, device)
    source = source.local(revision=from_pretrained_kwargs.pop("revision", None))
    torch_dtype = load_dtype(source.spec and source.spec.id, dtype, device,
                             quantized=bool(source.quant_method or published))
    tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
    if source.quant_method == "gptq":
        lm = _load_gptq(source.location, device, torch_dtype, backend)
    else:
        kwargs = dict(trust_remote_code=False, **from_pretrained_kwargs)
        if device != "cpu":  # straight onto the device
            kwargs.setdefault("device_map", {"": device})
        backend_logs = contextlib.nullcontext()
        if source.quant_method == "awq":  # through GPTQModel's kernels, quietly as for GPTQ
            import_gptqmodel()
            backend_logs = quiet_backends()
            awq = _awq_config(source.location, device, backend)
            if awq is not None:  # None: the folder's own config (not overwritten with None)
                kwargs.setdefault("quantization_config", awq)
        with quiet_hf_progress(), warnings.catch_warnings(), backend_logs:
            # a folder's own quantization_config "will be overwritten" by the kernel's: wanted
            warnings.filterwarnings("ignore", message=".*already has a `quantization_config`")
            lm = AutoModelForCausalLM.from_pretrained(source.location, dtype=torch_dtype,
                                                      use_safetensors=True, **kwargs)
    lm.eval()
    chat = source.spec.kind == "chat" if source.spec else IM_END in tokenizer.get_vocab()
    if chat:
        configure_chat_stopping(lm, tokenizer)
    return lm, tokenizer
