"""yi_helpers: the small, tested package behind the Yi Learning Hub notebooks.

Modules are named for lesson topics: ``models`` (the Yi family and a memory planner),
``loading`` (``load()``), ``embedded`` (the offline SmolLM2 model), ``system`` (machine facts
and measurements).
"""

import warnings

# Notebooks here show text progress bars (no ipywidgets, so no widget state in committed
# outputs): silence tqdm's one-time hint that a widget version exists.
warnings.filterwarnings("ignore", message="IProgress not found")

from .loading import ModelNotAvailableError, NotEnoughMemoryError, load
from .models import REGISTRY, estimate_memory, known_models, recommend, spec

__all__ = [
    "REGISTRY",
    "ModelNotAvailableError",
    "NotEnoughMemoryError",
    "estimate_memory",
    "known_models",
    "load",
    "recommend",
    "spec",
]
__version__ = "0.1.0"
