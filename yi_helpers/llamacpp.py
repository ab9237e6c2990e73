"""GGUF files and llama.cpp: look inside a GGUF, write one at another type, and run it with
llama.cpp in this process (the ``xllamacpp`` wheel: llama.cpp's own server, prebuilt for CPUs).

Named ``llamacpp`` so that it never shadows the ``gguf`` package it imports.

- :func:`inspect_gguf`: metadata, tensors (name, type, shape, bytes), bytes by type.
- :func:`bits_per_weight`: storage per weight of a GGML type, from its block layout (Q4_1: a
  16-bit scale, a 16-bit minimum and 32 four-bit weights in 20 bytes: 5.0 bits).
- :func:`write_gguf`: the same model at F16, Q8_0 or Q4_0, with the ``gguf`` package's own
  quantizers; :func:`gguf_from_hf`: a small Llama folder (the Yi stand-in) as a GGUF.
- :func:`load_gguf_weights`: a GGUF's weights, dequantized, into a loaded transformers model.
- The size of a model's GGUF at a llama.cpp file type (Q4_K_M...) is the memory planner's:
  ``yi_helpers.models.gguf_file_bytes`` and ``estimate_memory(..., gguf_type=...)``;
  ``yi_helpers.ggml_types`` holds the block layouts, the file types and published sizes.
- :class:`LlamaCpp`: a model loaded by llama.cpp; ``chat`` answers OpenAI-style requests in
  process, and the same server listens on a loopback port for the ``openai`` client. Always
  stopped: use it as a context manager, or call ``close``.

The Linux CPU wheel of xllamacpp is built for AVX2, not AVX-512: on AVX-512 CPUs a source build
of llama.cpp can be faster.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .ggml_types import GGUFError, bits_per_weight  # re-exported: the lesson imports them here

__all__ = ["GGUFError", "bits_per_weight", "inspect_gguf", "write_gguf", "gguf_from_hf",
           "load_gguf_weights", "raw_tensor", "measure_llamacpp", "ollama_modelfile",
           "LlamaCpp"]

#: The types :func:`write_gguf` writes (the ``gguf`` package quantizes these itself).
WRITABLE_TYPES = ("F16", "Q8_0", "Q4_0")

_MAGIC = b"GGUF"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    qtype: str
    shape: tuple[int, ...]  # as PyTorch orders it (rows first)
    n_elements: int
    n_bytes: int


@dataclass
class GGUFInfo:
    """What :func:`inspect_gguf` read: ``metadata`` (key → value) and ``tensors``."""

    path: Path
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(repr=False)

    @property
    def architecture(self) -> str:
        return self.metadata["general.architecture"]

    @property
    def context_length(self) -> int:
        return int(self.metadata[f"{self.architecture}.context_length"])

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def size_by_type(self) -> dict[str, int]:
        """Bytes of tensor data per GGML type, largest first."""
        sizes: dict[str, int] = {}
        for t in self.tensors:
            sizes[t.qtype] = sizes.get(t.qtype, 0) + t.n_bytes
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))

    def special_tokens(self) -> dict[str, tuple[int, str]]:
        """bos / eos / unknown / padding: id and text."""
        tokens = self.metadata.get("tokenizer.ggml.tokens", [])
        out = {}
        for role in ("bos", "eos", "unknown", "padding"):
            key = f"tokenizer.ggml.{role}_token_id"
            if key in self.metadata:
                i = int(self.metadata[key])
                out[role] = (i, tokens[i] if i < len(tokens) else "?")
        return out


def _check_gguf(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}: pass the path of a .gguf file "
                                "(the embedded model's: yi_helpers.embedded.gguf_path())")
    with path.open("rb") as f:
        if f.read(4) != _MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (it does not start with b'GGUF'): "
                            "convert a Hugging Face folder with llama.cpp's convert_hf_to_gguf.py")
    return path


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, mtime_ns: int, size: int) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def _reader(path: str | os.PathLike) -> Any:
    """A ``GGUFReader`` for ``path``, kept while the file is unchanged: building one parses the
    whole vocabulary (seconds), and a lesson opens the same file several times."""
    path = _check_gguf(path).resolve()
    stat = path.stat()
    return _cached_reader(str(path), stat.st_mtime_ns, stat.st_size)


def _name_map(config: Any) -> dict[str, str]:
    """Hugging Face parameter name -> GGUF tensor name for a Llama config, from the ``gguf``
    package's tensor-name map (built once: transformers' helper builds it per module)."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, config.num_hidden_layers)
    out = {}
    for hf in ["model.embed_tokens", "model.norm", "lm_head"] + [
            f"model.layers.{i}.{part}" for i in range(config.num_hidden_layers)
            for part in ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj",
                         "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]:
        out[hf + ".weight"] = names.get_name(hf) + ".weight"
    return out


def inspect_gguf(path: str | os.PathLike | None = None, *, large: int = 64) -> GGUFInfo:
    """Read a GGUF's metadata and tensor table (the embedded model's when ``path`` is None).
    Arrays longer than ``large`` (the vocabulary, the merges) are kept whole in ``metadata``."""
    if path is None:
        from .embedded import gguf_path

        path = gguf_path()
    path = _check_gguf(path)
    reader = _reader(path)
    metadata = {name: f.contents() for name, f in reader.fields.items()
                if not name.startswith("GGUF.")}
    tensors = [TensorInfo(t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)),
                          int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    return GGUFInfo(path, metadata, tensors)


def raw_tensor(path: str | os.PathLike, name: str) -> tuple[str, Any]:
    """``(type, data)`` of one tensor as stored: for a quantized type the packed blocks (a uint8
    array, one row per matrix row), for F32/F16 the numbers."""
    for t in _reader(path).tensors:
        if t.name == name:
            return t.tensor_type.name, t.data
    raise GGUFError(f"{Path(path).name} has no tensor {name!r}")


def write_gguf(out_path: str | os.PathLike, qtype: str, source: str | os.PathLike | None = None
               ) -> Path:
    """Write ``source`` (the embedded GGUF by default) again with its 2-D weight matrices at
    ``qtype`` (one of :data:`WRITABLE_TYPES`); 1-D tensors (norms) stay F32, as llama.cpp's
    converter keeps them. Metadata is copied, with ``general.file_type`` set to match. Returns
    the path; llama.cpp and transformers both load it."""
    import numpy as np
    from gguf import GGUFValueType, GGUFWriter, LlamaFileType, quants
    from gguf import GGMLQuantizationType as T

    if qtype not in WRITABLE_TYPES:
        raise GGUFError(f"write_gguf writes {', '.join(WRITABLE_TYPES)}, not {qtype!r} (K-quants "
                        "need llama.cpp's llama-quantize)")
    if source is None:
        from .embedded import gguf_path

        source = gguf_path()
    out = Path(out_path)
    if out.resolve() == Path(source).resolve():
        raise GGUFError(f"write_gguf reads {out.name} while writing it: choose another out_path")
    reader = _reader(source)
    target = T[qtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(str(out), arch)
    file_type = {"F16": LlamaFileType.MOSTLY_F16, "Q8_0": LlamaFileType.MOSTLY_Q8_0,
                 "Q4_0": LlamaFileType.MOSTLY_Q4_0}[qtype]
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            writer.add_file_type(int(file_type))
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY and len(f.types) > 1 else None
        writer.add_key_value(name, f.contents(), vtype, sub)
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        data = quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if len(shape) == 2:
            packed = (data.astype(np.float16) if target == T.F16 else quants.quantize(data, target))
            writer.add_tensor(t.name, packed, raw_dtype=target)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _permute(w: Any, n_head: int) -> Any:
    """Hugging Face's q/k rows (rotary halves) to GGUF's order (interleaved pairs): the inverse
    of transformers' ``LlamaTensorProcessor._reverse_permute_weights``."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def _pre_tokenizer(tokenizer: Any) -> str:
    """llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer (how text is split before
    the merges); only the two splits the hub's models use."""
    import json

    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if [s.get("type") for s in steps] == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    raise GGUFError("gguf_from_hf converts byte-level BPE tokenizers (GPT-2 or SmolLM splits) "
                    "only; convert this model with llama.cpp's convert_hf_to_gguf.py")


def gguf_from_hf(model_dir: str | os.PathLike, out_path: str | os.PathLike, qtype: str = "F16"
                 ) -> Path:
    """Write a local Llama-architecture folder with a byte-level BPE tokenizer (the Yi stand-in
    of ``tools/yi_shape.py``, the embedded model's folder) as a GGUF: what llama.cpp's
    ``convert_hf_to_gguf.py`` does, for these models only. Config numbers become metadata, the
    vocabulary, merges, special tokens and chat template go in as the tokenizer, tensors get
    GGUF's names (the gguf package's name map) and q/k rows GGUF's rotary order. ``qtype``:
    ``"F32"`` or one of :data:`WRITABLE_TYPES` for the matrices; norms stay F32. A real Yi
    (a SentencePiece tokenizer) needs llama.cpp's converter: this says so."""
    import numpy as np
    import torch
    from gguf import GGUFWriter, LlamaFileType, SpecialVocab, TokenType, quants
    from gguf import GGMLQuantizationType as T
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .system import quiet_hf_progress

    if qtype not in ("F32", *WRITABLE_TYPES):
        raise GGUFError(f"gguf_from_hf writes F32, {', '.join(WRITABLE_TYPES)}, not {qtype!r}")
    folder = Path(model_dir).expanduser()
    if not (folder / "config.json").is_file():
        raise GGUFError(f"{folder} is not a local model folder (no config.json): for a hub id "
                        "download it first, or use llama.cpp's convert_hf_to_gguf.py")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != "llama":
        raise GGUFError(f"gguf_from_hf converts Llama-architecture models, not "
                        f"{config.model_type!r}: use llama.cpp's convert_hf_to_gguf.py")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pre = _pre_tokenizer(tokenizer)
    with quiet_hf_progress():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    to_gguf = _name_map(config)

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(out), "llama")
    w.add_name(folder.name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(getattr(config, "rope_theta", None)
                               or config.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_file_type(int({"F32": LlamaFileType.ALL_F32, "F16": LlamaFileType.MOSTLY_F16,
                         "Q8_0": LlamaFileType.MOSTLY_Q8_0,
                         "Q4_0": LlamaFileType.MOSTLY_Q4_0}[qtype]))
    # the tokenizer: every id's text and kind, then merges, special ids and the chat template
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tokens, kinds = [], []
    for i in range(config.vocab_size):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        kinds.append(TokenType.CONTROL if i in special else
                     TokenType.NORMAL if i in by_id else TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(kinds)
    SpecialVocab(folder, load_merges=True, n_vocab=config.vocab_size).add_to_gguf(w, quiet=True)
    target = None if qtype == "F32" else T[qtype]
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd
        data = tensor.numpy()
        g = to_gguf[name]
        if ".attn_q." in g:
            data = _permute(data, n_head)
        elif ".attn_k." in g:
            data = _permute(data, n_kv)
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim == 2 and target is not None:
            packed = data.astype(np.float16) if target == T.F16 else quants.quantize(data, target)
            w.add_tensor(g, packed, raw_dtype=target)
        else:
            w.add_tensor(g, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def load_gguf_weights(model: Any, path: str | os.PathLike) -> Any:
    """Put the weights of the GGUF at ``path``, dequantized, into ``model`` (a loaded
    transformers Llama model of the same shape) and return it: what ``from_pretrained(...,
    gguf_file=...)`` does for the tensors (the ``gguf`` package's name map and dequantizers,
    transformers' q/k order) without rebuilding the tokenizer and the model each time: about a
    second for the embedded model where ``from_pretrained`` takes about ten."""
    import numpy as np
    import torch
    from gguf import quants
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = _reader(path)
    config = model.config
    processor = LlamaTensorProcessor(config={"num_attention_heads": config.num_attention_heads,
                                             "num_key_value_heads": config.num_key_value_heads})
    names = {g: hf for hf, g in _name_map(config).items()}
    params = dict(model.named_parameters())
    state = {}
    for t in reader.tensors:
        if t.name not in names:
            raise GGUFError(f"{Path(path).name} has tensor {t.name!r}, which this model lacks: "
                            "is it a GGUF of another model?")
        weights = processor.process(quants.dequantize(t.data, t.tensor_type), t.name).weights
        hf = names[t.name]
        target = params.get(hf)
        if target is None or tuple(target.shape) != weights.shape:
            raise GGUFError(f"{t.name}: shape {weights.shape} does not fit the model's {hf} "
                            f"({None if target is None else tuple(target.shape)})")
        state[hf] = torch.from_numpy(np.array(weights, dtype=np.float32)).to(target.dtype)
    missing = set(params) - set(state)
    if config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing:
        raise GGUFError(f"{Path(path).name} lacks {sorted(missing)[:3]}...: not this model's GGUF")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    return model


def measure_llamacpp(llm: "LlamaCpp", prompt_ids: Sequence[int], *, new_tokens: int = 64,
                     repeats: int = 3, warmup: int = 1) -> dict:
    """Time greedy generation in llama.cpp on the same token ids a transformers run gets: the
    keys of :func:`yi_helpers.bench.measure_generation` (median / min / max of ``ttft_s``,
    ``prefill_tok_s``, ``decode_tok_s``) from llama.cpp's own timings. The prompt cache is off
    (every run prefills the whole prompt) and the end of turn is ignored (every run decodes
    ``new_tokens``), as in the transformers measurement."""
    from .bench.speed import median_min_max as stats  # as the transformers timings report

    ids = [int(i) for i in prompt_ids]
    for _ in range(warmup):
        llm.complete(ids, max_tokens=4)
    runs = [llm.complete(ids, max_tokens=new_tokens, ignore_eos=True)["timings"]
            for _ in range(repeats)]
    return {"label": "llama.cpp", "dtype": llm.info.metadata.get("general.file_type"),
            "prompt_len": len(ids), "new_tokens": new_tokens, "repeats": repeats,
            "threads": llm.threads,
            "ttft_s": stats([r["prompt_ms"] / 1000 for r in runs]),
            "prefill_tok_s": stats([r["prompt_per_second"] for r in runs]),
            "decode_tok_s": stats([r["predicted_per_second"] for r in runs])}


#: Ollama's template for ChatML (Yi-Chat's turn format), in Ollama's Go-template syntax.
_OLLAMA_CHATML = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
                  '{{ end }}<|im_start|>assistant\n')


def ollama_modelfile(gguf_file: str, *, system: str | None = None,
                     temperature: float = 0.6, top_p: float = 0.8) -> str:
    """An Ollama ``Modelfile`` for a Yi-Chat GGUF (``ollama create yi-6b-chat -f Modelfile``):
    the ChatML template, ``<|im_end|>`` as the stop (without it replies run on, lesson 02), and
    Yi-Chat's sampling defaults (its ``generation_config.json``: temperature 0.6, top-p 0.8)."""
    lines = [f"FROM {gguf_file}", f'TEMPLATE """{_OLLAMA_CHATML}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ['PARAMETER stop "<|im_end|>"', f"PARAMETER temperature {temperature}",
              f"PARAMETER top_p {top_p}"]
    return "\n".join(lines) + "\n"


class LlamaCpp:
    """A GGUF model loaded by llama.cpp (xllamacpp), answering in process and on a loopback port.

    >>> with LlamaCpp() as llm:                                  # the embedded GGUF
    ...     reply = llm.chat([{"role": "user", "content": "Hi"}], max_tokens=16)

    ``chat`` returns llama.cpp's OpenAI-style dict (``choices``, ``usage``, ``timings`` with
    ``prompt_per_second`` and ``predicted_per_second``). ``base_url`` is the address for the
    ``openai`` client (``OpenAI(base_url=llm.base_url, api_key="none")``). The GGUF's own chat
    template renders the messages, and llama.cpp stops at the model's end-of-turn token.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, n_ctx: int = 2048,
                 threads: int | None = None, port: int | None = None, quiet: bool = True):
        import xllamacpp

        from .serve import PortInUseError, free_port, port_is_free

        info = inspect_gguf(path)
        if n_ctx > info.context_length:
            raise GGUFError(f"n_ctx={n_ctx} is longer than the {info.context_length} tokens "
                            f"{info.path.name} was trained for: pass n_ctx <= "
                            f"{info.context_length}")
        if port is not None and not port_is_free(port):
            raise PortInUseError(f"port {port} on 127.0.0.1 is in use: pass another port, or port=None "
                          "for a free one")
        self.info, self.path = info, info.path
        params = xllamacpp.CommonParams()
        params.model.path = str(info.path)
        params.n_ctx = n_ctx
        threads = threads or max(1, min(os.cpu_count() or 1, 8))
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_parallel = 1
        params.warmup = False
        params.hostnames = ["127.0.0.1"]
        params.port = port or free_port()
        if quiet:  # llama.cpp logs every request to stderr: errors only
            params.verbosity = -1
        self.threads, self.port = threads, params.port
        self._server = xllamacpp.Server(params)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 64,
             temperature: float = 0.0, **sampling: Any) -> dict:
        """One chat completion, OpenAI-style; ``temperature=0`` is greedy. More llama.cpp
        sampling fields pass through (``top_p``, ``top_k``, ``seed``, ``stop``...)."""
        if self._server is None:
            raise RuntimeError("this LlamaCpp is closed: create a new one")
        request = {"messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                   "temperature": temperature, **sampling}
        reply = self._server.handle_chat_completions(request)
        if "error" in reply:
            raise RuntimeError(f"llama.cpp refused the request: {reply['error']}")
        return reply

    def complete(self, prompt: str | Sequence[int], *, max_tokens: int = 64,
                 temperature: float = 0.0, **fields: Any) -> dict:
        """A raw completion of ``prompt`` (text, or token ids: the exact ids another engine
        got), no chat template; the prompt cache is off unless ``cache_prompt=True``."""
        if self._server is None:
            raise RuntimeError("this LlamaCpp is closed: create a new one")
        request = {"prompt": prompt if isinstance(prompt, str) else [int(i) for i in prompt],
                   "n_predict": max_tokens, "temperature": temperature, "cache_prompt": False,
                   **fields}
        reply = self._server.handle_completions(request)
        if "error" in reply:
            raise RuntimeError(f"llama.cpp refused the request: {reply['error']}")
        return reply

    def greedy_ids(self, prompt_ids: Sequence[int], max_tokens: int) -> list[int]:
        """The token ids of the greedy continuation of ``prompt_ids`` (``max_tokens`` of them,
        the end of turn ignored): to compare with another engine token by token."""
        reply = self.complete(prompt_ids, max_tokens=max_tokens, ignore_eos=True, logprobs=1)
        return [int(t["id"]) for t in reply["choices"][0]["logprobs"]["content"]]

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text llama.cpp makes from ``messages`` with the GGUF's chat template (the
        server's ``/apply-template``)."""
        import json
        import urllib.request

        request = urllib.request.Request(
            self.base_url.removesuffix("/v1") + "/apply-template",
            data=json.dumps({"messages": [dict(m) for m in messages]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["prompt"]

    def stream(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 64,
               temperature: float = 0.0, **sampling: Any) -> Iterator[str]:
        """The reply piece by piece, through the server's streaming endpoint (the ``openai``
        client's ``stream=True``)."""
        from openai import OpenAI

        client = OpenAI(base_url=self.base_url, api_key="none")
        chunks = client.chat.completions.create(
            model=self.path.name, messages=[dict(m) for m in messages], max_tokens=max_tokens,
            temperature=temperature, stream=True, extra_body=sampling or None)
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    def close(self) -> None:
        """Stop the server and free the model (also at the end of a ``with`` block)."""
        server, self._server = getattr(self, "_server", None), None
        if server is not None:
            del server

    def __enter__(self) -> "LlamaCpp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
