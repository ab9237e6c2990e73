"""Solutions to the exercises of notebook 04 (LoRA fine-tuning)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..finetune.data import IGNORE_INDEX, tokenize_chat
from ..finetune.memory import lora_share, training_memory
from ..models import chat_models

__all__ = ["attention_only_share", "learned_fraction", "largest_trainable", "QUESTIONS", "ANSWERS"]


def attention_only_share(model: str, r: int = 8) -> float:
    """Exercise 1: LoRA's share (percent) when only ``q_proj`` and ``v_proj`` are adapted (the
    original LoRA paper's choice) with rank ``r``."""
    return lora_share(model, r, ["q_proj", "v_proj"])


def learned_fraction(tokenizer: Any, rows: Sequence[Mapping[str, Any]], *,
                     template: Any = "yi") -> float:
    """Exercise 2: the fraction of tokens that carry a label (the assistant's replies and their
    ``<|im_end|>``); the rest (system, user, template) costs compute but teaches nothing."""
    learned = total = 0
    for row in rows:
        labels = tokenize_chat(tokenizer, row["messages"], template=template)["labels"]
        learned += sum(1 for label in labels if label != IGNORE_INDEX)
        total += len(labels)
    if total == 0:
        raise ValueError("no tokens: pass at least one conversation")
    return learned / total


def largest_trainable(memory_gb: float, method: str = "qlora-4bit", **kwargs: Any) -> str | None:
    """Exercise 3: the largest Yi chat model (16-bit releases) that ``method`` can fine-tune in
    ``memory_gb`` of GPU memory, or ``None``."""
    fitting = [s for s in chat_models() if s.quantization is None
               and training_memory(s, method, **kwargs).total_gb <= memory_gb]
    if not fitting:
        return None
    return max(fitting, key=lambda s: (s.num_parameters(), s.family == "Yi-1.5")).id


#: The questions that open the notebook's "Check your understanding", and their answers.
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
