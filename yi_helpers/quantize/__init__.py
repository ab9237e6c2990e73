"""Quantization (lesson 05): :mod:`.algorithms` (RTN, GPTQ and AWQ written out to read),
:mod:`.drivers` (``quantize()``: a loadable folder through GPTQModel, torchao or the written-out
AWQ) and :mod:`.reload` (``dequantize``, ``dense_copy``, sizes)."""

from . import algorithms, drivers, reload
from .algorithms import *  # noqa: F401,F403
from .drivers import *  # noqa: F401,F403
from .reload import *  # noqa: F401,F403

__all__ = [*algorithms.__all__, *drivers.__all__, *reload.__all__]
