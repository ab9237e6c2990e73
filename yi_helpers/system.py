"""Facts about the machine a notebook runs on, progress bars, quiet back ends, artefact folders.

Numbers in the lessons are measured where the notebook runs; ``machine_summary()`` names that
machine next to them.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import time
from pathlib import Path
from typing import Iterator

__all__ = ["cpu_features", "machine_summary", "in_notebook", "progress",
           "quiet_gptqmodel_banner", "import_gptqmodel", "quiet_backends", "quiet_hf_progress",
           "artifact_dir"]


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Flags that mean the CPU multiplies bfloat16 natively: x86's AVX-512 BF16 and AMX (Intel Cooper
# Lake / Sapphire Rapids and later, AMD Zen 4 and later), Arm's BF16 extension (Graviton 3, ...).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` line of ``/proc/cpuinfo`` on x86, ``Features`` on
    Arm. Empty when the file is missing (macOS, Windows). ``cpuinfo`` replaces the file's text."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str]) -> bool | None:
    """Whether a CPU with these flags multiplies bfloat16 natively; ``None`` when no flags are
    known (then measure: time a bf16 matmul against a float32 one)."""
    if not flags:
        return None
    return any(flag in flags for flag in BF16_FLAGS)


def cpu_features(flags: frozenset[str] | set[str] | None = None) -> str:
    """What decides CPU speed and rounding in the lessons, in words: the vector instructions
    torch's kernels use (``torch.backends.cpu.get_cpu_capability()``: AVX512, AVX2, ...) and
    whether bfloat16 is native, e.g. ``"AVX2 kernels, no native bf16"``."""
    import torch

    flags = cpu_flags() if flags is None else flags
    bf16 = native_bf16(flags)
    if bf16 is None:
        bf16_text = "bf16 support unknown"
    elif bf16:
        bf16_text = "native bf16 (" + ", ".join(f for f in BF16_FLAGS if f in flags) + ")"
    else:
        bf16_text = "no native bf16"
    return f"{torch.backends.cpu.get_cpu_capability()} kernels, {bf16_text}"


def machine_summary() -> str:
    """One line: CPU, cores, GPU if any, and the torch / transformers versions."""
    import torch
    import transformers

    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU")
    return (f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), "
            f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook, papermill, nbval), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress:
    """A one-line progress display for notebooks, redrawn in place (an IPython display handle):
    a learner watches it move, and the saved notebook keeps only its last state, for example
    ``training: 48/48 steps in 67 s (1.40 s/step), loss=0.093``. The part of tqdm's interface
    the package uses: iteration, ``update``, ``set_postfix``, ``close``, ``n``."""

    def __init__(self, iterable=None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, mininterval: float = 5.0, **_ignored):
        from IPython.display import Pretty, display

        self.iterable, self.desc, self.unit, self.mininterval = iterable, desc, unit, mininterval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.initial = total, initial, initial
        self.postfix = ""
        self.start = self._drawn = time.perf_counter()
        self._pretty = Pretty
        self._handle = display(Pretty(self._line()), display_id=True)
        self._closed = False

    def _line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        unit = self.unit if len(self.unit) < 3 else f"{self.unit}s"  # "it", "steps"
        line = f"{self.desc}: {count} {unit}" if self.desc else f"{count} {unit}"
        done = self.n - self.initial
        line += f" in {elapsed:.0f} s" if final else f", {elapsed:.0f} s so far"
        if done > 0:
            line += f" ({elapsed / done:.2f} s/{self.unit})"
        return line + (f", {self.postfix}" if self.postfix else "")

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._drawn >= self.mininterval:
            self._handle.update(self._pretty(self._line(final=self._closed)))
            self._drawn = now

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if refresh:
            self._draw()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(force=True)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable=None, **kwargs):
    """A progress display: in a notebook one line redrawn in place (:class:`NotebookProgress`:
    the saved notebook keeps only the finished line, with its time), elsewhere a tqdm bar.
    Takes tqdm's arguments (``total``, ``desc``, ``unit``, ``initial``, ``mininterval``)."""
    kwargs.setdefault("mininterval", 5.0)  # few redraws: short logs in notebooks and CI
    if in_notebook():
        return NotebookProgress(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def quiet_gptqmodel_banner() -> None:
    """Keep gptqmodel's import banner out of lesson outputs (call before anything imports it).

    gptqmodel (imported by peft when an adapter is added or loaded, and by lesson 05's
    quantizer) logs a banner and a free-threading hint through logbar's shared logger on
    import. That logger resets its level when first created, so create it here, quietly, and
    raise its level. Nothing happens when logbar is not installed.
    """
    import importlib.util
    import logging

    if importlib.util.find_spec("logbar") is None:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)


def import_gptqmodel():
    """Import GPTQModel quietly, sized for this machine; returns the module.

    GPTQModel sizes its CPU worker pool at import; on a 2-core machine its own default fails
    ("requests 2 workers but parent 'cpu' only has 1"), so the pool is set to at most 2.
    """
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
    import logging

    buffer = io.StringIO()
    levels = {name: logging.getLogger(name).level
              for name in ("tokenicer", "gptqmodel", "torchao", "accelerate.utils.modeling")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


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


def artifact_dir(name: str, model: str = "embedded") -> Path:
    """Folder where a lesson leaves something a later lesson can reuse (an adapter, a quantized
    model): ``<hub cache>/artifacts/<model>/<name>`` (``$YI_HUB_CACHE`` moves the cache). One
    folder per model, so a run on another model (a Yi model, the Yi stand-in) never reads or
    overwrites the embedded model's artefacts. Not created."""
    import hashlib

    from .embedded import cache_dir

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact name must be a plain folder name, got {name!r}")
    model = os.fspath(model)
    path = Path(model).expanduser()
    if path.is_dir():  # a local folder: its name and a short hash of where it is
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        slug = f"{path.resolve().name}-{digest}"
    else:  # "embedded", or a hub id: "01-ai/Yi-6B-Chat" -> "01-ai--Yi-6B-Chat"
        slug = model.replace("/", "--")
    if not slug or slug.startswith("."):
        raise ValueError(f"model must name a model, got {model!r}")
    return Path(cache_dir()) / "artifacts" / slug / name
