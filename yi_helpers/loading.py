"""Load the embedded model, a Yi model from the Hugging Face Hub, or a local folder.

``load()`` is the one entry point the notebooks use::

    model, tokenizer = load()                                   # embedded, CPU, offline
    model, tokenizer = load("01-ai/Yi-6B-Chat", device="cuda")  # on a GPU with hub access

It always loads safetensors, never runs remote code, returns the model in eval mode, and makes
chat models stop at ``<|im_end|>`` (the "never stops" problem of Yi chat models).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from transformers import (AutoModelForCausalLM, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerBase)

from . import embedded
from .chat import IM_END, ensure_pad_token, stop_token_ids
# resolve_device / resolve_dtype stay importable from here (lesson 06 does)
from .devices import _is_auto, load_dtype, resolve_device, resolve_dtype  # noqa: F401
from .models import REGISTRY, ModelSpec, estimate_memory, known_models, recommend, spec


#: from_pretrained options load() always sets, and refuses to have changed.
_FIXED_OPTIONS = {"trust_remote_code": False, "use_safetensors": True}


class NotEnoughMemoryError(MemoryError):
    """Raised before loading a model that would not fit on the device."""


class ModelNotAvailableError(OSError):
    """Raised when a model is neither local nor reachable on the hub."""


def device_memory_gb(device: str) -> float:
    """Memory the device has free now, in GB: free GPU memory, or available RAM on a CPU."""
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free / 1e9
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 1e9


def check_fits(model: str | ModelSpec, device: str, available_gb: float | None = None) -> None:
    """Raise :class:`NotEnoughMemoryError`, with advice, when ``model`` will not fit."""
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


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover - very old huggingface_hub
        endpoint = "https://huggingface.co"
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _not_available(name: str, cause: BaseException | None = None) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"Could not load {name!r}: the Hugging Face Hub is not reachable from here (offline, or "
        "HF_HUB_OFFLINE is set) and the model is not in the local cache. Either use "
        "model='embedded' (runs offline on a CPU), or download it on a machine with internet "
        f"(`hf download {name}`) and copy the Hugging Face cache, or pass the local folder: "
        f"load('/path/to/{name.split('/')[-1]}')." + (f" Cause: {cause}" if cause else "")
    )


#: What :func:`download` fetches from a hub repository: configs, tokenizer files and
#: safetensors weights. Never pickled ``*.bin`` weights, never Python code.
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja")


def is_hub_id(name: Any) -> bool:
    """``org/name`` that is not a local path (``"01-ai/Yi-6B-Chat-4bits"``)."""
    return (isinstance(name, str) and name.count("/") == 1
            and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists())


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """The local folder of a hub model (configs, tokenizer, safetensors weights): the Hugging
    Face cache when it has the files (offline), else a download.

    Raises:
        ModelNotAvailableError: not cached, and the hub is unreachable or refuses the id.
        ValueError: the repository has no safetensors weights (pickles are never fetched).
    """
    from huggingface_hub import snapshot_download

    kwargs = dict(revision=revision, allow_patterns=list(SNAPSHOT_PATTERNS))
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True, **kwargs))
    except (OSError, ValueError):  # not in the cache
        if not _hub_reachable():
            raise _not_available(repo_id) from None
        try:
            folder = Path(snapshot_download(repo_id, **kwargs))
        except (OSError, ValueError) as err:  # unknown or gated repository, network errors
            raise _not_available(repo_id, err) from err
    return _with_safetensors(folder)


def _with_safetensors(folder: Path) -> Path:
    """``folder``, if it holds safetensors weights; else a ValueError saying what to do."""
    if not any(folder.glob("*.safetensors")):
        raise ValueError(
            f"{folder} has no *.safetensors weights. This hub loads safetensors only "
            "(pickled *.bin files can run code): convert the weights with "
            "`model.save_pretrained(folder, safe_serialization=True)`."
        )
    return folder


def _resolve_source(model: str) -> tuple[str, ModelSpec | None, bool]:
    """→ (path or hub id, registry spec or None, is_local)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a name or a folder, got {model!r}")
    model = os.fspath(model)
    if model == "embedded":
        return str(embedded.prepare(verbose=True)), REGISTRY["embedded"], True
    path = Path(model).expanduser()
    if path.is_dir():
        return str(_with_safetensors(path)), None, True
    try:
        s = spec(model)
        return s.id, s, False
    except KeyError:
        pass
    if is_hub_id(model):
        return model, None, False  # some other hub id: allowed
    raise ValueError(
        f"Unknown model {model!r}: not a folder, not a Hugging Face id (org/name), and not one "
        f"of the known models: {', '.join(known_models())}."
    )


def _needs_gptqmodel_loader(folder: str) -> bool:
    """A local GPTQ folder (``yi_helpers.quantize``) while ``optimum`` is not installed."""
    import importlib.util
    import json

    config = Path(folder) / "config.json"
    if not config.is_file() or importlib.util.find_spec("optimum") is not None:
        return False
    quant = json.loads(config.read_text()).get("quantization_config") or {}
    return quant.get("quant_method") == "gptq"


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


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" bar (it takes a second here)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load(model: str = "embedded", *, device: str = "auto", dtype: Any = "auto",
         check_memory: bool = True, **from_pretrained_kwargs: Any
         ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)``: the embedded model, a Hugging Face id, or a local folder.

    Args:
        model: ``"embedded"`` (default, offline), a registry id such as ``"01-ai/Yi-6B-Chat"``,
            any other hub id, or a local folder with safetensors weights.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: ``"auto"`` (bf16 on GPU, fp32 on CPU; the embedded model fp32 everywhere),
            ``"float32"``, ``"bfloat16"``, ``"float16"``.
        check_memory: refuse, with advice, a registry model that would not fit on the device.
        from_pretrained_kwargs: passed on to ``from_pretrained`` (``revision=...`` for example).

    Raises:
        ValueError: unknown model, unsupported device or dtype, a folder without safetensors.
        NotEnoughMemoryError: the model would not fit (the message names one that does).
        ModelNotAvailableError: the hub is unreachable and nothing is cached.
    """
    for option, fixed in _FIXED_OPTIONS.items():
        if from_pretrained_kwargs.pop(option, fixed) != fixed:
            raise ValueError(f"{option} cannot be changed: the hub never runs remote code "
                             "and loads safetensors only.")
    device = resolve_device(device)
    source, registry_spec, is_local = _resolve_source(model)
    torch_dtype = load_dtype(registry_spec.id if registry_spec else None, dtype, device)
    if check_memory and registry_spec is not None and registry_spec.id != "embedded":
        check_fits(registry_spec, device)  # before any download
    if not is_local:  # the Hugging Face cache first (works offline), else the hub
        source = str(download(source, revision=from_pretrained_kwargs.pop("revision", None)))
    if _needs_gptqmodel_loader(source):
        # transformers loads GPTQ checkpoints only through `optimum`; GPTQModel loads them itself.
        from .quantize import load_quantized

        return load_quantized(source, device=device, dtype=None if _is_auto(dtype) else dtype)

    kwargs = dict(trust_remote_code=False, **from_pretrained_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if device != "cpu":  # straight onto the GPU; quantized layers pick that device's kernels
        kwargs.setdefault("device_map", {"": device})
    with _quiet_progress():
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, use_safetensors=True,
                                                  **kwargs)
    lm.eval()
    chat = registry_spec.is_chat if registry_spec is not None else (
        IM_END in tokenizer.get_vocab())
    if chat:
        configure_chat_stopping(lm, tokenizer)
    return lm, tokenizer
