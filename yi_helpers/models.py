"""The Yi family as data: configs, kinds, quantization, and a memory planner.

Every number here comes from the public Yi release files (``config.json``) and the Yi README,
collected in ``shared/docs/yi-facts.md``. The planner needs no download: the memory a model needs
is computed from its config.

>>> spec("01-ai/Yi-6B-Chat").kv_bytes_per_token()  # 2 (K and V) * 32 layers * 4 kv heads * 128 * 2 bytes
65536
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .units import GB  # the planner reports decimal gigabytes, as GPU vendors do

__all__ = ["ModelSpec", "REGISTRY", "README_TABLE_MODELS", "README_BATCH_SIZES",
           "known_models", "spec", "spec_from_config", "spec_for", "MemoryEstimate",
           "RUNTIME_RESERVE_GB", "DEFAULT_CONTEXT_LEN", "planned_weight_bytes",
           "gguf_file_bytes", "estimate_memory", "chat_models", "recommend",
           "readme_comparison", "count_parameters"]


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
    readme_memory_note: str = ""

    @property
    def context(self) -> int:
        """Context length the model was released with (tokens)."""
        return self.max_positions

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"

    def kv_bytes_per_token(self, kv_bits: int = 16) -> int:
        """Bytes of KV cache one token takes: K and V, every layer, every *KV* head (GQA)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bits // 8

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters by component, computed from the config (no weights needed)."""
        h, kv_dim = self.hidden_size, self.num_kv_heads * self.head_dim
        q_dim = self.num_heads * self.head_dim
        attention = self.num_layers * (h * q_dim + 2 * h * kv_dim + q_dim * h)
        mlp = self.num_layers * 3 * h * self.intermediate_size
        norms = self.num_layers * 2 * h + h
        embedding = self.vocab_size * h
        lm_head = 0 if self.tie_embeddings else self.vocab_size * h
        return {
            "embedding": embedding,
            "attention": attention,
            "mlp": mlp,
            "norms": norms,
            "lm_head": lm_head,
        }

    def num_parameters(self) -> int:
        return sum(self.parameter_breakdown().values())


def _yi(id: str, kind: str, size: str, *, max_positions: int = 4096, family: str = "Yi",
        **extra: Any) -> ModelSpec:
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
                     rope_theta=5e6, rms_norm_eps=eps, **shapes, **extra)


_AWQ = dict(quantization="awq", bits=4, group_size=128)
_GPTQ = dict(quantization="gptq", bits=8, group_size=128)

EMBEDDED = ModelSpec(
    id="embedded", family="SmolLM2", kind="chat", hidden_size=576, num_layers=30, num_heads=9,
    num_kv_heads=3, intermediate_size=1536, vocab_size=49152, max_positions=8192,
    rope_theta=1e5, rms_norm_eps=1e-5, head_dim=64, tie_embeddings=True,
)

_SPECS: list[ModelSpec] = [
    EMBEDDED,
    _yi("01-ai/Yi-6B", "base", "6B", readme_memory_note="base model: 15 GB minimum (README)"),
    _yi("01-ai/Yi-6B-Chat", "chat", "6B", readme_memory_gb={1: 12, 4: 13, 16: 15, 32: 18}),
    _yi("01-ai/Yi-6B-Chat-4bits", "chat", "6B", readme_memory_gb={1: 4, 4: 5, 16: 7, 32: 10},
        **_AWQ),
    _yi("01-ai/Yi-6B-Chat-8bits", "chat", "6B", readme_memory_gb={1: 7, 4: 8, 16: 10, 32: 14},
        **_GPTQ),
    _yi("01-ai/Yi-6B-200K", "base", "6B", max_positions=200000,
        readme_memory_note="base model: 50 GB minimum (README)"),
    _yi("01-ai/Yi-34B", "base", "34B", readme_memory_note="base model: 72 GB minimum (README)"),
    _yi("01-ai/Yi-34B-Chat", "chat", "34B",
        readme_memory_gb={1: 65, 4: 68, 16: 76, 32: float("inf")},
        readme_memory_note="batch 32: '> 80' GB in the README"),
    _yi("01-ai/Yi-34B-Chat-4bits", "chat", "34B",
        readme_memory_gb={1: 19, 4: 20, 16: 30, 32: 40}, **_AWQ),
    _yi("01-ai/Yi-34B-Chat-8bits", "chat", "34B",
        readme_memory_gb={1: 35, 4: 37, 16: 46, 32: 58}, **_GPTQ),
    _yi("01-ai/Yi-34B-200K", "base", "34B", max_positions=200000,
        readme_memory_note="base model: 200 GB minimum (README)"),
    _yi("01-ai/Yi-1.5-6B", "base", "6B", family="Yi-1.5"),
    _yi("01-ai/Yi-1.5-6B-Chat", "chat", "6B", family="Yi-1.5"),
    _yi("01-ai/Yi-1.5-9B", "base", "9B", family="Yi-1.5",
        readme_memory_note="Yi-9B: 20 GB minimum (README)"),
    _yi("01-ai/Yi-1.5-9B-Chat", "chat", "9B", family="Yi-1.5"),
    _yi("01-ai/Yi-1.5-34B", "base", "34B", family="Yi-1.5"),
    _yi("01-ai/Yi-1.5-34B-Chat", "chat", "34B", family="Yi-1.5"),
]

REGISTRY: dict[str, ModelSpec] = {s.id: s for s in _SPECS}

#: The six chat models of the Yi README's memory table, in the README's order.
README_TABLE_MODELS = [
    "01-ai/Yi-6B-Chat", "01-ai/Yi-6B-Chat-4bits", "01-ai/Yi-6B-Chat-8bits",
    "01-ai/Yi-34B-Chat", "01-ai/Yi-34B-Chat-4bits", "01-ai/Yi-34B-Chat-8bits",
]
README_BATCH_SIZES = (1, 4, 16, 32)


def known_models() -> list[str]:
    """Names ``load`` and ``estimate_memory`` accept without a download."""
    return list(REGISTRY)


def spec(model: str | ModelSpec) -> ModelSpec:
    """Look a model up by id (``"01-ai/Yi-6B-Chat"``, short ``"Yi-6B-Chat"`` or ``"embedded"``)."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str):
        raise TypeError(f"expected a model id or ModelSpec, got {type(model).__name__}")
    if model in REGISTRY:
        return REGISTRY[model]
    if f"01-ai/{model}" in REGISTRY:
        return REGISTRY[f"01-ai/{model}"]
    lowered = {k.lower(): v for k, v in REGISTRY.items()}
    if model.lower() in lowered:
        return lowered[model.lower()]
    raise KeyError(
        f"Unknown model {model!r}. Known models: {', '.join(known_models())}. "
        "For another Hugging Face model pass its config: spec_from_config(AutoConfig.from_pretrained(...))."
    )


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
    weight_format: str = ""
    prefill_activations_gb: float = 0.0

    @property
    def prefill_gb(self) -> float:
        """What one prefill of ``batch_size × context_len`` tokens in one piece adds to the
        loaded weights: the KV cache and the activations at their peak
        (``PREFILL_VECTORS_PER_TOKEN``; no full-vocabulary logits: transformers'
        ``logits_to_keep=1``, as ``generate`` does). Chunked prefill adds less."""
        return self.kv_cache_gb + self.prefill_activations_gb  # a GGUF file type ("Q4_K_M") when the weights are one

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.kv_cache_gb + self.overhead_gb

    def __str__(self) -> str:
        return (f"{self.model}: {self.total_gb:.1f} GB (weights {self.weights_gb:.1f} + KV cache "
                f"{self.kv_cache_gb:.1f} + overhead {self.overhead_gb:.1f}; batch {self.batch_size},"
                f" {self.context_len} tokens, {self.weight_format or f'{self.weight_bits}-bit'} weights)")


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
    """Bytes of the weights, computed from the config (no model loaded; a loaded model's bytes
    are ``yi_helpers.measure.model_bytes``). Quantization applies to the linear layers of the decoder blocks;
    the embedding, the LM head and the norms stay 16-bit (as in AWQ and GPTQ checkpoints)."""
    s = spec(model)
    bits = s.bits if weight_bits is None else weight_bits
    if bits not in (2, 3, 4, 8, 16, 32):
        raise ValueError(f"weight_bits must be one of 2, 3, 4, 8, 16, 32, got {bits}")
    parts = s.parameter_breakdown()
    linear = parts["attention"] + parts["mlp"]
    other = parts["embedding"] + parts["lm_head"] + parts["norms"]
    if bits >= 16:
        return (linear + other) * bits / 8
    group = s.group_size or 128
    return linear * (bits / 8 + GROUP_METADATA_BYTES / group) + other * 2


def gguf_file_bytes(model: Any, file_type: str) -> float:
    """Bytes of a model's GGUF at a llama.cpp file type (``"Q4_K_M"``, ``"Q5_K_M"``,
    ``"Q8_0"``...), computed from its config (``model``: a registry id or ``ModelSpec``) and the
    block layouts of ``yi_helpers.ggml_types.bits_per_weight``; metadata (the vocabulary) adds a few MB."""
    from .ggml_types import GGUF_FILE_TYPES, GGUFError, bits_per_weight, more_bits

    if file_type not in GGUF_FILE_TYPES:
        raise GGUFError(f"unknown GGUF file type {file_type!r}; known: {', '.join(GGUF_FILE_TYPES)}")
    s = spec(model)
    base, more = (bits_per_weight(GGUF_FILE_TYPES[file_type][k]) / 8 for k in ("base", "more"))
    parts = s.parameter_breakdown()
    h, kv_dim = s.hidden_size, s.num_kv_heads * s.head_dim
    per_layer_v, per_layer_down = h * kv_dim, s.intermediate_size * h
    n_more = sum(more_bits(i, s.num_layers) for i in range(s.num_layers))
    promoted = n_more * (per_layer_v + per_layer_down) if file_type.endswith("_M") else 0
    linear = parts["attention"] + parts["mlp"]
    head = parts["lm_head"] or parts["embedding"]  # a tied model writes one matrix
    embedding = parts["embedding"] if parts["lm_head"] else 0
    return ((linear - promoted + embedding) * base + (promoted + head) * more
            + parts["norms"] * 4)


def estimate_memory(model: str | ModelSpec, batch_size: int = 1,
                    context_len: int = DEFAULT_CONTEXT_LEN, weight_bits: int | None = None,
                    kv_bits: int = 16, gguf_type: str | None = None,
                    activation_bits: int = 16) -> MemoryEstimate:
    """Memory to run ``model`` for inference: weights + KV cache + runtime overhead, in GB.

    - weights: every parameter at ``weight_bits`` (default: as published, 16 for bf16 models);
      quantized models keep embeddings and LM head in 16 bits and add per-group scales.
    - KV cache: ``batch_size * context_len`` tokens, each ``2 * layers * kv_heads * head_dim``
      values of ``kv_bits`` (GQA: KV heads, not attention heads).
    - overhead: activation buffers (``ACTIVATION_VECTORS_PER_TOKEN`` hidden vectors per token
      in flight) plus a fixed reserve for the CUDA context and allocator.
    - ``prefill_gb``: what one prefill of all the tokens in one piece adds (KV cache and peak
      activations at ``activation_bits``: 32 for a float32 run), held to a measurement.

    With the defaults it reproduces the Yi README's table within ±10%. ``gguf_type`` (a llama.cpp
    file type: ``"Q4_K_M"``, ``"Q5_K_M"``, ``"Q8_0"``...) takes the weights as that GGUF file's
    size instead (:func:`gguf_file_bytes`): what llama.cpp, Ollama or LM Studio
    hold in a laptop's RAM.
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
    kv = tokens * s.kv_bytes_per_token(kv_bits)
    activations = tokens * s.hidden_size * 2 * ACTIVATION_VECTORS_PER_TOKEN
    peak = tokens * (PREFILL_VECTORS_PER_TOKEN["hidden"] * s.hidden_size
                     + PREFILL_VECTORS_PER_TOKEN["intermediate"] * s.intermediate_size)
    prefill_activations = peak * activation_bits / 8
    return MemoryEstimate(
        model=s.id, batch_size=batch_size, context_len=context_len, weight_bits=bits,
        weights_gb=weights / GB, kv_cache_gb=kv / GB,
        overhead_gb=activations / GB + RUNTIME_RESERVE_GB, weight_format=gguf_type or "",
        prefill_activations_gb=prefill_activations / GB,
    )


def chat_models(family: str | None = None) -> list[ModelSpec]:
    """Chat models of the registry (the embedded one excluded), optionally of one family."""
    return [s for s in _SPECS if s.is_chat and s.family != "SmolLM2"
            and (family is None or s.family == family)]


def recommend(memory_gb: float, batch_size: int = 1, context_len: int = DEFAULT_CONTEXT_LEN,
              family: str | None = None) -> str | None:
    """The largest Yi chat variant that fits in ``memory_gb`` (most parameters, then most bits).

    Returns ``None`` when none fits (then use the embedded model, or a CPU with enough RAM).
    """
    if memory_gb <= 0:
        raise ValueError(f"memory_gb must be positive, got {memory_gb}")
    fitting = [s for s in chat_models(family)
               if estimate_memory(s, batch_size, context_len).total_gb <= memory_gb]
    if not fitting:
        return None
    best = max(fitting, key=lambda s: (s.num_parameters(), s.bits, s.family == "Yi-1.5"))
    return best.id



def readme_comparison(context_len: int = DEFAULT_CONTEXT_LEN) -> list[dict[str, Any]]:
    """``estimate_memory`` against the Yi README's table: one row per (model, batch size).

    Each row: model, batch, readme_gb (``inf`` for "> 80"), estimate_gb, rel_error (``None``
    where the README gives only a lower bound).
    """
    rows = []
    for name in README_TABLE_MODELS:
        s = REGISTRY[name]
        for batch in README_BATCH_SIZES:
            readme = s.readme_memory_gb[batch]
            est = estimate_memory(s, batch, context_len).total_gb
            rel = None if readme == float("inf") else est / readme - 1
            rows.append({"model": name, "batch": batch, "readme_gb": readme,
                         "estimate_gb": est, "rel_error": rel})
    return rows


COMPONENTS = ("embedding", "attention", "mlp", "norms", "lm_head")


def component_of(parameter_name: str) -> str:
    """Which component a parameter of a Llama-style model belongs to."""
    if "embed_tokens" in parameter_name:
        return "embedding"
    if "lm_head" in parameter_name:
        return "lm_head"
    if "self_attn" in parameter_name:
        return "attention"
    if ".mlp." in parameter_name:
        return "mlp"
    if "norm" in parameter_name:
        return "norms"
    return "other"


def count_parameters(model: Any) -> dict[str, int]:
    """Parameters of a loaded model by component. Tied weights (SmolLM2's LM head shares the
    embedding matrix) are counted once, under ``embedding``."""
    counts = {c: 0 for c in COMPONENTS}
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        key = param.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        component = component_of(name)
        counts[component] = counts.get(component, 0) + param.numel()
    return counts
