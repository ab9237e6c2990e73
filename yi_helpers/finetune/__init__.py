"""Lesson 04: LoRA fine-tuning on chat data, from one CPU to many GPUs.

``python -m yi_helpers.finetune --config <yaml>`` runs a training (alone or under
``accelerate launch``). Submodules:

- ``hub_chat``: the hub's bilingual chat data set (facts about the hub and Yi) and its generator
- ``data``: the original Yi ``Human:/Assistant:`` format converted; assistant-only labels
- ``config``: ``FinetuneConfig`` and the YAML loader (checked before any model loads)
- ``train``: LoRA with peft and transformers' ``Trainer``, resume, atomic adapter saving
- ``evaluate``: greedy replies to held-out questions, judged per fact
- ``replay``: the base model's own replies to general questions, mixed in against forgetting
- ``memory``: memory to fine-tune Yi (full bf16, LoRA bf16, QLoRA 4-bit), LoRA's share
"""

# the submodules are imported by name (``from yi_helpers.finetune.train import train``)
__all__: list[str] = []
