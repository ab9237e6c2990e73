"""A trained LoRA adapter kept safely: written atomically, and its model back in plain form."""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["save_adapter_atomically", "plain_forward"]


def save_adapter_atomically(model: Any, target: str | Path, tokenizer: Any = None) -> Path:
    """Write the adapter (safetensors) to a temporary folder next to ``target``, then rename it
    into place: a crash leaves the previous adapter or none, never a half-written one (lesson
    06 reads lesson 04's adapter from its artefact folder)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def plain_forward(model: Any) -> Any:
    """``model`` with the autocast wrapper taken off its ``forward`` (unchanged without one).

    With mixed precision (a GPU run), the Trainer's accelerate wraps ``model.forward`` in
    autocast and leaves it there after training: the model would then compute in bfloat16 while
    a reloaded adapter computes in its own dtype (lesson 04's logits check failed that way)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)
