"""A trained LoRA adapter kept safely: written atomically, and its model back in plain form."""

from pathlib import Path
from typing import Any

from ..cache import atomic_folder

__all__ = ["save_adapter_atomically", "plain_forward"]


def save_adapter_atomically(model: Any, target: str | Path, tokenizer: Any = None) -> Path:
    """Write the adapter (safetensors) through :func:`yi_helpers.cache.atomic_folder`: a crash
    leaves the previous adapter or none, never a half-written one (lesson 06 reads lesson 04's
    adapter from its artefact folder)."""
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(target)


def plain_forward(model: Any) -> Any:
    """``model`` with the autocast wrapper taken off its ``forward`` (unchanged without one).

    With mixed precision (a GPU run), the Trainer's accelerate wraps ``model.forward`` in
    autocast and leaves it there after training: the model would then compute in bfloat16 while
    a reloaded adapter computes in its own dtype (lesson 04's logits check failed that way)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)
