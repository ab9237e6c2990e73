"""Notebook 04 (LoRA fine-tuning): solutions to its exercises, answers to its questions."""

from typing import Any, Mapping, Sequence

from ..finetune.data import IGNORE_INDEX, tokenize_chat
from ..finetune.memory import lora_share, training_memory
from ..models import chat_models

__all__ = ["attention_only_share", "learned_fraction", "largest_trainable", "QUESTIONS", "ANSWERS"]


def attention_only_share(model: str, r: int = 8) -> float:
    """Exercise 1: LoRA's share (percent) when only ``q_proj`` and ``v_proj`` are adapted (the
    original LoRA paper's choice)."""
    return lora_share(model, r, ["q_proj", "v_proj"])


def learned_fraction(tokenizer: Any, rows: Sequence[Mapping[str, Any]]) -> float:
    """Exercise 2: the fraction of tokens that carry a label; the rest (system, user, template)
    costs compute but teaches nothing."""
    labels = [label for row in rows
              for label in tokenize_chat(tokenizer, row["messages"], template="yi")["labels"]]
    if not labels:
        raise ValueError("no tokens: pass at least one conversation")
    return sum(label != IGNORE_INDEX for label in labels) / len(labels)


def largest_trainable(memory_gb: float, method: str = "qlora-4bit") -> str | None:
    """Exercise 3: the largest Yi chat model (16-bit releases) that ``method`` can fine-tune in
    ``memory_gb`` of GPU memory, or ``None``."""
    fitting = [s for s in chat_models() if s.quantization is None
               and training_memory(s, method)["total_gb"] <= memory_gb]
    best = max(fitting, key=lambda s: (s.num_parameters(), s.family == "Yi-1.5"), default=None)
    return best.id if best else None


QUESTIONS = [
    "Why are the prompt's tokens labelled -100 in the training data?",
    "LoRA trains a few percent of the 135M model but well under 1% of Yi-6B. Why does the share shrink with the model's width?",
    'What did the training make the model forget, how was it measured, and what reduced it?',
]
ANSWERS = [
    "-100 is ignored by the loss, so the model is trained only on the assistant's reply and its `<|im_end|>`: it learns to answer (and to stop), not to predict the user's questions or the system prompt.",
    "A rank-r adapter of a d x d layer has 2 x r x d parameters, linear in the width, while the layer has d x d, quadratic. The wider the model, the smaller the adapters' share at the same rank.",
    "Trained only on hub facts, it started answering general questions with hub facts: its replies to general questions changed and its perplexity on held-out prose rose. Replaying the base model's own answers to general questions during training kept much of the old behaviour.",
]
