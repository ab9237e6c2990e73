"""yi_helpers: the small, tested package behind the Yi Learning Hub notebooks.

Modules are named for their job (``docs/architecture.md`` draws them): ``models`` (the Yi
family and a memory planner), ``resolve`` (what a model name means), ``devices`` (what
``"auto"`` means), ``loading`` (``load()``, plain and quantized), ``embedded`` (the offline
SmolLM2 model), ``chat``, ``sampling``, ``measure`` and ``units`` (bytes and memory),
``bench`` (speed and quality), ``quantize``, ``finetune``, ``serve``, ``machine`` (machine
facts), ``quiet`` (progress lines, library noise kept out of outputs) and ``cache`` (the hub's
cache and artefact folders). The Yi-shaped random models the tests and the GPU runner use live
in ``tools/yi_shape.py``, outside the learners' package.

Importing the package changes nothing global (no warning filters, loggers or progress bars).
``load`` and ``NotEnoughMemoryError`` come on first use: they pull in transformers (seconds).
"""

import importlib

from .models import REGISTRY, estimate_memory, known_models, recommend, spec
from .resolve import ModelNotAvailableError

_FROM_LOADING = ("load", "NotEnoughMemoryError")

__all__ = ["REGISTRY", "estimate_memory", "known_models", "recommend", "spec",
           "ModelNotAvailableError", *_FROM_LOADING]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _FROM_LOADING:
        return getattr(importlib.import_module(".loading", __name__), name)
    raise AttributeError(f"module 'yi_helpers' has no attribute {name!r}")
