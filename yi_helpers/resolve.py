"""One way in for a model name: what ``"embedded"``, ``"01-ai/Yi-6B-Chat"`` or ``"./q4"`` is.

:func:`resolve_model` is the only place that interprets a model name (``load()``, the server,
the quantizer and fine-tuning all ask it). It never loads weights nor touches the network: a
hub id stays an id until :func:`download` fetches it (or finds it in the Hugging Face cache).
The kinds: ``embedded`` (SmolLM2-135M-Instruct, offline), ``folder`` (local safetensors),
``quantized`` (a local folder whose config has a ``quantization_config``: GPTQ, AWQ, torchao),
``registry`` (a Yi id of :mod:`yi_helpers.models`) and ``hub`` (any other ``org/name``).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .models import ModelSpec, known_models, spec

__all__ = ["resolve_model"]

#: What :func:`download` fetches from a hub repository: configs, tokenizer files and
#: safetensors weights. Never pickled ``*.bin`` weights, never Python code.
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja")


class ModelNotAvailableError(OSError):
    """Raised when a model is neither local nor reachable on the hub."""


@dataclass(frozen=True)
class ModelSource:
    """What a model name means (see the module docstring for the kinds)."""

    kind: str  # "embedded" | "folder" | "quantized" | "registry" | "hub"
    location: str  # a local folder, or a hub id
    spec: ModelSpec | None = None  # the registry's entry (embedded and Yi ids)
    quant_method: str | None = None  # "gptq", "awq", "torchao"... for local quantized folders

    @property
    def is_local(self) -> bool:
        return self.kind in ("embedded", "folder", "quantized")

    def local(self, revision: str | None = None) -> "ModelSource":
        """This source with a local folder: itself when local, else the downloaded (or cached)
        hub snapshot, its quantization read from the snapshot's config."""
        if self.is_local:
            return self
        folder = download(self.location, revision=revision)
        method = quant_method(folder)
        return ModelSource("quantized" if method else "folder", str(folder), self.spec, method)


def quantization_config(folder: str | os.PathLike) -> dict:
    """The ``quantization_config`` of a folder's ``config.json``; ``{}`` for a plain model, and
    for a folder without a readable config (loading it then fails with the loader's own error)."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text()).get("quantization_config") or {}
    except (OSError, ValueError, AttributeError):  # no config, or a broken one: the loader says
        return {}


def quant_method(folder: str | os.PathLike) -> str | None:
    """``"gptq"``, ``"awq"``, ``"torchao"``... from a folder's ``config.json``; None if plain."""
    return quantization_config(folder).get("quant_method")


def require_safetensors(folder: Path) -> Path:
    """``folder``, if it holds safetensors weights; else a ValueError saying what to do."""
    if not any(folder.glob("*.safetensors")):
        raise ValueError(
            f"{folder} has no *.safetensors weights. This hub loads safetensors only "
            "(pickled *.bin files can run code): convert the weights with "
            "`model.save_pretrained(folder, safe_serialization=True)`."
        )
    return folder


def resolve_model(model: str | os.PathLike) -> ModelSource:
    """What ``model`` names, as a :class:`ModelSource` (no weights loaded, no network; the
    embedded model's GGUF is converted to safetensors the first time, 20-40 s). ValueError:
    not a folder, an ``org/name`` id or a known model, or a folder without safetensors."""
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a name or a folder, got {model!r}")
    name = os.fspath(model)
    if name == "embedded":
        from . import embedded

        folder = embedded.prepare(verbose=True)
        return ModelSource("embedded", str(folder), spec("embedded"))
    path = Path(name).expanduser()
    if path.is_dir():
        folder = require_safetensors(path)
        method = quant_method(folder)
        return ModelSource("quantized" if method else "folder", str(folder), None, method)
    try:
        registered = spec(name)
        return ModelSource("registry", registered.id, registered)
    except KeyError:
        pass
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and not path.exists():
        return ModelSource("hub", name)  # org/name, not a local path
    raise ValueError(
        f"Unknown model {name!r}: not a folder, not a Hugging Face id (org/name), and not one "
        f"of the known models: {', '.join(known_models())}."
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
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


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """The local folder of a hub model (configs, tokenizer, safetensors weights): the Hugging
    Face cache when it has the files (offline), else a download. ModelNotAvailableError: not
    cached, and the hub is unreachable or refuses the id; ValueError: no safetensors weights."""
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
    return require_safetensors(folder)
