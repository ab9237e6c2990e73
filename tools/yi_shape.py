"""Yi-shaped models with random weights, built from a config: shape and convention checks.

A tool of the tests and the GPU runner (``tools/gpu_check.py``), not of the learners' package.

No download is needed: the config comes from the Yi registry (:mod:`yi_helpers.models`), so a
machine without hub access can still build a model with Yi-6B's layers and measure what it
costs. Such a model knows nothing (its weights are random); it checks shapes, memory and
speed, never answers. ``tiny_yi_config`` keeps Yi's layout at a size a CPU test runs in
seconds.
"""

from __future__ import annotations

import json
from typing import Any

from yi_helpers.chat import YI_CHAT_SAMPLING, YI_CHAT_STOP_IDS
from yi_helpers.models import ModelSpec, spec

__all__ = ["yi_config", "tiny_yi_config", "random_model", "standin"]


def yi_config(model: str | ModelSpec = "01-ai/Yi-6B", **overrides: Any):
    """A ``LlamaConfig`` with the registry's numbers for ``model`` (Yi-6B by default)."""
    from transformers import LlamaConfig

    s = spec(model)
    fields = dict(
        vocab_size=s.vocab_size, hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads, head_dim=s.head_dim,
        max_position_embeddings=s.max_positions, rope_theta=s.rope_theta,
        rms_norm_eps=s.rms_norm_eps, tie_word_embeddings=s.tie_embeddings,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)


def tiny_yi_config():
    """Yi-6B's layout (grouped-query attention, head size 128, rope theta 5e6, untied LM head) at
    a size a CPU test can run. The MLP keeps Yi's width ratio (11008 / 4096), rounded to a
    multiple of 64 as real widths are: bitsandbytes' 4-bit CPU kernel needs that on CPUs with
    AVX-512 bf16."""
    return yi_config("01-ai/Yi-6B", hidden_size=256, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=128, intermediate_size=704, num_hidden_layers=2, vocab_size=1000,
                     max_position_embeddings=4096)


def random_model(config: Any, *, dtype: Any = None, device: str = "cpu", seed: int = 0):
    """A ``LlamaForCausalLM`` with random weights (seeded), created directly on ``device``, in
    ``dtype`` (default bfloat16), in eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype or torch.bfloat16).eval()


# ---------------------------------------------------------------------------------------------
# A Yi-Chat stand-in: a local model folder with Yi-Chat's shapes and conventions
# ---------------------------------------------------------------------------------------------

#: Yi's special tokens at Yi's ids (``tokenizer_config.json`` of the Yi chat models). Ids 3-5
#: are placeholders here: the stand-in never uses them.
YI_SPECIAL_TOKENS = ("<unk>", "<|startoftext|>", "<|endoftext|>", "<|reserved_3|>",
                     "<|reserved_4|>", "<|reserved_5|>", "<|im_start|>", "<|im_end|>", "<|im_sep|>")

#: Yi-6B-Chat's ``generation_config.json``: sampling on by default, stop at ``<|im_end|>`` (7).
YI_CHAT_GENERATION = dict(bos_token_id=6, eos_token_id=YI_CHAT_STOP_IDS[0], pad_token_id=0,
                          do_sample=True, max_length=4096, **YI_CHAT_SAMPLING)

#: Stand-in sizes: ``"tiny"`` keeps Yi's vocabulary, GQA ratio (8 query heads per KV head),
#: rope theta, norm epsilon and untied LM head at a width a CPU runs in seconds (widths are
#: multiples of 64, as quantization kernels want); ``"6b"`` is Yi-6B-Chat's full shape (12 GB
#: in bf16: for a GPU).
STANDIN_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                 num_attention_heads=8, num_key_value_heads=1, head_dim=32),
    "6b": {},
}


def standin_tokenizer(texts: Any = None):
    """A byte-level BPE tokenizer with Yi's special tokens at Yi's ids (0-8), Yi-Chat's chat
    template and a vocabulary of exactly 64,000 entries (merges learned from the hub's own
    English and Chinese texts, the rest unused placeholders). Deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from yi_helpers.chat import YI_CHAT_TEMPLATE
    from yi_helpers.corpus import calibration_conversations, heldout_text, load_conversations

    if texts is None:
        from yi_helpers.bench.evaluation import build_prompt, load_questions

        rows = load_conversations("train") + calibration_conversations()
        texts = [m["content"] for row in rows for m in row["messages"]]
        texts += [heldout_text("en"), heldout_text("zh")]
        # the multiple-choice prompts with their answers, so " A" ... " D" become single tokens
        # (as in Yi's own vocabulary; lesson 06 scores one token per option)
        texts += [build_prompt(q, lang) + " " + q["answer"] for lang in ("en", "zh")
                  for split in ("dev", "test") for q in load_questions(lang, split)]
    vocab_size = yi_config("01-ai/Yi-6B-Chat").vocab_size
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(YI_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    # fill the vocabulary up to Yi's 64,000 with entries no merge produces (plain vocabulary
    # entries, not added tokens, so tokenizing stays as fast as before)
    learned = json.loads(bpe.to_str())["model"]
    vocab = dict(learned["vocab"])
    vocab.update({f"<|unused_{i}|>": i for i in range(len(vocab), vocab_size)})
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    filled = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    filled.pre_tokenizer, filled.decoder = bpe.pre_tokenizer, bpe.decoder
    filled.add_special_tokens(list(YI_SPECIAL_TOKENS))
    bpe = filled
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        unk_token="<unk>", pad_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<|im_sep|>"])
    tokenizer.chat_template = YI_CHAT_TEMPLATE
    return tokenizer


def standin_config(size: str = "tiny"):
    """The ``LlamaConfig`` of a stand-in: Yi-6B-Chat's, shrunk for ``"tiny"``."""
    if size not in STANDIN_SIZES:
        raise ValueError(f"size must be one of {sorted(STANDIN_SIZES)}, got {size!r}")
    return yi_config("01-ai/Yi-6B-Chat", **STANDIN_SIZES[size])


def build_standin(out_dir: Any, size: str = "tiny", *, seed: int = 0, dtype: Any = None) -> Any:
    """Write a **Yi-Chat stand-in** to ``out_dir`` (replaced if it exists) and return its path.

    What it is: a ``LlamaForCausalLM`` with Yi-6B-Chat's config fields (``size="6b"``: its full
    dimensions; ``"tiny"``: the same vocabulary, GQA ratio, rope theta 5,000,000, norm epsilon
    and untied embeddings at a small width), **random, seeded weights**, a tokenizer with Yi's
    special tokens at Yi's ids (:func:`standin_tokenizer`), Yi-Chat's chat template, and
    Yi-Chat's published generation config (sampling on by default, stop at ``<|im_end|>``).

    What it is not: a model that knows anything. It checks that code written for Yi handles
    Yi's shapes and conventions; its replies are noise.
    """
    from pathlib import Path

    import torch
    from transformers import GenerationConfig

    from yi_helpers.cache import atomic_folder
    from yi_helpers.quiet import quiet_hf_progress

    out = Path(out_dir).expanduser()
    config = standin_config(size)
    model = random_model(config, dtype=dtype or (torch.float32 if size == "tiny" else
                                                 torch.bfloat16), seed=seed)
    model.generation_config = GenerationConfig(**YI_CHAT_GENERATION)
    tokenizer = standin_tokenizer()
    with atomic_folder(out) as tmp, quiet_hf_progress():
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out


def standin(size: str = "tiny"):
    """The stand-in's folder in the hub's cache (``<cache>/standins/yi-chat-standin-<size>``),
    built once (:func:`build_standin`, seed 0); name it as a lesson's ``MODEL``."""
    from yi_helpers.cache import cache_dir

    folder = cache_dir() / "standins" / f"yi-chat-standin-{size}"
    if not (folder / "config.json").is_file():
        build_standin(folder, size)
    return folder
