"""Text and chat data written for this project, shipped in ``yi_helpers/data``: held-out prose
for perplexity (never trained on), the hub's bilingual chat set for fine-tuning (lesson 04),
and a varied calibration set for quantization (lesson 05)."""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["data_path", "data_rows", "heldout_text", "load_conversations",
           "calibration_conversations", "read_jsonl"]

LANGUAGES = ("en", "zh")
SPLITS = ("train", "eval")


def data_path(name: str) -> Path:
    """Path of a file shipped in ``yi_helpers/data``."""
    return Path(str(resources.files("yi_helpers") / "data" / name))


def heldout_text(lang: str = "en") -> str:
    """A few hundred words of English (``"en"``) or Chinese (``"zh"``) prose about a harbour
    town, for perplexity."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    return data_path(f"heldout_{lang}.txt").read_text(encoding="utf-8").strip()


def data_rows(name: str) -> list[dict]:
    """The rows of a JSONL file in ``yi_helpers/data``, parsed once per process; each call gets
    its own copies."""
    return copy.deepcopy(list(_parsed(name)))


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> tuple:
    path = data_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall yi_helpers (`make setup`)")
    return tuple(row for _, row in read_jsonl(path.read_text(encoding="utf-8").splitlines(),
                                              where=f"{name} "))


def load_conversations(split: str = "train") -> list[dict]:
    """The hub chat data set: a list of ``{"messages": [...], ...}`` rows for ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return data_rows(f"hub_chat_{split}.jsonl")


def calibration_conversations() -> list[dict]:
    """The quantization calibration set: 32 ``{"lang", "topic", "messages"}`` rows, 16 English
    and 16 Chinese, on everyday topics. GPTQ fitted to the narrow fine-tuning set (8 facts about
    Yi) did worse than plain rounding on other text; varied topics fix that. None is about the
    held-out texts' subject."""
    return data_rows("calibration_chat.jsonl")


def read_jsonl(lines: Iterable[str], where: str = "") -> Iterator[tuple[int, object]]:
    """``(line number, parsed row)`` for each non-blank JSONL line; invalid JSON is a
    ``ValueError`` naming ``where`` (e.g. the file name) and the line number."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}line {number}: not valid JSON ({exc.msg})") from None
