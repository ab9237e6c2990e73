"""Benchmarks, measured honestly (lesson 06): :mod:`.speed`, :mod:`.perplexity` (the hub's one
definition), multiple-choice accuracy (:mod:`.evaluation`) and one JSON record of them all
(:mod:`.results`). Everything public is importable from ``yi_helpers.bench`` itself."""

from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__ as _evaluation_all
from .perplexity import *  # noqa: F401,F403
from .perplexity import __all__ as _perplexity_all
from .results import *  # noqa: F401,F403
from .results import __all__ as _results_all
from .speed import *  # noqa: F401,F403
from .speed import __all__ as _speed_all

__all__ = [*_speed_all, *_perplexity_all, *_evaluation_all, *_results_all]
