"""Units of memory, said once for the whole hub. ``GB`` is 10⁹ bytes and ``MB`` 10⁶, as GPU
vendors (an "80 GB" H100) and the Yi README's memory table use them; ``GiB`` / ``MiB`` / ``KiB``
are 2³⁰, 2²⁰, 2¹⁰ bytes, as ``free -h``, ``/proc/meminfo`` (its kB) and PyTorch's memory summary
print. One GiB is 1.074 GB: 7%, enough to matter when a model "just fits"."""

from __future__ import annotations

__all__ = ["KB", "MB", "GB", "KiB", "MiB", "GiB"]

KB = 1e3
MB = 1e6
GB = 1e9
KiB = 2 ** 10
MiB = 2 ** 20
GiB = 2 ** 30

