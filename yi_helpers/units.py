"""Units of memory, said once for the whole hub.

The hub reports **decimal** units: ``GB`` is 10⁹ bytes and ``MB`` 10⁶, as GPU vendors (an
"80 GB" H100), the Yi README's memory table and ``nvidia-smi``'s marketing names do. A name
that says ``GiB`` / ``MiB`` / ``KiB`` means the binary unit (2³⁰, 2²⁰, 2¹⁰ bytes), which is what
``free -h``, ``/proc/meminfo`` (kB there means KiB) and PyTorch's memory summary print. One GiB
is 1.074 GB: the difference is 7%, enough to matter when a model "just fits".
"""

from __future__ import annotations

__all__ = ["KB", "MB", "GB", "KiB", "MiB", "GiB"]

KB = 1e3
MB = 1e6
GB = 1e9
KiB = 2 ** 10
MiB = 2 ** 20
GiB = 2 ** 30

