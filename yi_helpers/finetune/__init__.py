"""Lesson 04: LoRA fine-tuning on chat data (the training itself is peft and transformers'
``Trainer``, in the notebook and ``scripts/lora_sft.py``). Submodules, for what is not the
lesson's point: ``data`` (the original Yi format converted; assistant-only labels by hand),
``adapters``, ``evaluate`` (facts recalled), ``replay`` (against forgetting), ``memory``.
"""

# the submodules are imported by name (``from yi_helpers.finetune.data import tokenize_chat``)
__all__: list[str] = []
