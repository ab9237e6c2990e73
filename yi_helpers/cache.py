"""The hub's cache folder (``~/.cache/yi-hub``, or ``$YI_HUB_CACHE``), the artefact folders a
lesson leaves there for a later one, and the one way the package writes such a folder:
atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["cache_dir", "artifact_dir"]

CACHE_ENV = "YI_HUB_CACHE"


def cache_dir() -> Path:
    """The hub's cache folder: ``$YI_HUB_CACHE`` or ``~/.cache/yi-hub``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yi-hub"


def artifact_dir(name: str, model: str = "embedded") -> Path:
    """Folder where a lesson leaves something a later lesson can reuse (an adapter, a quantized
    model): ``<hub cache>/artifacts/<model>/<name>``. One folder per model, so a run on another
    model (a Yi model, the Yi stand-in) never reads or overwrites the embedded model's
    artefacts. Not created."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact name must be a plain folder name, got {name!r}")
    model = os.fspath(model)
    path = Path(model).expanduser()
    if model != "embedded" and path.is_dir():  # as resolve_model: "embedded" is never a folder  # a local folder: its name and a short hash of where it is
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        slug = f"{path.resolve().name}-{digest}"
    else:  # "embedded", or a hub id: "01-ai/Yi-6B-Chat" -> "01-ai--Yi-6B-Chat"
        slug = model.replace("/", "--")
    if not slug or slug.startswith("."):
        raise ValueError(f"model must name a model, got {model!r}")
    return cache_dir() / "artifacts" / slug / name


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A new temporary folder next to ``target`` to write into, renamed to ``target`` when the
    block ends: an error or a crash leaves the previous folder or none, never a half-written
    one (a later lesson would read it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    old = tmp.with_name(tmp.name.replace(".partial-", ".old-", 1))  # unique, as tmp is
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
