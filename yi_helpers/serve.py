"""Serve a model behind an OpenAI-compatible API: ``serve()`` runs ``transformers serve`` as a
child process and always stops it, ``load_test()`` measures latency and tokens/s under concurrent
clients, ``vllm_command()`` writes the ``vllm serve`` line a Yi chat model needs."""

from __future__ import annotations

import atexit
import errno
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from .chat import YI_CHAT_STOP_IDS
from .devices import dtype_name, load_dtype, resolve_device
from .resolve import resolve_model

__all__ = ["port_is_free", "free_port", "pick_device", "server_command", "serve",
           "response_json", "error_info", "load_test", "vllm_command", "vllm_stop_body",
           "shell_line"]

LOOPBACK = "127.0.0.1"

#: A command list as one line to paste into a shell.
shell_line = shlex.join


class PortInUseError(OSError):
    """Raised before starting a server on a port something else already listens on."""


class ServerStartError(RuntimeError):
    """Raised when the server process exits, or does not answer, before it is ready."""


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on ``host:port`` now (the way uvicorn binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on (the operating system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_PATH = re.compile(r"(?<![\w.])/(?:root|home|work|tmp|usr|opt|var|private|Users|mnt|content"
                   r"|srv|data)(?:/[\w.@+~-]+)*/([\w.@+~-]+)")


def redact_paths(text: str) -> str:
    """Replace local absolute paths by ``…/<last part>`` (server logs name local folders);
    URL paths such as ``/v1/chat/completions`` are kept."""
    return _PATH.sub(lambda m: f"…/{m.group(1)}", text)


def pick_device(device: str = "auto", model: str = "embedded") -> tuple[str, str]:
    """→ (device, dtype name) for the server, as ``yi_helpers.load`` picks them: float32 on a CPU
    and for the tiny embedded model (greedy replies match ``yi_helpers.chat``), bfloat16 for a Yi
    model on a GPU (float16 where it has no bfloat16). Imports no transformers model code."""
    device = resolve_device(device)
    return device, dtype_name(load_dtype(model, "auto", device))


def server_command(model: str, *, host: str = LOOPBACK, port: int = 8000, device: str = "cpu",
                   dtype: str = "float32", extra_args: Sequence[str] = ()) -> list[str]:
    """The ``transformers serve`` command line (run with this Python) pinned to one model."""
    return [sys.executable, "-m", "transformers.cli.transformers", "serve", model,
            "--host", host, "--port", str(port), "--device", device, "--dtype", dtype,
            "--log-level", "info", *extra_args]


@dataclass
class Server:
    """A running ``transformers serve`` child process (made by :func:`serve`)."""

    model: str
    port: int
    process: subprocess.Popen
    log_path: Path
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self):
        """An ``openai.OpenAI`` client for this server: no retries (errors show at once), and a
        fresh connection per request (after an internal error (500) uvicorn closes the
        connection, and a client that reuses it gets "connection reset" on its next request)."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key="not-needed", max_retries=0, timeout=120.0,
                      default_headers={"Connection": "close"})  # the server ignores the key

    def is_running(self) -> bool:
        return self.process.poll() is None

    def health(self) -> bool:
        """True when ``GET /health`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _log(self) -> str:
        """The log's text, local paths redacted ('' once the log is gone, after the block)."""
        try:
            return redact_paths(self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's log, local paths redacted."""
        return "\n".join(self._log().rstrip("\n").splitlines()[-lines:])

    def log_lines(self, prefixes: str | tuple[str, ...], expect: int = 0,
                  timeout: float = 10.0) -> list[str]:
        """The log's lines that start with ``prefixes`` (local paths redacted). A server answers
        a failed request (HTTP 500) before it logs the traceback: with ``expect=n`` this waits up
        to ``timeout`` seconds for at least ``n`` such lines, then returns what is there."""
        deadline = time.perf_counter() + timeout
        while True:
            found = [line for line in self._log().splitlines() if line.startswith(prefixes)]
            if len(found) >= expect or time.perf_counter() > deadline:
                return found
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int:
        """terminate → wait → kill; returns the exit code. Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


@contextmanager
def serve(model: str | os.PathLike = "embedded", *, port: int | None = None,
          device: str = "cpu", dtype: str = "float32", timeout: float = 120.0,
          extra_args: Sequence[str] = (), stop_timeout: float = 10.0) -> Iterator[Server]:
    """Start ``transformers serve`` for ``model`` on loopback, wait until ``/health`` answers
    (``timeout`` seconds), always stop it (``stop_timeout``: seconds from terminate to kill).

    ``model``: ``"embedded"``, a local folder (served offline, from its parent folder under its
    own name) or a hub id. ``float32`` keeps greedy replies identical to ``yi_helpers.chat``.
    Raises :class:`PortInUseError` before anything starts, :class:`ServerStartError` (ending
    with the tail of the log) when the server dies or does not answer in time.
    """
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise PortInUseError(
            errno.EADDRINUSE,
            f"Port {port} on {LOOPBACK} is already in use (another server, or one left running). "
            "Stop it, pick another port, or pass port=None to use a free one.")
    source = resolve_model(model)
    local = Path(source.location).resolve()
    cwd, name = (local.parent, local.name) if source.is_local else (None, source.location)
    env = {"PYTHONUNBUFFERED": "1", **os.environ}
    if source.is_local:
        env["HF_HUB_OFFLINE"] = "1"
    workdir = Path(tempfile.mkdtemp(prefix="yi-serve-"))
    command = server_command(name, port=port, device=device, dtype=dtype, extra_args=extra_args)
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    server = Server(name, port, process, workdir / "server.log")
    # A notebook kernel that exits without closing the block still stops its server.
    atexit.register(server.stop, stop_timeout)
    try:
        start = time.perf_counter()
        while not server.health():
            if not server.is_running():
                raise ServerStartError(
                    f"The server exited (code {process.returncode}) before it was ready. "
                    f"End of its log:\n{server.log_tail(20)}")
            if time.perf_counter() - start > timeout:
                raise ServerStartError(
                    f"The server did not answer {server.url}/health within {timeout:.0f} s "
                    f"(raise timeout= on a slow machine). End of its log:\n{server.log_tail(20)}")
            time.sleep(0.2)
        server.startup_s = time.perf_counter() - start
        yield server
    finally:
        server.stop(stop_timeout)
        atexit.unregister(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def response_json(response: Any) -> dict:
    """An openai response as a dict, with its per-request fields (id, created) replaced by
    ``"…"`` so the rest can be compared and printed."""
    volatile = ("id", "created", "system_fingerprint")
    return {k: ("…" if k in volatile else v)
            for k, v in response.model_dump(exclude_none=True).items()}


def error_info(err: Any) -> dict:
    """``{"status": 400, "error": ...}`` from an ``openai.APIStatusError`` (the server's answer)."""
    return {"status": err.status_code,
            "error": err.response.text if err.body is None else err.body}


class RequestResult(NamedTuple):
    client: int
    start_s: float      # since the load test began
    latency_s: float
    completion_tokens: int
    error: str | None = None


@dataclass
class LoadResult:
    """What :func:`load_test` measured: one :class:`RequestResult` per request."""

    wall_s: float
    results: list[RequestResult]

    @property
    def errors(self) -> int:
        return sum(r.error is not None for r in self.results)

    def summary(self) -> dict[str, float]:
        """Latency percentiles (numpy's linear interpolation) of the answered requests, and their
        completion tokens and number per second of wall time (all clients together)."""
        import numpy as np

        ok = [r for r in self.results if r.error is None]
        lat = [r.latency_s for r in ok]
        p50, p90, p99 = np.percentile(lat, [50, 90, 99]).tolist() if lat else [float("nan")] * 3
        return {"requests": len(self.results), "errors": self.errors,
                "p50_s": round(p50, 3), "p90_s": round(p90, 3), "p99_s": round(p99, 3),
                "tokens_per_s": round(sum(r.completion_tokens for r in ok) / self.wall_s, 1),
                "requests_per_s": round(len(ok) / self.wall_s, 2),
                "wall_s": round(self.wall_s, 1)}


def load_test(client: Any, model: str, prompts: Sequence[str], *, clients: int = 8,
              requests_per_client: int = 5, max_tokens: int = 8,
              **request: Any) -> LoadResult:
    """``clients`` threads each send ``requests_per_client`` chat requests one after another (so
    at most ``clients`` are in flight), greedy unless ``request`` says otherwise. Request ``i`` of
    client ``c`` asks ``prompts[(c * requests_per_client + i) % len(prompts)]``. Failed requests
    are counted, not raised."""
    if clients < 1 or requests_per_client < 1 or not prompts:
        raise ValueError("give at least one prompt, one client and one request per client")
    request.setdefault("temperature", 0)
    results: list[RequestResult] = []  # list.append is thread-safe
    t0 = time.perf_counter()

    def run_client(c: int) -> None:
        for i in range(requests_per_client):
            prompt = prompts[(c * requests_per_client + i) % len(prompts)]
            start = time.perf_counter()
            error, tokens = None, 0
            try:
                reply = client.chat.completions.create(
                    model=model, max_tokens=max_tokens,
                    messages=[{"role": "user", "content": prompt}], **request)
                tokens = reply.usage.completion_tokens if reply.usage else 0
            except Exception as err:  # counted, shown in the summary
                error = f"{type(err).__name__}: {err}"
            end = time.perf_counter()
            results.append(RequestResult(c, start - t0, end - start, tokens, error))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(run_client, range(clients)))
    results.sort(key=lambda r: r.start_s)
    return LoadResult(time.perf_counter() - t0, results)


def vllm_command(model: str = "01-ai/Yi-6B-Chat", *, port: int = 8000,
                 max_model_len: int = 4096) -> list[str]:
    """The ``vllm serve`` command for a Yi chat model.

    ``--generation-config auto`` makes vLLM read the model's ``generation_config.json`` (Yi-Chat:
    eos 7 = ``<|im_end|>``, temperature 0.6, top_p 0.8) instead of stopping only at the
    tokenizer's eos (2), the cause of "replies never stop" (vllm-project/vllm#1861). Pair it
    with :func:`vllm_stop_body` on each request as a safety net.
    """
    return ["vllm", "serve", model, "--host", LOOPBACK, "--port", str(port), "--dtype", "bfloat16",
            "--max-model-len", str(max_model_len), "--generation-config", "auto"]


def vllm_stop_body(stop_ids: Sequence[int] = YI_CHAT_STOP_IDS) -> dict[str, Any]:
    """``extra_body`` for the OpenAI client that makes vLLM stop at these token ids (vLLM's
    ``stop_token_ids`` extension; Yi chat: ``<|im_end|>`` 7 and ``<|endoftext|>`` 2)."""
    return {"stop_token_ids": [int(i) for i in stop_ids]}
