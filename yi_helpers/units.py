"""Units of memory, said once for the whole hub.

The hub reports **decimal** units: ``GB`` is 10⁹ bytes and ``MB`` 10⁶, as GPU vendors (an
"80 GB" H100), the Yi README's memory table and ``nvidia-smi``'s marketing names do. A name
that says ``GiB`` / ``MiB`` / ``KiB`` means the binary unit (2³⁰, 2²⁰, 2¹⁰ bytes), which is what
``free -h``, ``/proc/meminfo`` (kB there means KiB) and PyTorch's memory summary print. One GiB
is 1.074 GB: the difference is 7%, enough to matter when a model "just fits".
"""

from __future__ import annotations

__all__ = ["KB", "MB", "GB", "KiB", "MiB", "GiB", "to_gb", "to_mb"]

KB = 1e3
MB = 1e6
GB = 1e9
KiB = 2 ** 10
MiB = 2 ** 20
GiB = 2 ** 30


def to_gb(n_bytes: float) -> float:
    """Bytes → decimal gigabytes (10⁹ bytes)."""
    return n_bytes / GB


def to_mb(n_bytes: float) -> float:
    """Bytes → decimal megabytes (10⁶ bytes)."""
    return n_bytes / MB
