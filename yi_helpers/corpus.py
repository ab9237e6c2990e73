"""Text and chat data written for the hub and shipped inside the package (``yi_helpers/data``).

- ``heldout_text("en" | "zh")``: a few hundred words of plain English / Chinese prose about a
  harbour town, written for this project and never trained on by the lessons. Lessons measure
  perplexity on it (quantization, benchmarks, "did fine-tuning hurt general text?").
- ``load_conversations(split)``: the hub's bilingual chat data set (``messages`` format), used
  to fine-tune (lesson 04).
- ``calibration_conversations()``: 32 short conversations (16 English, 16 Chinese) on everyday
  topics (cooking, science, history, health, programming...), written for this project to
  calibrate quantization (lesson 05). GPTQ fitted to the narrow fine-tuning set (8 facts about
  Yi) did worse than plain rounding on other text; varied topics fix that. None is about the
  held-out texts' subject.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["LANGUAGES", "data_path", "heldout_text", "load_conversations",
           "calibration_conversations", "read_jsonl"]

LANGUAGES = ("en", "zh")
SPLITS = ("train", "eval")


def data_path(name: str) -> Path:
    """Path of a file shipped in ``yi_helpers/data``."""
    return Path(str(resources.files("yi_helpers") / "data" / name))


def heldout_text(lang: str = "en") -> str:
    """Held-out prose in English (``"en"``) or Chinese (``"zh"``) for perplexity."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    return data_path(f"heldout_{lang}.txt").read_text(encoding="utf-8").strip()


def load_conversations(split: str = "train") -> list[dict]:
    """The hub chat data set: a list of ``{"messages": [...], ...}`` rows for ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = data_path(f"hub_chat_{split}.jsonl")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall yi_helpers (`make setup`)")
    return [row for _, row in read_jsonl(path.read_text(encoding="utf-8").splitlines(),
                                         where=f"{path.name} ")]


def calibration_conversations(lang: str | None = None) -> list[dict]:
    """The quantization calibration set: ``{"lang", "topic", "messages"}`` rows, English and
    Chinese (``lang="en"`` or ``"zh"`` for one language only)."""
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES} or None, got {lang!r}")
    path = data_path("calibration_chat.jsonl")
    rows = [row for _, row in read_jsonl(path.read_text(encoding="utf-8").splitlines(),
                                         where=f"{path.name} ")]
    return [row for row in rows if lang is None or row["lang"] == lang]


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
