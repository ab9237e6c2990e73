"""yi_helpers: the small, tested package behind the Yi Learning Hub notebooks.

Modules are named for their job (``docs/architecture.md`` draws them): ``models`` (the Yi
family and a memory planner), ``resolve`` (what a model name means), ``devices`` (what
``"auto"`` means), ``loading`` (``load()``, plain and quantized), ``embedded`` (the offline
SmolLM2 model), ``chat``, ``sampling``, ``measure`` and ``units`` (bytes and memory),
``bench`` (speed and quality), ``quantize``, ``finetune``, ``serve`` and ``system`` (machine
facts). The Yi-shaped random models the tests and the GPU runner use live in
``tools/yi_shape.py``, outside the learners' package.

``load`` and its errors are imported on first use: they pull in transformers (seconds), which
``yi_helpers.models`` and the others that need no model do not.
"""

import importlib
import logging
import warnings

# Notebooks here show text progress bars (no ipywidgets, so no widget state in committed
# outputs): silence tqdm's one-time hint that a widget version exists.
warnings.filterwarnings("ignore", message="IProgress not found")
# torchao (lesson 05) is imported by transformers when installed; on a CPU its CUDA/MX kernels
# cannot load and it logs each failure with the full site-packages path, and torch logs a
# deprecation about torchao's enums. Neither matters on a CPU; keep lesson outputs clean.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
# On a CPU with AVX-512 bf16, importing bitsandbytes (transformers and peft do) warns that an
# optional kernel from the hub ("pip install kernels") is missing, then uses its built-in one:
# offline that is the expected path, not an error for the learner to chase.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# peft asks transformers 5 for ``is_gradient_checkpointing`` (renamed ``is_activation_checkpointing``);
# the FutureWarning names a site-packages path and is not the learner's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)



def _quiet_library_progress_in_notebooks() -> None:
    """In a notebook, the libraries' own progress bars (transformers' "Loading weights" and
    "Writing model shards", datasets', the hub's) would leave chunks of stderr in committed
    outputs: turn them off. The package's long steps draw one line of their own
    (``yi_helpers.system.progress``). Outside notebooks nothing changes."""
    import os
    import sys

    from .system import in_notebook

    if not in_notebook():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


_quiet_library_progress_in_notebooks()

from .models import REGISTRY, estimate_memory, known_models, recommend, spec  # noqa: E402

_FROM_LOADING = ("load", "ModelNotAvailableError", "NotEnoughMemoryError")

__all__ = ["REGISTRY", "estimate_memory", "known_models", "recommend", "spec", *_FROM_LOADING]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _FROM_LOADING:
        return getattr(importlib.import_module(".loading", __name__), name)
    raise AttributeError(f"module 'yi_helpers' has no attribute {name!r}")
