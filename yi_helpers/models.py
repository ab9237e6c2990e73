"""The Yi family as data: configs, kinds, quantization, and a memory planner.

Every number comes from the public Yi release files (``config.json``) and the Yi README
(``shared/docs/yi-facts.md``); the planner computes memory from the config, no download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .units import GB  # the planner reports decimal gigabytes, as GPU vendors do

__all__ = ["ModelSpec", "REGISTRY", "README_TABLE_MODELS", "README_BATCH_SIZES", "spec",
           "spec_from_config", "spec_for", "MemoryEstimate", "DEFAULT_CONTEXT_LEN",
           "planned_weight_bytes", "gguf_file_bytes", "kv_cache_bytes", "estimate_memory",
           "chat_models", "recommend", "readme_comparison", "count_parameters"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry: where it lives and the config numbers that matter."""

    id: str
    family: str  # "Yi", "Yi-1.5" or "SmolLM2" (the embedded model)
    kind: str  # "base" or "chat"
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    rope_theta: float
    rms_norm_eps: float
    head_dim: int = 128
    tie_embeddings: bool = False
    quantization: str | None = None  # None, "awq" or "gptq"
    bits: int = 16  # bits per weight of the linear layers as published
    group_size: int | None = None
    readme_memory_gb: Mapping[int, float] = field(default_factory=dict)  # batch -> GB (README)

    def kv_bytes_per_token(self, kv_bits: int = 16) -> int:
        """Bytes of KV cache one token takes: K and V, every layer, every *KV* head (GQA).
        The hub's one KV-cache formula: the planner, ``kv_cache_bytes`` and ``bench`` use it."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bits // 8

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters by component, computed from the config (no weights needed)."""
        h, kv_dim = self.hidden_size, self.num_kv_heads * self.head_dim
        q_dim = self.num_heads * self.head_dim
        return {
            "embedding": self.vocab_size * h,
            "attention": self.num_layers * (h * q_dim + 2 * h * kv_dim + q_dim * h),
            "mlp": self.num_layers * 3 * h * self.intermediate_size,
            "norms": self.num_layers * 2 * h + h,
            "lm_head": 0 if self.tie_embeddings else self.vocab_size * h,
        }

    def num_parameters(self) -> int:
        return sum(self.parameter_breakdown().values())


#: The batch sizes of the Yi README's memory table.
README_BATCH_SIZES = (1, 4, 16, 32)


def _yi(id: str, kind: str, size: str, readme: tuple = (), *, max_positions: int = 4096,
        family: str = "Yi", **extra: Any) -> ModelSpec:
    """A Yi model of ``size``; ``readme``: its GB at ``README_BATCH_SIZES`` in the README."""
    shapes = {
        "6B": dict(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=4,
                   intermediate_size=11008),
        "9B": dict(hidden_size=4096, num_layers=48, num_heads=32, num_kv_heads=4,
                   intermediate_size=11008),
        "34B": dict(hidden_size=7168, num_layers=60, num_heads=56, num_kv_heads=8,
                    intermediate_size=20480),
    }[size]
    eps = 1e-6 if family == "Yi-1.5" else 1e-5
    return ModelSpec(id=id, family=family, kind=kind, vocab_size=64000, max_positions=max_positions,
                     rope_theta=5e6, rms_norm_eps=eps, **shapes, **extra,
                     readme_memory_gb=dict(zip(README_BATCH_SIZES, readme)))


_AWQ = dict(quantization="awq", bits=4, group_size=128)
_GPTQ = dict(quantization="gptq", bits=8, group_size=128)

_SPECS: list[ModelSpec] = [
    ModelSpec(id="embedded", family="SmolLM2", kind="chat", hidden_size=576, num_layers=30,
              num_heads=9, num_kv_heads=3, intermediate_size=1536, vocab_size=49152,
              max_positions=8192, rope_theta=1e5, rms_norm_eps=1e-5, head_dim=64,
              tie_embeddings=True),
    _yi("01-ai/Yi-6B", "base", "6B"),
    _yi("01-ai/Yi-6B-Chat", "chat", "6B", (12, 13, 15, 18)),
    _yi("01-ai/Yi-6B-Chat-4bits", "chat", "6B", (4, 5, 7, 10), **_AWQ),
    _yi("01-ai/Yi-6B-Chat-8bits", "chat", "6B", (7, 8, 10, 14), **_GPTQ),
    _yi("01-ai/Yi-6B-200K", "base", "6B", max_positions=200000),
    _yi("01-ai/Yi-34B", "base", "34B"),
    _yi("01-ai/Yi-34B-Chat", "chat", "34B", (65, 68, 76, float("inf"))),  # batch 32: "> 80" GB
    _yi("01-ai/Yi-34B-Chat-4bits", "chat", "34B", (19, 20, 30, 40), **_AWQ),
    _yi("01-ai/Yi-34B-Chat-8bits", "chat", "34B", (35, 37, 46, 58), **_GPTQ),
    _yi("01-ai/Yi-34B-200K", "base", "34B", max_positions=200000),
    *(_yi(f"01-ai/Yi-1.5-{size}{suffix}", kind, size, family="Yi-1.5")
      for size in ("6B", "9B", "34B") for kind, suffix in (("base", ""), ("chat", "-Chat"))),
]

REGISTRY: dict[str, ModelSpec] = {s.id: s for s in _SPECS}
#: The six chat models of the Yi README's memory table, in the README's order.
README_TABLE_MODELS = [s.id for s in _SPECS if s.readme_memory_gb]


def known_models() -> list[str]:
    """Names ``load`` and ``estimate_memory`` accept without a download."""
    return list(REGISTRY)


def spec(model: str | ModelSpec) -> ModelSpec:
    """Look a model up by id (``"01-ai/Yi-6B-Chat"``, short ``"Yi-6B-Chat"`` or ``"embedded"``)."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str):
        raise TypeError(f"expected a model id or ModelSpec, got {type(model).__name__}")
    lowered = {k.lower(): v for k, v in REGISTRY.items()}
    found = lowered.get(model.lower()) or lowered.get(f"01-ai/{model}".lower())
    if found is None:
        raise KeyError(
            f"Unknown model {model!r}. Known models: {', '.join(known_models())}. For another "
            "Hugging Face model pass its config: "
            "spec_from_config(AutoConfig.from_pretrained(...)).")
    return found


def spec_from_config(config: Any, id: str = "custom", kind: str = "chat") -> ModelSpec:
    """Build a :class:`ModelSpec` from a transformers config (or a dict of its fields)."""
    get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    rope = get("rope_theta") or (get("rope_parameters") or {}).get("rope_theta", 10000.0)
    quant = get("quantization_config") or {}
    if not isinstance(quant, Mapping):
        quant = quant.to_dict()
    return ModelSpec(
        id=id, family=str(get("model_type", "llama")), kind=kind, hidden_size=hidden,
        num_layers=get("num_hidden_layers"), num_heads=heads,
        num_kv_heads=get("num_key_value_heads") or heads,
        intermediate_size=get("intermediate_size"), vocab_size=get("vocab_size"),
        max_positions=get("max_position_embeddings"), rope_theta=float(rope),
        rms_norm_eps=float(get("rms_norm_eps", 1e-6)),
        head_dim=get("head_dim") or hidden // heads,
        tie_embeddings=bool(get("tie_word_embeddings", False)),
        quantization=quant.get("quant_method"), bits=int(quant.get("bits", 16)),
        group_size=quant.get("group_size"),
    )


def spec_for(model: str, config: Any = None) -> ModelSpec:
    """The registry's entry for a known ``model`` name, else the spec of a loaded ``config``
    (a local folder, a Yi stand-in, any other hub model) with ``model`` as its id."""
    try:
        return spec(model)
    except KeyError:
        if config is None:
            raise
        return spec_from_config(config, id=str(model))


def kv_cache_bytes(model: Any, tokens: int, *, batch_size: int = 1, kv_bits: int = 16,
                   gqa: bool = True) -> int:
    """Bytes of KV cache for ``batch_size × tokens`` tokens (``model``: a registry id, a
    ``ModelSpec``, a config or a loaded model). ``gqa=False``: as if every query head had its
    own K and V (no grouped-query attention)."""
    if not isinstance(model, (str, ModelSpec)):
        model = spec_from_config(getattr(model, "config", model))
    s = spec(model)
    per_token = s.kv_bytes_per_token(kv_bits) * (1 if gqa else s.num_heads // s.num_kv_heads)
    return per_token * tokens * batch_size


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of KV cache one token adds to a loaded ``model``, at its parameters' dtype."""
    return kv_cache_bytes(model, 1, kv_bits=8 * next(model.parameters()).element_size())


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory one model needs on one device, in GB (1e9 bytes)."""

    model: str
    batch_size: int
    context_len: int
    weight_bits: int
    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    weight_format: str = ""  # a GGUF file type ("Q4_K_M") when the weights are one
    prefill_activations_gb: float = 0.0

    @property
    def prefill_gb(self) -> float:
        """What one prefill of ``batch_size × context_len`` tokens in one piece adds to the
        loaded weights: the KV cache and the activations at their peak
        (``PREFILL_VECTORS_PER_TOKEN``; no full-vocabulary logits: transformers'
        ``logits_to_keep=1``, as ``generate`` does). Chunked prefill adds less."""
        return self.kv_cache_gb + self.prefill_activations_gb

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.kv_cache_gb + self.overhead_gb

    def __str__(self) -> str:
        weights = self.weight_format or f"{self.weight_bits}-bit"
        return (f"{self.model}: {self.total_gb:.1f} GB (weights {self.weights_gb:.1f} + KV cache "
                f"{self.kv_cache_gb:.1f} + overhead {self.overhead_gb:.1f}; batch "
                f"{self.batch_size}, {self.context_len} tokens, {weights} weights)")


#: Activation buffers alive during a forward pass, in hidden-sized fp16 vectors per token (a
#: serving engine's steady state, calibrated on the Yi README's table).
ACTIVATION_VECTORS_PER_TOKEN = 4
#: One eager forward over a whole prompt (a prefill in one piece) peaks in an MLP: per token,
#: two hidden-sized vectors (the residual stream, the normed input) and four intermediate-sized
#: ones (gate, up, activated gate, their product) alive at once. Held to a measured prefill by
#: the tests (lesson 09); feeding the prompt in chunks lowers it.
PREFILL_VECTORS_PER_TOKEN = {"hidden": 2, "intermediate": 4}
#: The CUDA context and the allocator's reserve, GB.
RUNTIME_RESERVE_GB = 0.25
#: Quantized formats store one fp16 scale and one packed zero point per group (≈ 2.5 bytes).
GROUP_METADATA_BYTES = 2.5
#: Default sequence length (prompt + reply) per sequence in the batch.
DEFAULT_CONTEXT_LEN = 2048


def planned_weight_bytes(model: str | ModelSpec, weight_bits: int | None = None) -> float:
    """Bytes of the weights, computed from the config (a loaded model's: ``measure.model_bytes``).
    Quantization applies to the decoder's linear layers; the embedding, the LM head and the
    norms stay 16-bit (as in AWQ and GPTQ checkpoints)."""
    s = spec(model)
    bits = s.bits if weight_bits is None else weight_bits
    if bits not in (2, 3, 4, 8, 16, 32):
        raise ValueError(f"weight_bits must be one of 2, 3, 4, 8, 16, 32, got {bits}")
    parts = s.parameter_breakdown()
    linear = parts["attention"] + parts["mlp"]
    other = parts["embedding"] + parts["lm_head"] + parts["norms"]
    if bits >= 16:
        return (linear + other) * bits / 8
    return linear * (bits / 8 + GROUP_METADATA_BYTES / (s.group_size or 128)) + other * 2


def gguf_file_bytes(model: Any, file_type: str) -> float:
    """Bytes of a model's GGUF at a llama.cpp file type (``"Q4_K_M"``, ``"Q8_0"``...), from its
    config and the block layouts of ``ggml_types.bits_per_weight``; metadata (the vocabulary)
    adds a few MB."""
    from .ggml_types import GGUF_FILE_TYPES, GGUFError, bits_per_weight, more_bits

    if file_type not in GGUF_FILE_TYPES:
        raise GGUFError(f"unknown GGUF file type {file_type!r}; "
                        f"known: {', '.join(GGUF_FILE_TYPES)}")
    s = spec(model)
    base, more = (bits_per_weight(GGUF_FILE_TYPES[file_type][k]) / 8 for k in ("base", "more"))
    parts = s.parameter_breakdown()
    n_more = sum(more_bits(i, s.num_layers) for i in range(s.num_layers))
    per_layer = s.hidden_size * (s.num_kv_heads * s.head_dim + s.intermediate_size)  # V, down
    promoted = n_more * per_layer if file_type.endswith("_M") else 0
    linear = parts["attention"] + parts["mlp"]
    head = parts["lm_head"] or parts["embedding"]  # a tied model writes one matrix
    embedding = parts["embedding"] if parts["lm_head"] else 0
    return ((linear - promoted + embedding) * base + (promoted + head) * more
            + parts["norms"] * 4)


def estimate_memory(model: str | ModelSpec, batch_size: int = 1,
                    context_len: int = DEFAULT_CONTEXT_LEN, weight_bits: int | None = None,
                    kv_bits: int = 16, gguf_type: str | None = None,
                    activation_bits: int = 16) -> MemoryEstimate:
    """Memory to run ``model`` for inference, in GB; with the defaults it reproduces the Yi
    README's table within ±10%.

    - weights at ``weight_bits`` (default: as published, :func:`planned_weight_bytes`), or the
      size of a GGUF file of type ``gguf_type`` (what llama.cpp or Ollama hold in RAM);
    - KV cache: ``batch_size * context_len`` tokens at ``kv_bits`` (GQA: KV heads only);
    - overhead: ``ACTIVATION_VECTORS_PER_TOKEN`` hidden vectors per token, plus a fixed reserve
      for the CUDA context and allocator;
    - ``prefill_gb``: one prefill in one piece (peak activations at ``activation_bits``).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(context_len, int) or context_len < 1:
        raise ValueError(f"context_len must be a positive integer, got {context_len!r}")
    s = spec(model)
    bits = s.bits if weight_bits is None else weight_bits
    tokens = batch_size * context_len
    if gguf_type is not None:
        weights = gguf_file_bytes(s, gguf_type)
        bits = round(weights * 8 / s.num_parameters())
    else:
        weights = planned_weight_bytes(s, bits)
    activations = tokens * s.hidden_size * 2 * ACTIVATION_VECTORS_PER_TOKEN
    peak = tokens * (PREFILL_VECTORS_PER_TOKEN["hidden"] * s.hidden_size
                     + PREFILL_VECTORS_PER_TOKEN["intermediate"] * s.intermediate_size)
    return MemoryEstimate(
        model=s.id, batch_size=batch_size, context_len=context_len, weight_bits=bits,
        weights_gb=weights / GB, kv_cache_gb=kv_cache_bytes(s, tokens, kv_bits=kv_bits) / GB,
        overhead_gb=activations / GB + RUNTIME_RESERVE_GB, weight_format=gguf_type or "",
        prefill_activations_gb=peak * activation_bits / 8 / GB,
    )


def chat_models() -> list[ModelSpec]:
    """The Yi chat models of the registry (the embedded model excluded)."""
    return [s for s in _SPECS if s.kind == "chat" and s.family != "SmolLM2"]


def recommend(memory_gb: float, batch_size: int = 1,
              context_len: int = DEFAULT_CONTEXT_LEN) -> str | None:
    """The largest Yi chat variant that fits in ``memory_gb`` (most parameters, then most bits);
    ``None`` when none fits (then use the embedded model, or a CPU with enough RAM)."""
    if memory_gb <= 0:
        raise ValueError(f"memory_gb must be positive, got {memory_gb}")
    fitting = [s for s in chat_models()
               if estimate_memory(s, batch_size, context_len).total_gb <= memory_gb]
    if not fitting:
        return None
    return max(fitting, key=lambda s: (s.num_parameters(), s.bits, s.family == "Yi-1.5")).id


def readme_comparison(context_len: int = DEFAULT_CONTEXT_LEN) -> list[dict[str, Any]]:
    """``estimate_memory`` against the Yi README's table, one row per (model, batch size):
    model, batch, readme_gb (``inf`` for "> 80"), estimate_gb, rel_error (``None`` where the
    README gives only a lower bound)."""
    rows = []
    for name in README_TABLE_MODELS:
        for batch in README_BATCH_SIZES:
            readme = REGISTRY[name].readme_memory_gb[batch]
            est = estimate_memory(name, batch, context_len).total_gb
            rel = None if readme == float("inf") else est / readme - 1
            rows.append({"model": name, "batch": batch, "readme_gb": readme,
                         "estimate_gb": est, "rel_error": rel})
    return rows


#: Which component a parameter belongs to: the first key its name contains.
_COMPONENT_KEYS = (("embed_tokens", "embedding"), ("lm_head", "lm_head"),
                   ("self_attn", "attention"), (".mlp.", "mlp"), ("norm", "norms"))


def count_parameters(model: Any) -> dict[str, int]:
    """Parameters of a loaded Llama-style model by component. Tied weights (SmolLM2's LM head
    shares the embedding matrix) are counted once, under ``embedding``."""
    counts = dict.fromkeys(("embedding", "attention", "mlp", "norms", "lm_head"), 0)
    for name, param in model.named_parameters():  # a tied weight once, under its first name
        component = next((c for key, c in _COMPONENT_KEYS if key in name), "other")
        counts[component] = counts.get(component, 0) + param.numel()
    return counts
