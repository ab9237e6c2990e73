"""Notebook 07 (serving an OpenAI API): solutions to its exercises, answers to its questions."""

import json
from typing import Any, Iterable

from ..chat import stop_token_ids
from ..serve import error_info

__all__ = ["chatml_stop_config", "collect_stream", "safe_chat", "QUESTIONS", "ANSWERS"]


def chatml_stop_config(tokenizer: Any, **extra: Any) -> str:
    """Exercise 1: the per-request ``generation_config`` (JSON, as ``transformers serve`` reads it
    from ``extra_body``) that stops at ``<|im_end|>`` and the eos: ``{"eos_token_id": [7, 2]}``
    for Yi; ``extra`` adds fields (``max_new_tokens=64``)."""
    return json.dumps({"eos_token_id": stop_token_ids(tokenizer), **extra})


def collect_stream(chunks: Iterable[Any]) -> tuple[str, str | None, int]:
    """Exercise 2: ``(text, finish_reason, n_pieces)`` of a streamed chat completion (the number
    of chunks that carried text)."""
    pieces, finish = [], None
    for chunk in chunks:
        for choice in chunk.choices or []:
            if choice.delta is not None and choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    return "".join(pieces), finish, len(pieces)


def safe_chat(client: Any, **request: Any) -> tuple[str | None, dict | None]:
    """Exercise 3: ``(reply, None)``, or ``(None, {"status", "error"})`` when the server refuses
    the request. Connection errors (no server) are not the request's fault and still raise."""
    import openai

    try:
        response = client.chat.completions.create(**request)
    except openai.APIStatusError as err:
        return None, error_info(err)
    return response.choices[0].message.content, None


QUESTIONS = [
    'Why does a server for Yi-Chat need `<|im_end|>` as a stop token, and which three fixes did the lesson show?',
    'What happened to latency when 8 clients sent requests at once to one `transformers serve` process, and why?',
    'A request with `temperature=0.8` came back identical to the greedy one. Why, and when does it sample?',
]
ANSWERS = [
    "Yi-Chat ends its turn with `<|im_end|>` while its tokenizer names another end token, so a server that stops at that one lets replies run on to the token limit. Fixes: list `<|im_end|>` among the eos ids in the model's `generation_config.json`; pass `stop` with the request; or, on vLLM, `stop_token_ids`.",
    'Requests queued: one inference thread serves one request at a time, so the latency grew about with the number of clients at the same tokens/s. Batching servers (vLLM) decode many requests together instead.',
    "`transformers serve` turns sampling off for `temperature=0` but never on: the model's generation config decides (`do_sample`). The embedded model's is greedy, so `temperature=0.8` alone changes nothing; a request can carry its own `generation_config` to sample. Yi-6B-Chat's config samples, so there the same request varies.",
]
