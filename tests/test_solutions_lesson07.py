"""The exercise solutions of lesson 07 (serving) are correct (no server needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from yi_helpers.solutions import lesson07


def test_chatml_stop_config_for_yi_and_embedded():
    yi_like = SimpleNamespace(get_vocab=lambda: {"<|im_end|>": 7, "<|endoftext|>": 2},
                              eos_token_id=2)
    assert json.loads(lesson07.chatml_stop_config(yi_like)) == {"eos_token_id": [7, 2]}
    from transformers import AutoTokenizer

    from yi_helpers import embedded

    tok = AutoTokenizer.from_pretrained(embedded.prepare(verbose=False))
    config = json.loads(lesson07.chatml_stop_config(tok, max_new_tokens=8))
    assert config["eos_token_id"][0] == tok.convert_tokens_to_ids("<|im_end|>")
    assert config["max_new_tokens"] == 8


def _chunk(content=None, finish=None, role=None):
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk.model_validate({
        "id": "x", "created": 0, "model": "m", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "finish_reason": finish,
                     "delta": {"content": content, "role": role}}]})


def test_collect_stream():
    chunks = [_chunk(role="assistant"), _chunk("Hel"), _chunk("lo"), _chunk(""),
              _chunk(finish="stop")]
    assert lesson07.collect_stream(chunks) == ("Hello", "stop", 2)
    assert lesson07.collect_stream([]) == ("", None, 0)


def test_safe_chat_returns_the_error_instead_of_raising():
    import httpx2
    import openai

    def create(**request):
        if request["max_tokens"] <= 0:
            req = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
            raise openai.InternalServerError(
                "boom", response=httpx2.Response(500, text="Internal Server Error", request=req),
                body=None)
        message = SimpleNamespace(content="hi")
        return SimpleNamespace(choices=[SimpleNamespace(message=message)])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    assert lesson07.safe_chat(client, max_tokens=4) == ("hi", None)
    assert lesson07.safe_chat(client, max_tokens=0) == (
        None, {"status": 500, "error": "Internal Server Error"})

    def offline(**request):
        raise openai.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1"))

    client.chat.completions.create = offline
    with pytest.raises(openai.APIConnectionError):
        lesson07.safe_chat(client, max_tokens=4)
