"""Quantization (lesson 05), in three rooms:

- :mod:`.algorithms`: round-to-nearest, GPTQ and AWQ written out to read, AWQ's GEMM packing,
  layer inputs and output error: what each method does, in a few dozen lines.
- :mod:`.drivers`: ``quantize()``, which writes a loadable folder with the libraries (GPTQModel
  for GPTQ, torchao for int8 weight-only) or the written-out AWQ; calibration texts.
- :mod:`.reload`: back from a folder: ``dequantize`` / ``dense_copy`` (the stored weights as
  float32 layers), ``disk_size``, ``size_ratio``.

Load a quantized folder with ``yi_helpers.load(folder)``. Everything public is importable from
``yi_helpers.quantize`` itself.
"""

from .algorithms import *  # noqa: F401,F403
from .algorithms import __all__ as _algorithms_all
from .drivers import *  # noqa: F401,F403
from .drivers import __all__ as _drivers_all
from .reload import *  # noqa: F401,F403
from .reload import __all__ as _reload_all

__all__ = [*_algorithms_all, *_drivers_all, *_reload_all]
