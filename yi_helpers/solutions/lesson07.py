"""Solutions to the exercises of notebook 07 (serving behind an OpenAI-compatible API)."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..chat import stop_token_ids
from ..serve import error_info

__all__ = ["chatml_stop_config", "collect_stream", "safe_chat"]


def chatml_stop_config(tokenizer: Any, **extra: Any) -> str:
    """Exercise 1: the per-request ``generation_config`` (a JSON string, as ``transformers serve``
    reads it from ``extra_body``) that stops a ChatML model at ``<|im_end|>`` and at its eos.

    For a Yi chat tokenizer that is ``{"eos_token_id": [7, 2]}``; ``extra`` adds other fields
    (``max_new_tokens=64``).
    """
    return json.dumps({"eos_token_id": stop_token_ids(tokenizer), **extra})


def collect_stream(chunks: Iterable[Any]) -> tuple[str, str | None, int]:
    """Exercise 2: ``(text, finish_reason, n_pieces)`` from a streamed chat completion: the reply
    joined from the deltas, the last finish reason, and how many chunks carried text."""
    text, finish, n_pieces = [], None, 0
    for chunk in chunks:
        for choice in chunk.choices or []:
            if choice.delta is not None and choice.delta.content:
                text.append(choice.delta.content)
                n_pieces += 1
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    return "".join(text), finish, n_pieces


def safe_chat(client: Any, **request: Any) -> tuple[str | None, dict | None]:
    """Exercise 3: ``(reply, None)`` when the server answers, ``(None, {"status", "error"})``
    when it refuses the request (an ``openai.APIStatusError``); the program goes on either way.
    Connection errors (no server) are not the request's fault and still raise."""
    import openai

    try:
        response = client.chat.completions.create(**request)
    except openai.APIStatusError as err:
        return None, error_info(err)
    return response.choices[0].message.content, None
