"""GGUF files (written, loaded into transformers) and llama.cpp in this process
(:class:`LlamaCpp`, on the ``xllamacpp`` wheel: built for AVX2, so on AVX-512 CPUs a source
build of llama.cpp can be faster). Named ``llamacpp`` so that it never shadows ``gguf``."""

from __future__ import annotations

import functools
import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

from .ggml_types import GGUFError

__all__ = ["write_gguf", "gguf_from_hf", "load_gguf_weights", "measure_llamacpp", "LlamaCpp"]

#: The types the writers quantize matrices to, and the ``gguf.LlamaFileType`` each file gets.
WRITABLE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0",
                  "Q4_0": "MOSTLY_Q4_0"}


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, mtime_ns: int, size: int) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def _reader(path: str | os.PathLike) -> Any:
    """A ``GGUFReader`` for ``path``, kept while the file is unchanged: building one parses the
    whole vocabulary (seconds), and a lesson opens the same file several times."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}: pass the path of a .gguf file "
                                "(the embedded model's: yi_helpers.embedded.gguf_path())")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (it does not start with b'GGUF'): "
                            "convert a Hugging Face folder with llama.cpp's convert_hf_to_gguf.py")
    stat = path.stat()
    return _cached_reader(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _field(path: str | os.PathLike, key: str) -> Any:
    """The value of one metadata ``key`` of the GGUF at ``path`` (None where it has none)."""
    found = _reader(path).fields.get(key)
    return None if found is None else found.contents()


def _name_map(model: Any) -> dict[str, str]:
    """Hugging Face parameter name -> GGUF tensor name for a Llama model, from the ``gguf``
    package's tensor-name map (built once: transformers' helper builds it per module)."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, model.config.num_hidden_layers)
    return {hf: names.get_name(hf, try_suffixes=(".weight",)) for hf in model.state_dict()}


def _close(writer: Any, out: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def write_gguf(out_path: str | os.PathLike, qtype: str, source: str | os.PathLike | None = None
               ) -> Path:
    """Write ``source`` (the embedded GGUF by default) again with its matrices at ``qtype``
    (F16, Q8_0 or Q4_0) and its metadata copied, ``general.file_type`` set to match. llama.cpp
    and transformers both load the result."""
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFValueType, GGUFWriter, LlamaFileType, quants

    if qtype == "F32" or qtype not in WRITABLE_TYPES:
        raise GGUFError(f"write_gguf writes {', '.join(t for t in WRITABLE_TYPES if t != 'F32')}, "
                        f"not {qtype!r} (K-quants need llama.cpp's llama-quantize)")
    if source is None:
        from .embedded import gguf_path

        source = gguf_path()
    out = Path(out_path)
    if out.resolve() == Path(source).resolve():
        raise GGUFError(f"write_gguf reads {out.name} while writing it: choose another out_path")
    reader = _reader(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(out), reader.fields["general.architecture"].contents())
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = (int(LlamaFileType[WRITABLE_TYPES[qtype]]) if name == "general.file_type"
                 else f.contents())
        sub = f.types[1] if f.types[0] == GGUFValueType.ARRAY and len(f.types) > 1 else None
        writer.add_key_value(name, value, f.types[0], sub)
    for t in reader.tensors:  # matrices at qtype; norms stay F32, as llama.cpp keeps them
        shape = tuple(int(d) for d in reversed(t.shape))
        data = quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        target = T[qtype if data.ndim == 2 else "F32"]
        writer.add_tensor(t.name, quants.quantize(data, target), raw_dtype=target)
    return _close(writer, out)


def _permute(w: Any, n_head: int) -> Any:
    """Hugging Face's q/k rows (rotary halves) to GGUF's order (interleaved pairs): the inverse
    of transformers' ``LlamaTensorProcessor._reverse_permute_weights``."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def _pre_tokenizer(tokenizer: Any) -> str:
    """llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer (how text is split before
    the merges); only the two splits the hub's models use."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if ([s.get("type") for s in steps] == ["Digits", "ByteLevel"]
            and steps[0].get("individual_digits")):
        return "smollm"
    raise GGUFError("gguf_from_hf converts byte-level BPE tokenizers (GPT-2 or SmolLM splits) "
                    "only; convert this model with llama.cpp's convert_hf_to_gguf.py")


def gguf_from_hf(model_dir: str | os.PathLike, out_path: str | os.PathLike, qtype: str = "F16"
                 ) -> Path:
    """Write a local Llama folder with a byte-level BPE tokenizer (the Yi stand-in of
    ``tools/yi_shape.py``, the embedded model's folder) as a GGUF, matrices at ``qtype`` (F32,
    F16, Q8_0 or Q4_0): llama.cpp's ``convert_hf_to_gguf.py`` for these models only. A real Yi
    (a SentencePiece tokenizer) needs llama.cpp's converter: this says so."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFWriter, LlamaFileType, SpecialVocab, TokenType, quants
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .quiet import quiet_hf_progress

    if qtype not in WRITABLE_TYPES:
        raise GGUFError(f"gguf_from_hf writes {', '.join(WRITABLE_TYPES)}, not {qtype!r}")
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

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(out), "llama")
    rope_theta = getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]
    for key, value in {  # the config's numbers, as GGUFWriter.add_<key> writes them
            "name": folder.name, "context_length": config.max_position_embeddings,
            "embedding_length": config.hidden_size, "block_count": config.num_hidden_layers,
            "feed_forward_length": config.intermediate_size, "head_count": n_head,
            "head_count_kv": n_kv, "key_length": head_dim, "value_length": head_dim,
            "rope_dimension_count": head_dim, "rope_freq_base": float(rope_theta),
            "layer_norm_rms_eps": config.rms_norm_eps, "vocab_size": config.vocab_size,
            "file_type": int(LlamaFileType[WRITABLE_TYPES[qtype]])}.items():
        getattr(w, f"add_{key}")(value)
    # the tokenizer: every id's text and kind, then merges, special ids and the chat template
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list([by_id.get(i, f"[PAD{i}]") for i in range(config.vocab_size)])
    w.add_token_types([TokenType.CONTROL if i in special else
                       TokenType.NORMAL if i in by_id else TokenType.UNUSED
                       for i in range(config.vocab_size)])
    SpecialVocab(folder, load_merges=True, n_vocab=config.vocab_size).add_to_gguf(w, quiet=True)
    to_gguf = _name_map(model)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd
        data, g = tensor.numpy(), to_gguf[name]
        if ".attn_q." in g or ".attn_k." in g:
            data = _permute(data, n_head if ".attn_q." in g else n_kv)
        target = T[qtype if data.ndim == 2 else "F32"]  # norms stay F32
        w.add_tensor(g, quants.quantize(np.ascontiguousarray(data), target), raw_dtype=target)
    return _close(w, out)


def load_gguf_weights(model: Any, path: str | os.PathLike) -> Any:
    """Put the weights of the GGUF at ``path``, dequantized, into ``model`` (a loaded Llama of
    the same shape) and return it: ``from_pretrained(..., gguf_file=...)`` for the tensors only,
    about a second for the embedded model where ``from_pretrained`` takes about ten."""
    import numpy as np
    import torch
    from gguf import quants
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    config = model.config
    processor = LlamaTensorProcessor(config={"num_attention_heads": config.num_attention_heads,
                                             "num_key_value_heads": config.num_key_value_heads})
    names = {g: hf for hf, g in _name_map(model).items()}
    params = dict(model.named_parameters())
    state = {}
    for t in _reader(path).tensors:
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
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = set(params) - set(state) - tied
    if missing:
        raise GGUFError(f"{Path(path).name} lacks {sorted(missing)[:3]}...: not this model's GGUF")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    return model


def measure_llamacpp(llm: "LlamaCpp", prompt_ids: Sequence[int], *, new_tokens: int = 64,
                     repeats: int = 3, warmup: int = 1) -> dict:
    """Time greedy generation in llama.cpp on the token ids a transformers run gets, with the
    keys of :func:`yi_helpers.bench.measure_generation`, from llama.cpp's own timings. As there,
    every run prefills the whole prompt (no prompt cache) and decodes ``new_tokens``."""
    from .bench.speed import median_min_max as stats  # as the transformers timings report

    ids = list(prompt_ids)
    for _ in range(warmup):
        llm.complete(ids, max_tokens=4)
    runs = [llm.complete(ids, max_tokens=new_tokens, ignore_eos=True)["timings"]
            for _ in range(repeats)]
    return {"label": "llama.cpp", "dtype": _field(llm.path, "general.file_type"),
            "prompt_len": len(ids), "new_tokens": new_tokens, "repeats": repeats,
            "threads": llm.threads,
            "ttft_s": stats([r["prompt_ms"] / 1000 for r in runs]),
            "prefill_tok_s": stats([r["prompt_per_second"] for r in runs]),
            "decode_tok_s": stats([r["predicted_per_second"] for r in runs])}


class LlamaCpp:
    """A GGUF (the embedded one by default) loaded by llama.cpp (xllamacpp): ``chat`` answers in
    process with llama.cpp's OpenAI-style dict (``choices``, ``usage``, ``timings``), and the same
    server listens on a free loopback port, ``base_url``, for the ``openai`` client. The GGUF's
    chat template renders the messages. Use it as a context manager, or call ``close``."""

    def __init__(self, path: str | os.PathLike | None = None, *, n_ctx: int = 2048,
                 threads: int | None = None):
        import xllamacpp

        from .embedded import gguf_path
        from .serve import free_port

        self.path = Path(gguf_path() if path is None else path)
        arch = _field(self.path, "general.architecture")
        trained = int(_field(self.path, f"{arch}.context_length"))
        if n_ctx > trained:
            raise GGUFError(f"n_ctx={n_ctx} is longer than the {trained} tokens "
                            f"{self.path.name} was trained for: pass n_ctx <= {trained}")
        self.threads, self.port = threads or min(os.cpu_count() or 1, 8), free_port()
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = n_ctx
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = self.threads
        params.n_parallel = 1
        params.warmup = False
        params.hostnames, params.port = ["127.0.0.1"], self.port
        params.verbosity = -1  # errors only: llama.cpp logs every request otherwise
        self._server = xllamacpp.Server(params)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _handle(self, endpoint: str, request: dict) -> dict:
        if self._server is None:
            raise RuntimeError("this LlamaCpp is closed: create a new one")
        reply = getattr(self._server, f"handle_{endpoint}")(request)
        if "error" in reply:
            raise RuntimeError(f"llama.cpp refused the request: {reply['error']}")
        return reply

    def chat(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 64,
             temperature: float = 0.0, **sampling: Any) -> dict:
        """One chat completion; ``temperature=0`` is greedy. More llama.cpp sampling fields pass
        through (``top_p``, ``top_k``, ``seed``, ``stop``...)."""
        return self._handle("chat_completions", dict(
            messages=list(messages), max_tokens=max_tokens, temperature=temperature, **sampling))

    def complete(self, prompt_ids: Sequence[int], *, max_tokens: int = 64, **fields: Any) -> dict:
        """A greedy raw completion of token ids (the exact ids another engine got), no chat
        template; the prompt cache is off unless ``cache_prompt=True``."""
        return self._handle("completions", {"prompt": [int(i) for i in prompt_ids],
                                            "n_predict": max_tokens, "temperature": 0.0,
                                            "cache_prompt": False, **fields})

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text the GGUF's chat template makes of ``messages`` (the server's
        ``/apply-template``)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/apply-template",
            data=json.dumps({"messages": list(messages)}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["prompt"]

    def close(self) -> None:
        """Stop the server and free the model (also at the end of a ``with`` block)."""
        self._server = None

    def __enter__(self) -> "LlamaCpp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
