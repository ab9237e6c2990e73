"""Chat data for fine-tuning: the original Yi format converted, and assistant-only labels.

``tokenize_chat`` labels only the assistant's replies and their ``<|im_end|>`` (the original Yi
code learned the prompt and the padding as well). Lesson 04's recipe does the same with
``apply_chat_template``; this by-hand version cuts the rendered text into pieces, handles
multi-turn conversations, and is the reference the lesson checks the recipe against.
"""

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
    parts = _TURN.split(text)[1:]  # [speaker, text, speaker, text, ..., "Assistant", ""]
    speakers, texts = parts[0::2], [t.strip() for t in parts[1::2]]
    if speakers != ["Human", "Assistant"] * (len(speakers) // 2):
        raise ValueError(f"turns must alternate Human/Assistant, got "
                         f"{' '.join(s + ':' for s in speakers)}")
    if "" in texts[:-1]:
        turn = texts.index("")
        raise ValueError(f"turn {turn + 1} ('{speakers[turn]}:') is empty")
    return [{"role": "user" if speaker == "Human" else "assistant", "content": content}
            for speaker, content in zip(speakers[:-1], texts[:-1])]


def convert_yi_sft(source: str | Path | Iterable[str]) -> list[dict[str, Any]]:
    """Original-Yi rows ``{"prompt": "Human: … Assistant:", "chosen": "…"}`` (a JSONL path or
    lines) as ``{"messages": [...]}`` rows. The first malformed row is a ``ValueError("line N:
    …")`` saying what is wrong; no row is ever dropped silently."""
    lines, where = source, ""
    if isinstance(source, (str, Path)):
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        where = f"{Path(source).name} "
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
    """``input_ids``, ``attention_mask`` and assistant-only ``labels`` (``-100`` elsewhere) for
    one conversation, cut to ``max_length`` tokens. ``template`` defaults to the tokenizer's own,
    so training sees exactly what ``chat()`` sends at inference."""
    if template is None:
        template = default_template(tokenizer)
    ids, labels = [], []
    for text, learned in _pieces(messages, template):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if learned else [IGNORE_INDEX] * len(piece)
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def learned_text(tokenizer: Any, features: Mapping[str, Sequence[int]]) -> str:
    """The text of the labelled (learned) tokens: what the loss trains on."""
    return tokenizer.decode([t for t in features["labels"] if t != IGNORE_INDEX])
