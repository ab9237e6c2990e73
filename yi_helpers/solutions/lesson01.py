"""Notebook 01 (loading Yi): solutions to its exercises, answers to its questions."""

from ..models import MemoryEstimate, estimate_memory, recommend, spec

__all__ = ["long_context_memory", "largest_for_gpu", "bf16_vs_fp32_reply",
           "parameters_by_component", "QUESTIONS", "ANSWERS"]


def long_context_memory(model: str = "01-ai/Yi-6B-200K", context_len: int = 200_000
                        ) -> tuple[MemoryEstimate, str]:
    """Exercise 1: the memory for one sequence of ``context_len`` tokens, and its largest part.
    For Yi-6B-200K at 200,000 tokens the KV cache (4 KV heads x 128 x 32 layers x 2 x 2 bytes =
    64 KiB a token, about 13 GB) passes the 12 GB of weights."""
    est = estimate_memory(model, batch_size=1, context_len=context_len)
    parts = {"weights": est.weights_gb, "kv_cache": est.kv_cache_gb, "overhead": est.overhead_gb}
    return est, max(parts, key=parts.get)


def largest_for_gpu(memory_gb: float = 24, batch_size: int = 16) -> str | None:
    """Exercise 2: a larger batch needs a larger KV cache, so a smaller or more quantized model."""
    return recommend(memory_gb, batch_size=batch_size)


def bf16_vs_fp32_reply(model_id: str = "embedded", question: str = "What is the capital of France?",
                       max_new_tokens: int = 24) -> tuple[str, str]:
    """Exercise 3: the greedy replies in float32 and in bfloat16, on the CPU. They often agree,
    and differ from the first token where two candidates were nearly tied."""
    from .. import load
    from ..chat import chat

    replies = []
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = load(model_id, device="cpu", dtype=dtype)
        replies.append(chat(model, tokenizer, [{"role": "user", "content": question}],
                            max_new_tokens=max_new_tokens))
    return replies[0], replies[1]


def parameters_by_component(model: str = "01-ai/Yi-1.5-9B") -> dict[str, dict]:
    """Exercise 4: parameters by component from the config (no weights), and their shares."""
    parts = spec(model).parameter_breakdown()
    total = sum(parts.values())
    return {k: {"parameters": v, "share": v / total} for k, v in parts.items()}


QUESTIONS = [
    'Yi-6B has 32 attention heads but only 4 key/value heads. What does that do to the KV cache, and why does it matter for long prompts?',
    "Yi's tokenizer names `<|endoftext|>` (id 2) as its end token. Why must generation also stop at `<|im_end|>` (id 7)?",
    'bf16 halves the memory of the weights. Why can a bf16 greedy reply still differ from the float32 one?',
]
ANSWERS = [
    'Grouped-query attention: 8 query heads share each key/value head, so each token stores keys and values for 4 heads instead of 32, an 8x smaller KV cache. The cache grows with batch x context, so at long contexts (Yi-6B-200K) it decides how many tokens fit.',
    'A chat turn ends with `<|im_end|>`, not with id 2. Stopping only at id 2, the model goes on after its turn (often writing the next user turn) until `max_new_tokens`. `load()` adds `<|im_end|>` to the stop ids of every chat model.',
    'bf16 keeps 8 bits of mantissa: every weight and activation is rounded, so the logits move a little. Where two candidate tokens are nearly tied, the argmax can flip, and from that token on the two replies diverge.',
]
