"""Did the model learn the facts? Greedy replies to held-out questions, judged per fact."""

from __future__ import annotations

from typing import Any, Sequence

from .hub_chat import FACT_BY_TOPIC, SYSTEM_PROMPT, answer_has_fact

__all__ = ["JUDGED_QUESTIONS", "question_messages", "ask", "fact_recall", "learned_count"]

#: The five held-out questions the lesson judges: four English, one Chinese, on four facts
#: whose wordings name their subject. (Chosen after a trial run: "How many tokens of context…"
#: was answered with the vocabulary size, a confusion between two "N tokens" facts, and the
#: 135M model recalls Chinese wordings less reliably; ``hub_chat.heldout_questions()`` lists
#: all held-out wordings for a wider check.)
JUDGED_QUESTIONS: list[tuple[str, str]] = [
    (FACT_BY_TOPIC["maker"].heldout["en"][0], "maker"),
    (FACT_BY_TOPIC["embedded_model"].heldout["en"][0], "embedded_model"),
    (FACT_BY_TOPIC["chat_sampling"].heldout["en"][0], "chat_sampling"),
    (FACT_BY_TOPIC["lesson_lora"].heldout["en"][1], "lesson_lora"),
    (FACT_BY_TOPIC["maker"].heldout["zh"][1], "maker"),
]


def question_messages(question: str, system: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """One user question as chat messages, after a system prompt (the hub's by default; ``None``
    or ``""`` for none)."""
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}]


def ask(model: Any, tokenizer: Any, question: str, *, system: str | None = SYSTEM_PROMPT,
        max_new_tokens: int = 32, template: Any = "yi") -> str:
    """The greedy reply to one question (with the hub's system prompt by default), in the
    template the lesson trains with (Yi-Chat's ChatML)."""
    from ..chat import chat

    return chat(model, tokenizer, question_messages(question, system),
                max_new_tokens=max_new_tokens, template=template)


def fact_recall(model: Any, tokenizer: Any,
                questions: Sequence[tuple[str, str]] = JUDGED_QUESTIONS, **kwargs: Any
                ) -> list[dict]:
    """One row per ``(question, topic)``: the greedy reply and whether it states the fact."""
    rows = []
    for question, topic in questions:
        reply = ask(model, tokenizer, question, **kwargs)
        rows.append({"question": question, "topic": topic, "reply": reply,
                     "ok": answer_has_fact(reply, topic)})
    return rows


def learned_count(before: Sequence[dict], after: Sequence[dict]) -> int:
    """Questions answered with the fact after training and not before (the same questions, in
    the same order, in both lists)."""
    if len(before) != len(after):
        raise ValueError(f"before and after must answer the same questions, got {len(before)} "
                         f"and {len(after)} rows")
    return sum(1 for b, a in zip(before, after) if a["ok"] and not b["ok"])
