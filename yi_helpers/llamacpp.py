"""GGUF files and llama.cpp: look inside a GGUF, write one at another type, and run it with
llama.cpp in this process (the ``xllamacpp`` wheel: llama.cpp's own server, prebuilt for CPUs).

Named ``llamacpp`` so that it never shadows the ``gguf`` package it imports.

- :func:`inspect_gguf`: metadata, tensors (name, type, shape, bytes), bytes by type.
- :func:`bits_per_weight`: storage per weight of a GGML type, from its block layout (Q4_1: a
  16-bit scale, a 16-bit minimum and 32 four-bit weights in 20 bytes: 5.0 bits).
- :func:`write_gguf`: the same model at F16, Q8_0 or Q4_0, with the ``gguf`` package's own
  quantizers.
- :class:`LlamaCpp`: a model loaded by llama.cpp; ``chat`` answers OpenAI-style requests in
  process, and the same server listens on a loopback port for the ``openai`` client. Always
  stopped: use it as a context manager, or call ``close``.

The Linux CPU wheel of xllamacpp is built for AVX2, not AVX-512: on AVX-512 CPUs a source build
of llama.cpp can be faster.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["GGUFError", "WRITABLE_TYPES", "TensorInfo", "GGUFInfo", "bits_per_weight",
           "inspect_gguf", "write_gguf", "ollama_modelfile", "LlamaCpp"]

#: The types :func:`write_gguf` writes (the ``gguf`` package quantizes these itself).
WRITABLE_TYPES = ("F16", "Q8_0", "Q4_0")

_MAGIC = b"GGUF"


class GGUFError(ValueError):
    """A file that is not a GGUF, a type that cannot be written, or a request the model cannot
    take (a context longer than it was trained for)."""


def bits_per_weight(qtype: str) -> float:
    """Bits each weight takes in a GGML type, block overhead included: ``"Q4_1"`` 5.0,
    ``"Q8_0"`` 8.5, ``"Q4_0"`` 4.5, ``"Q4_K"`` 4.5, ``"F16"`` 16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    except KeyError:
        known = ", ".join(t.name for t in GGML_QUANT_SIZES)
        raise GGUFError(f"unknown GGML type {qtype!r}; known: {known}") from None
    return size * 8 / block


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


def inspect_gguf(path: str | os.PathLike | None = None, *, large: int = 64) -> GGUFInfo:
    """Read a GGUF's metadata and tensor table (the embedded model's when ``path`` is None).
    Arrays longer than ``large`` (the vocabulary, the merges) are kept whole in ``metadata``."""
    from gguf import GGUFReader

    if path is None:
        from .embedded import gguf_path

        path = gguf_path()
    path = _check_gguf(path)
    reader = GGUFReader(str(path))
    metadata = {name: f.contents() for name, f in reader.fields.items()
                if not name.startswith("GGUF.")}
    tensors = [TensorInfo(t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)),
                          int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    return GGUFInfo(path, metadata, tensors)


def write_gguf(out_path: str | os.PathLike, qtype: str, source: str | os.PathLike | None = None
               ) -> Path:
    """Write ``source`` (the embedded GGUF by default) again with its 2-D weight matrices at
    ``qtype`` (one of :data:`WRITABLE_TYPES`); 1-D tensors (norms) stay F32, as llama.cpp's
    converter keeps them. Metadata is copied, with ``general.file_type`` set to match. Returns
    the path; llama.cpp and transformers both load it."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, quants
    from gguf import GGMLQuantizationType as T

    if qtype not in WRITABLE_TYPES:
        raise GGUFError(f"write_gguf writes {', '.join(WRITABLE_TYPES)}, not {qtype!r} (K-quants "
                        "need llama.cpp's llama-quantize)")
    if source is None:
        from .embedded import gguf_path

        source = gguf_path()
    reader = GGUFReader(str(_check_gguf(source)))
    target = T[qtype]
    out = Path(out_path)
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
