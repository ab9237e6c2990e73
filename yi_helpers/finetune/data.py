"""Chat data for fine-tuning: the original Yi format converted, and assistant-only labels.

- ``convert_yi_sft``: rows of the original Yi fine-tuning code, ``{"prompt": "Human: …
  Assistant:", "chosen": "…"}``, become ``{"messages": [...]}`` rows. A malformed row is a
  ``ValueError`` naming its line and what is wrong; no row is ever dropped silently.
- ``tokenize_chat``: a conversation rendered through the chat template, with ``labels`` equal to
  the input ids on the assistant's replies and their ``<|im_end|>`` and ``-100`` everywhere else
  (system, user, template tokens). The original code learned the prompt and the padding as
  well. Lesson 04's recipe does the same with ``apply_chat_template``; this by-hand version
  cuts the rendered text into pieces, handles multi-turn conversations, and is the reference
  the lesson checks the recipe against.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..corpus import read_jsonl
from ..chat import IM_END, default_template, render, validate_messages

__all__ = ["IGNORE_INDEX", "convert_yi_sft", "tokenize_chat", "learned_text"]

IGNORE_INDEX = -100
_TURN = re.compile(r"(Human|Assistant):")


def parse_yi_prompt(prompt: str) -> list[dict[str, str]]:
    """``"Human: q1 Assistant: a1 Human: q2 Assistant:"`` → user/assistant messages (the last,
    empty ``Assistant:`` is where the reply goes and is not returned)."""
    text = prompt.strip()
    if not text.startswith("Human:"):
        raise ValueError(f"prompt must start with 'Human:', got {text[:30]!r}")
    if not text.endswith("Assistant:"):
        raise ValueError(f"prompt must end with 'Assistant:' (where the reply goes), "
                         f"got ...{text[-30:]!r}")
    parts = _TURN.split(text)[1:]  # [speaker, text, speaker, text, ...]
    speakers, texts = parts[0::2], [t.strip() for t in parts[1::2]]
    messages = []
    for i, (speaker, content) in enumerate(zip(speakers[:-1], texts[:-1])):
        expected = "Human" if i % 2 == 0 else "Assistant"
        if speaker != expected:
            raise ValueError(f"turn {i + 1} is '{speaker}:' but '{expected}:' was expected "
                             f"(turns must alternate Human/Assistant)")
        if not content:
            raise ValueError(f"turn {i + 1} ('{speaker}:') is empty")
        messages.append({"role": "user" if speaker == "Human" else "assistant",
                         "content": content})
    if speakers[-1] != "Assistant" or len(speakers) % 2:
        raise ValueError("turns must alternate Human/Assistant and end with 'Assistant:'")
    if texts[-1]:
        raise ValueError(f"text after the final 'Assistant:': {texts[-1][:30]!r}")
    return messages


def convert_yi_sft(source: str | Path | Iterable[str]) -> list[dict[str, Any]]:
    """Convert original-Yi fine-tuning rows (a JSONL path or an iterable of lines) to
    ``{"messages": [...]}`` rows, one per non-blank input line.

    Raises ``ValueError("line N: …")`` at the first malformed row: invalid JSON, not an object,
    missing or non-string ``prompt`` / ``chosen``, empty reply, or a prompt that is not
    ``Human: … Assistant:`` (alternating, ending with ``Assistant:``).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        lines: Iterable[str] = path.read_text(encoding="utf-8").splitlines()
        where = f"{path.name} "
    else:
        lines, where = source, ""
    rows = []
    for number, row in read_jsonl(lines, where):
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            for key in ("prompt", "chosen"):
                if key not in row:
                    raise ValueError(f"missing key {key!r} (keys: {sorted(row)})")
                if not isinstance(row[key], str):
                    raise ValueError(f"{key!r} must be a string, got {type(row[key]).__name__}")
            if not row["chosen"].strip():
                raise ValueError("'chosen' (the reply) is empty")
            messages = parse_yi_prompt(row["prompt"])
        except ValueError as exc:
            raise ValueError(f"{where}line {number}: {exc}") from None
        messages.append({"role": "assistant", "content": row["chosen"].strip()})
        rows.append({"messages": messages})
    return rows


def _pieces(messages: Sequence[Mapping[str, str]], template: Any) -> list[tuple[str, bool]]:
    """The rendered conversation cut into ``(text, learned)`` pieces: each assistant reply plus
    its ``<|im_end|>`` is learned; everything else is not."""
    messages = validate_messages(messages)
    full = render(messages, add_generation_prompt=False, template=template)
    pieces, done = [], 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise ValueError("a conversation cannot start with an assistant message")
        prefix = render(messages[:i], add_generation_prompt=True, template=template)
        reply = message["content"] + IM_END
        start = len(prefix)
        if not full.startswith(prefix) or full[start:start + len(reply)] != reply:
            raise ValueError("the chat template does not render the assistant reply right after "
                             "the generation prompt, ending with <|im_end|>: cannot find the reply")
        pieces += [(full[done:start], False), (reply, True)]
        done = start + len(reply)
    pieces.append((full[done:], False))
    return [(text, learned) for text, learned in pieces if text]


def tokenize_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], *,
                  max_length: int = 256, template: Any = None) -> dict[str, list[int]]:
    """``input_ids``, ``attention_mask`` and assistant-only ``labels`` for one conversation.

    ``template`` defaults to the tokenizer's own chat template (Yi-Chat's ChatML for Yi, the
    embedded model's for it), so training sees exactly what ``chat()`` sends at inference.
    Longer conversations are cut to ``max_length`` tokens.
    """
    if template is None:
        template = default_template(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    for text, learned in _pieces(messages, template):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if learned else [IGNORE_INDEX] * len(piece)
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def learned_text(tokenizer: Any, features: Mapping[str, Sequence[int]]) -> str:
    """The text of the labelled (learned) tokens: what the loss trains on."""
    return tokenizer.decode([t for t in features["labels"] if t != IGNORE_INDEX])
