"""Notebook 02 (chat templates): solutions to its exercises, answers to its questions."""

from typing import Any, Mapping, Sequence

from ..chat import IM_END, IM_START, render, validate_messages

__all__ = ["template_overhead", "trim_to_budget", "yi15_to_yi", "count_invented_turns",
           "QUESTIONS", "ANSWERS"]


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def template_overhead(tokenizer: Any, messages: Sequence[Mapping[str, str]],
                      template: Any = "yi") -> int:
    """Exercise 1: tokens the template adds beyond the contents. For ChatML a constant per
    message (``<|im_start|>``, role, ``\\n``, ``<|im_end|>``, ``\\n``) plus the generation prompt:
    linear in the turns (give or take a token where BPE merges content with a newline)."""
    checked = validate_messages(messages)
    content = sum(_n_tokens(tokenizer, m["content"]) for m in checked)
    return _n_tokens(tokenizer, render(checked, template=template)) - content


def trim_to_budget(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_tokens: int,
                   template: Any = "yi") -> list[dict[str, str]]:
    """Exercise 2: the longest suffix of the history (system message kept) that fits."""
    checked = validate_messages(messages)
    system = checked[:1] if checked[0]["role"] == "system" else []
    rest = checked[len(system):]
    for start in range(len(rest)):
        candidate = system + rest[start:]
        if _n_tokens(tokenizer, render(candidate, template=template)) <= max_tokens:
            return candidate
    raise ValueError(f"even the last message does not fit in {max_tokens} tokens")


def yi15_to_yi(prompt: str) -> list[dict[str, str]]:
    """Exercise 3: parse a Yi-1.5 style prompt (raw system text first) back into messages."""
    head, _, body = prompt.partition(IM_START)
    messages = [{"role": "system", "content": head}] if head else []
    for chunk in (IM_START + body).split(IM_START)[1:]:
        role, _, rest = chunk.partition("\n")
        content, closed, _ = rest.partition(IM_END)
        if closed or role != "assistant" or content:  # not the empty generation prompt
            messages.append({"role": role, "content": content})
    return validate_messages(messages)


def count_invented_turns(tokenizer: Any, generated_ids: Sequence[int]) -> int:
    """Exercise 4: turns a never-stopping generation invented (``<|im_start|>`` tokens)."""
    return list(generated_ids).count(tokenizer.convert_tokens_to_ids(IM_START))


QUESTIONS = [
    'What does `add_generation_prompt=True` add to the prompt, and what does the model do without it?',
    'Why does a reply "never stop" when `<|im_end|>` is not a stop token?',
    'Why does each reply of a long conversation cost more than the one before, and what does `Conversation.fit` do about it?',
]
ANSWERS = [
    "It appends `<|im_start|>assistant\\n`, so the next tokens are the assistant's reply. Without it the prompt ends after the user's `<|im_end|>`, and the model has to guess who speaks next: it may start a new user turn or another role.",
    "The model ends its turn with `<|im_end|>`; if generation only stops at the tokenizer's eos, it continues past the turn (inventing new turns) until the token limit.",
    'The whole history is rendered and read again for every reply, so the prompt grows with each turn. `fit` drops the oldest user/assistant turns (never the system message) so that the prompt plus the reserved reply fit in the context, and logs what it dropped.',
]
