"""Benchmarks, measured honestly (lesson 06): speed, quality, and one JSON record of both.

- :mod:`.speed`: prefill / decode timings, compiled decoding, memory bandwidth and the roofline.
- :mod:`.evaluation`: perplexity (the hub's one definition) and multiple-choice accuracy, by
  hand and through lm-evaluation-harness.
- :mod:`.results`: the results record, its schema and its validation.

Everything public is importable from ``yi_helpers.bench`` itself (``bench.perplexity``).
"""

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__ as _evaluation_all
from .results import *  # noqa: F401,F403
from .results import __all__ as _results_all
from .speed import *  # noqa: F401,F403
from .speed import __all__ as _speed_all

__all__ = [*_speed_all, *_evaluation_all, *_results_all]
