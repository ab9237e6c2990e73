"""Replay: keep a fine-tuned model's general behaviour by training on its own answers too.

Fine-tuning on a narrow data set (lesson 04's 144 conversations about the hub) teaches the facts
but also teaches "every answer is a hub fact": after training, "What is the capital of France?"
gets a fact about tokens, and perplexity on ordinary prose rises (catastrophic forgetting).
**Replay by self-distillation**: before training, ask the *base* model general questions
(``REPLAY_QUESTIONS``), and mix its own greedy replies into the training set. No outside data
set is needed, so it works for any model. ``CHECK_QUESTIONS`` are never trained on: they show
what training changed elsewhere.
"""

from typing import Any, Sequence

from ..chat import chat_batch
from .evaluate import SYSTEM_PROMPT, question_messages

__all__ = ["REPLAY_QUESTIONS", "CHECK_QUESTIONS", "replay_rows", "general_replies",
           "unchanged_share"]

_EN = [
    "What is the capital of France?", "How many days are there in a week?",
    "What colour is the sky on a clear day?", "Name a fruit that is yellow.", "What do bees make?",
    "How do I boil an egg?", "What is 2 plus 3?", "Why do we need sleep?",
    "Give me a synonym for happy.", "What is the largest ocean on Earth?",
    "What does a thermometer measure?", "Write a short greeting for a friend.",
    "What is Python used for?", "How many legs does a spider have?",
    "What is the opposite of cold?", "Suggest a name for a cat.", "What is water made of?",
    "Which planet is closest to the Sun?", "What is a list in Python?", "How can I stay healthy?",
]
_ZH = [
    "中国的首都是哪里？", "一年有几个月？", "天空为什么是蓝色的？", "请推荐一种健康的早餐。", "熊猫吃什么？",
    "一加一等于几？", "怎样学好数学？", "水在多少度结冰？", "请写一句生日祝福。", "长城在哪个国家？",
    "猫和狗有什么不同？", "什么是机器学习？", "请说一个表示高兴的词。", "太阳从哪边升起？", "春天有什么特点？",
    "怎样保持好心情？", "地球上最大的动物是什么？", "请介绍一下北京。", "为什么要多喝水？", "中秋节吃什么？",
]

#: General questions whose base-model replies are replayed in training: ``(question, lang)``,
#: English and Chinese alternating, so the first N are balanced.
REPLAY_QUESTIONS: list[tuple[str, str]] = [
    pair for en, zh in zip(_EN, _ZH, strict=True) for pair in ((en, "en"), (zh, "zh"))]

#: General questions that are never trained on: what did training change elsewhere?
CHECK_QUESTIONS: list[tuple[str, str]] = [
    ("Translate 'thank you' into French.", "en"), ("What season comes after winter?", "en"),
    ("What is the boiling point of water?", "en"), ("Tell me a fun fact about dogs.", "en"),
    ("一周有几天？", "zh"), ("苹果是什么颜色的？", "zh"), ("怎样提高睡眠质量？", "zh"),
    ("请用一句话介绍你自己。", "zh"),
]


def replay_rows(model: Any, tokenizer: Any, questions: Sequence[tuple[str, str]] = REPLAY_QUESTIONS,
                *, max_new_tokens: int = 48) -> list[dict]:
    """The *base* model's greedy replies to ``questions`` (one batch), as training rows. Every
    second question carries the hub's system prompt, like the fact conversations: the hub
    assistant still answers ordinary questions as before."""
    conversations = [question_messages(q, system=None if i % 2 else SYSTEM_PROMPT)
                     for i, (q, _) in enumerate(questions)]
    replies = chat_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                         template="yi")
    rows = []
    for (question, lang), messages, reply in zip(questions, conversations, replies):
        if not reply:
            raise ValueError(f"the model gave an empty reply to {question!r}: nothing to replay")
        rows.append({"messages": messages + [{"role": "assistant", "content": reply}],
                     "lang": lang, "topic": "replay"})
    return rows


def general_replies(model: Any, tokenizer: Any,
                    questions: Sequence[tuple[str, str]] = CHECK_QUESTIONS, *,
                    max_new_tokens: int = 24) -> list[str]:
    """Greedy replies to general questions, asked with the hub's system prompt (where a model
    trained only on hub facts answers with a hub fact)."""
    return chat_batch(model, tokenizer, [question_messages(q) for q, _ in questions],
                      max_new_tokens=max_new_tokens, template="yi")


def unchanged_share(before: Sequence[str], after: Sequence[str], *, chars: int = 12) -> float:
    """Share of replies whose first ``chars`` characters did not change (a crude but readable
    measure of "still answers as before"; perplexity on prose is the finer one)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need two equally long, non-empty lists, got {len(before)} and "
                         f"{len(after)}")
    return sum(b[:chars] == a[:chars] for b, a in zip(before, after)) / len(before)
