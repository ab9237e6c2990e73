"""Memory, measured: the bytes a model holds, the peak of a block, what a process or device uses.

:func:`model_bytes` is the hub's one byte counter for a loaded model, :class:`TensorBytes` its
one measure of the peak memory of a block of code; process readings are Linux's
``/proc/self/status``, in MB (10⁶ bytes, :mod:`yi_helpers.units`).
"""

from __future__ import annotations

import os
from typing import Any

from .compat import synchronize
from .units import GB, MB

__all__ = ["model_bytes", "rss_mb", "peak_rss_mb", "reset_peak_rss", "release_memory"]


def _nbytes(t: Any) -> int:
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None and type(t).__name__ not in ("Tensor", "Parameter"):
        names, _ = flatten()  # a tensor subclass (torchao): count the tensors inside it
        return sum(_nbytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def model_bytes(model: Any) -> int:
    """Bytes of a model's parameters and buffers: a tensor shared by two names (tied
    embeddings) once, quantized tensors as stored (torchao's by the int8 data and scales inside
    them; GPTQ/AWQ layers by their packed buffers)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        try:
            key = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):  # tensor subclasses have no single storage
            key = id(t)
        if key not in seen:
            seen.add(key)
            total += _nbytes(t)
    return total


def cache_bytes(cache: Any) -> int:
    """Bytes the keys and values of a transformers cache object hold, every layer."""
    return sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (layer.keys, layer.values) if t is not None)


def _status_field(name: str, path: str = "/proc/self/status") -> float | None:
    """A ``kB`` field of a ``/proc`` file (KiB, as the kernel counts) in MB; None elsewhere."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB; :func:`reset_peak_rss` restarts it."""
    peak = _status_field("VmHWM")
    if peak is not None:
        return peak
    import resource  # macOS: bytes, elsewhere KiB; it cannot be reset

    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / MB if os.uname().sysname == "Darwin" else raw * 1024 / MB


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB; NaN where it cannot be read."""
    now = _status_field("VmRSS")
    return float("nan") if now is None else now


def reset_peak_rss() -> bool:
    """Restart the VmHWM high-water mark at the current RSS (Linux: ``5 > /proc/self/clear_refs``).
    Returns False where that is not possible (the peak then covers the whole process life)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system, so that RSS growth
    measures what the next step allocates. On glibc it also fixes the mmap threshold at 128 KiB
    (glibc raises it after large frees; large buffers then land in the heap, where freed memory
    lingers, and the growth would depend on what ran before)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, never raised again
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


class TensorBytes:
    """The peak memory of the tensors created inside a ``with`` block: bytes above what was
    allocated at its start (``peak``; ``now``: still alive at its end; ``start``).

    Off CUDA a dispatch mode counts the storages PyTorch creates and frees, exactly (RSS adds
    slack), not views of older ones (``model``'s parameters and buffers, ``known`` tensors). On
    CUDA (``model``'s device) it is ``max_memory_allocated`` above the start, every allocation
    there included (``known`` unused); entering resets the peak statistics: do not nest it.

    >>> with torch.no_grad(), TensorBytes(model) as counted:
    ...     model(ids)
    """

    def __init__(self, model: Any = None, known: Any = ()) -> None:
        tensors = list(known)
        if model is not None:
            tensors += list(model.parameters()) + list(model.buffers())
        self.device = tensors[0].device if tensors else None
        self._cuda = self.device is not None and self.device.type == "cuda"
        self._known = {t.untyped_storage().data_ptr() for t in tensors}
        self._live: dict[int, int] = {}
        self.start = self.now = self.peak = 0

    def _count(self, out: Any) -> None:
        import weakref

        import torch
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in self._known or ptr in self._live:
                continue
            self._live[ptr] = storage.nbytes()
            self.now += self._live[ptr]
            self.peak = max(self.peak, self.now)
            weakref.finalize(storage, self._free, ptr)

    def _free(self, ptr: int) -> None:
        self.now -= self._live.pop(ptr, 0)

    def __enter__(self) -> "TensorBytes":
        import torch

        if self._cuda:
            release_memory()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                counter._count(out)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._cuda:
            self._mode.__exit__(*exc)
            return
        import torch

        synchronize(self.device)
        self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        self.now = torch.cuda.memory_allocated(self.device) - self.start


def device_memory_gb(device: str) -> float:
    """Memory the device has free now, GB: free GPU memory, or available RAM on a CPU."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free / GB
    meminfo = _status_field("MemAvailable", "/proc/meminfo")
    if meminfo is not None:
        return meminfo * MB / GB
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / GB
