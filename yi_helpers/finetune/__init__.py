"""Lesson 04: LoRA fine-tuning on chat data (``python -m yi_helpers.finetune --config <yaml>``).

Submodules: ``hub_chat`` (the hub's bilingual chat data set and its generator).
"""
