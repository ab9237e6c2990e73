"""Quiet output: one progress line per long step; the libraries' logs, banners and progress
bars kept out of lesson outputs. Nothing acts on import: a lesson calls :func:`quiet_libraries`
in its first code cell, and the package quiets a library around its own calls."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from typing import Iterator

__all__ = ["progress", "quiet_libraries", "quiet_gptqmodel_banner", "quiet_hf_progress"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook, papermill, nbval), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


def quiet_libraries() -> None:
    """Keep out of a lesson's outputs the libraries' notes a learner need not act on; call it
    before using transformers, peft or torchao. torchao (imported by transformers) logs each
    CUDA/MX kernel it cannot load on a CPU, and torch a deprecation about its enums;
    bitsandbytes (imported by transformers and peft) logs, on a CPU with AVX-512 bf16, that an
    optional hub kernel is missing before using its built-in one; peft asks transformers 5 for
    the renamed ``is_gradient_checkpointing`` (a FutureWarning). In a notebook the libraries'
    progress bars (transformers' "Loading weights", the hub's, datasets') would leave stderr
    chunks in committed outputs: they are turned off (the package's long steps draw one line,
    :func:`progress`), and so is tqdm's hint that a widget version exists (no ipywidgets)."""
    import sys

    for name in ("torchao", "torch.utils._pytree", "bitsandbytes.backends.cpu.ops"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    if not in_notebook():
        return
    warnings.filterwarnings("ignore", message="IProgress not found")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read on import
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def progress(iterable, *, total: int | None = None, desc: str = "", unit: str = "it",
             mininterval: float = 5.0, **tqdm_kwargs):
    """``iterable`` with a progress display: tqdm in a terminal; in a notebook one line redrawn
    in place (an IPython display handle), so that the saved notebook keeps only the finished
    line, e.g. ``settings: 5/5 it in 12 s (2.40 s/it)``. Few redraws: short logs in CI."""
    if not in_notebook():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=mininterval,
                    **tqdm_kwargs)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return _notebook_progress(iterable, total, desc, unit, mininterval)


def _notebook_progress(iterable, total: int | None, desc: str, unit: str, mininterval: float):
    from IPython.display import Pretty, display

    start = drawn = time.perf_counter()
    units = unit if len(unit) < 3 else f"{unit}s"  # "it", "steps"

    def line(n: int, final: bool = False) -> str:
        elapsed = time.perf_counter() - start
        text = f"{n}/{total} {units}" if total is not None else f"{n} {units}"
        text = f"{desc}: {text}" if desc else text
        text += f" in {elapsed:.0f} s" if final else f", {elapsed:.0f} s so far"
        return text + (f" ({elapsed / n:.2f} s/{unit})" if n else "")

    handle = display(Pretty(line(0)), display_id=True)
    n = 0
    try:
        for item in iterable:
            yield item
            n += 1
            if time.perf_counter() - drawn >= mininterval:
                handle.update(Pretty(line(n)))
                drawn = time.perf_counter()
    finally:
        handle.update(Pretty(line(n, final=True)))


def quiet_gptqmodel_banner() -> None:
    """Keep gptqmodel's import banner and free-threading hint out of lesson outputs; call it
    before anything (peft adding or loading an adapter, lesson 05) imports gptqmodel. They go
    through logbar's shared logger, which resets its level when first created: create it here,
    quietly, and raise its level."""
    import importlib.util

    if importlib.util.find_spec("logbar") is None:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)


def import_gptqmodel():
    """Import GPTQModel quietly and return it. Its CPU worker pool is sized at import, and on a
    2-core machine its own default fails ("requests 2 workers but parent 'cpu' only has 1"): at
    most 2 workers here."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(2, os.cpu_count() or 1))))
    quiet_gptqmodel_banner()
    import gptqmodel

    return gptqmodel


@contextlib.contextmanager
def quiet_backends() -> Iterator[io.StringIO]:
    """Capture the quantization back ends' very long console logs (tables, progress bars) in a
    buffer, and raise their loggers to ERROR meanwhile. accelerate's too: GPTQModel plans the
    device map before it ties the embedding to the LM head, and accelerate warns that "the
    model weights are not tied" (they are, once loaded; the reloaded replies show it)."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(name) for name in
               ("tokenicer", "gptqmodel", "torchao", "accelerate.utils.modeling")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' progress bars ("Loading weights", "Writing model shards") inside the
    block: they take a second here and would fill lesson outputs."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
