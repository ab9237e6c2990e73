"""Lesson 04: LoRA fine-tuning on chat data.

The lesson trains with peft and transformers' ``Trainer`` in the notebook, and
``scripts/lora_sft.py`` is the same as one program for ``accelerate launch``. Submodules, for
what is not the lesson's point:

- ``hub_chat``: the hub's bilingual chat data set (facts about the hub and Yi) and its generator
- ``data``: the original Yi ``Human:/Assistant:`` format converted; assistant-only labels by hand
- ``adapters``: an adapter saved atomically; the model's forward without the Trainer's autocast
- ``evaluate``: greedy replies to held-out questions, judged per fact
- ``replay``: the base model's own replies to general questions, mixed in against forgetting
- ``memory``: memory to fine-tune Yi (full bf16, LoRA bf16, QLoRA 4-bit), LoRA's share
"""

# the submodules are imported by name (``from yi_helpers.finetune.data import tokenize_chat``)
__all__: list[str] = []
