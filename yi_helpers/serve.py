"""Serve a model behind an OpenAI-compatible API (``transformers serve``) and measure it.

``serve()`` starts the server as a child process and always stops it::

    with serve("embedded") as server:          # a free loopback port, the embedded model
        client = server.client()               # an openai.OpenAI pointed at the server
        reply = client.chat.completions.create(
            model=server.model, temperature=0, max_tokens=32,
            messages=[{"role": "user", "content": "hi"}])

The served model is named after its folder (``SmolLM2-135M-Instruct`` for the embedded one): the
server runs inside the folder's parent, so no local path appears in its answers.

``load_test()`` runs a bounded number of concurrent clients against a server and reports latency
percentiles and tokens/s; ``vllm_command()`` writes the ``vllm serve`` line a Yi chat model needs.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .devices import dtype_name, load_dtype, resolve_device
from .resolve import resolve_model

__all__ = ["LOOPBACK", "PortInUseError", "port_is_free", "free_port", "tail", "pick_device",
           "server_command", "Server", "serve", "response_json", "error_info", "load_test",
           "vllm_command", "vllm_stop_body", "shell_line"]

LOOPBACK = "127.0.0.1"

#: Yi chat models end a turn with ``<|im_end|>`` (id 7); their tokenizer's eos is 2.
YI_CHAT_STOP_IDS = (7, 2)


class PortInUseError(OSError):
    """Raised before starting a server on a port something else already listens on."""


class ServerStartError(RuntimeError):
    """Raised when the server process exits, or does not answer, before it is ready."""


# ---------------------------------------------------------------- ports

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


# ---------------------------------------------------------------- logs

_PATH = re.compile(r"(?<![\w.])/(?:root|home|work|tmp|usr|opt|var|private|Users|mnt|content|srv|data)"
                   r"(?:/[\w.@+~-]+)*/([\w.@+~-]+)")


def redact_paths(text: str) -> str:
    """Replace local absolute paths by ``…/<last part>`` (server logs name local folders);
    URL paths such as ``/v1/chat/completions`` are kept."""
    return _PATH.sub(lambda m: f"…/{m.group(1)}", text)


def _read_log(path: str | os.PathLike) -> str:
    """A log file's text ('' when it does not exist (yet) or cannot be read)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def tail(path: str | os.PathLike, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    return "\n".join(_read_log(path).rstrip("\n").splitlines()[-lines:])


# ---------------------------------------------------------------- the server

def server_target(model: str | os.PathLike) -> tuple[Path | None, str]:
    """→ (folder to run the server in, model name the server is pinned to).

    The name is interpreted by :func:`yi_helpers.resolve.resolve_model`. The embedded model and
    local folders are served from their parent folder under their own name (so answers never
    carry a local path); a hub id is passed on as it is.
    """
    source = resolve_model(model)
    if not source.is_local:
        return None, source.location
    path = Path(source.location).resolve()
    return path.parent, path.name


def pick_device(device: str = "auto", model: str = "embedded") -> tuple[str, str]:
    """→ (device, dtype name) for the server, as :mod:`yi_helpers.devices` decides them for
    ``yi_helpers.load``: float32 on a CPU and for the tiny embedded model everywhere (greedy
    replies match ``yi_helpers.chat``), bfloat16 for a Yi model on a GPU (float16 where it has
    no bfloat16). (Light: unlike ``yi_helpers.loading`` it imports no transformers model code.)"""
    device = resolve_device(device)
    return device, dtype_name(load_dtype(model, "auto", device))


def server_command(model: str, *, host: str = LOOPBACK, port: int = 8000, device: str = "cpu",
                   dtype: str = "float32", extra_args: Sequence[str] = ()) -> list[str]:
    """The ``transformers serve`` command line (run with this Python) pinned to one model."""
    return [sys.executable, "-m", "transformers.cli.transformers", "serve", model,
            "--host", host, "--port", str(port), "--device", device, "--dtype", dtype,
            "--log-level", "info", *extra_args]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class Server:
    """A running ``transformers serve`` child process (made by :func:`serve`)."""

    model: str
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    command: list[str] = field(default_factory=list)
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the OpenAI client needs: ``http://host:port/v1``."""
        return f"{self.url}/v1"

    def client(self, **kwargs: Any):
        """An ``openai.OpenAI`` client for this server.

        No retries (errors show at once), and a fresh connection per request: after an internal
        error (500) uvicorn closes the connection, and a client that reuses it gets
        "connection reset" on its next request.
        """
        from openai import DefaultHttpxClient, OpenAI

        try:  # openai >= 3 ships on httpx2; older versions on httpx
            from httpx2 import Limits
        except ImportError:  # pragma: no cover
            from httpx import Limits

        kwargs.setdefault("api_key", "not-needed")  # the client insists on one; the server ignores it
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 120.0)
        kwargs.setdefault("http_client", DefaultHttpxClient(
            limits=Limits(max_connections=64, max_keepalive_connections=0)))
        return OpenAI(base_url=self.base_url, **kwargs)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def health(self) -> bool:
        """True when ``GET /health`` answers 200."""
        try:
            return _get(f"{self.url}/health")[0] == 200
        except OSError:
            return False

    def models(self) -> list[str]:
        """Ids listed by ``GET /v1/models``."""
        return [m["id"] for m in json.loads(_get(f"{self.url}/v1/models")[1])["data"]]

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's log, local paths redacted."""
        return redact_paths(tail(self.log_path, lines))

    def log_lines(self, prefixes: str | tuple[str, ...], expect: int = 0, timeout: float = 10.0,
                  poll_s: float = 0.1) -> list[str]:
        """The log's lines that start with ``prefixes`` (local paths redacted).

        A server answers a failed request (HTTP 500) first and writes the traceback just after,
        so reading the log right after the answer can miss it: with ``expect=n`` this waits up to
        ``timeout`` seconds for at least ``n`` such lines, then returns what is there.
        """
        deadline = time.perf_counter() + timeout
        while True:
            found = [line for line in redact_paths(_read_log(self.log_path)).splitlines()
                     if line.startswith(prefixes)]
            if len(found) >= expect or time.perf_counter() > deadline:
                return found
            time.sleep(poll_s)

    def wait_ready(self, timeout: float = 120.0, poll_s: float = 0.2) -> float:
        """Block until ``/health`` answers; return the seconds waited.

        Raises :class:`ServerStartError` (with the end of the log) when the process exits first
        or ``timeout`` passes.
        """
        start = time.perf_counter()
        while True:
            if not self.is_running():
                raise ServerStartError(
                    f"The server exited (code {self.process.returncode}) before it was ready. "
                    f"End of its log:\n{self.log_tail(20)}")
            if self.health():
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                raise ServerStartError(
                    f"The server did not answer {self.url}/health within {timeout:.0f} s "
                    f"(raise timeout= on a slow machine). End of its log:\n{self.log_tail(20)}")
            time.sleep(poll_s)

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
          host: str = LOOPBACK, device: str = "cpu", dtype: str = "float32",
          timeout: float = 120.0, log_path: str | os.PathLike | None = None,
          extra_args: Sequence[str] = (), offline: bool | None = None,
          stop_timeout: float = 10.0) -> Iterator[Server]:
    """Start ``transformers serve`` for ``model``, wait until it answers, always stop it.

    Args:
        model: ``"embedded"``, a local folder with safetensors weights, or a hub id.
        port: a port number, or None to pick a free one.
        host: listen address; loopback by default (nothing outside the machine can reach it).
        device, dtype: passed to the server (``float32`` keeps greedy replies identical to
            ``yi_helpers.chat``).
        timeout: seconds to wait for ``/health``.
        log_path: where the server's output goes (default: a temporary file, removed at exit).
        extra_args: more ``transformers serve`` flags (``["--continuous-batching"]``).
        offline: set ``HF_HUB_OFFLINE=1`` for the child (default: for local models).
        stop_timeout: seconds between terminate and kill when stopping.

    Raises:
        PortInUseError: ``port`` is taken (checked before anything starts).
        ServerStartError: the server died or did not answer in time (the message ends with the
            tail of its log).
    """
    if port is None:
        port = free_port(host)
    elif not port_is_free(port, host):
        raise PortInUseError(
            errno.EADDRINUSE,
            f"Port {port} on {host} is already in use (another server, or one left running). "
            "Stop it, pick another port, or pass port=None to use a free one.")
    cwd, name = server_target(model)
    workdir = None
    if log_path is None:
        workdir = Path(tempfile.mkdtemp(prefix="yi-serve-"))
        log_path = workdir / "server.log"
    log_path = Path(log_path)
    env = dict(os.environ)
    if offline if offline is not None else cwd is not None:
        env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    command = server_command(name, host=host, port=port, device=device, dtype=dtype,
                             extra_args=extra_args)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    server = Server(name, host, port, process, log_path, command)
    # A notebook kernel that exits without closing the block still stops its server.
    atexit.register(server.stop, stop_timeout)
    try:
        server.startup_s = server.wait_ready(timeout)
        yield server
    finally:
        server.stop(stop_timeout)
        atexit.unregister(server.stop)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- showing JSON

VOLATILE_FIELDS = ("id", "created", "system_fingerprint")


def response_json(response: Any) -> dict:
    """A response (openai object or dict) as a dict, with its per-request fields (id, created)
    replaced by ``"…"`` so the rest can be compared and printed."""
    data = response.model_dump(exclude_none=True) if hasattr(response, "model_dump") else dict(response)
    return {k: ("…" if k in VOLATILE_FIELDS else v) for k, v in data.items()}


def error_info(err: BaseException) -> dict:
    """``{"status": 400, "error": ...}`` from an ``openai.APIStatusError`` (the server's answer)."""
    status = getattr(err, "status_code", None)
    body = getattr(err, "body", None)
    if body is None:
        response = getattr(err, "response", None)
        body = response.text if response is not None else str(err)
    return {"status": status, "error": body}


# ---------------------------------------------------------------- load test

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class RequestResult:
    client: int
    start_s: float      # since the load test began
    latency_s: float
    completion_tokens: int
    error: str | None = None


@dataclass
class LoadResult:
    """What :func:`load_test` measured."""

    clients: int
    requests_per_client: int
    wall_s: float
    results: list[RequestResult]

    @property
    def ok(self) -> list[RequestResult]:
        return [r for r in self.results if r.error is None]

    @property
    def errors(self) -> int:
        return len(self.results) - len(self.ok)

    @property
    def latencies(self) -> list[float]:
        return [r.latency_s for r in self.ok]

    @property
    def tokens(self) -> int:
        return sum(r.completion_tokens for r in self.ok)

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens of all clients together per second of wall time."""
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.ok) / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, float]:
        lat = self.latencies
        return {
            "requests": len(self.results), "errors": self.errors,
            "p50_s": round(percentile(lat, 50), 3) if lat else float("nan"),
            "p90_s": round(percentile(lat, 90), 3) if lat else float("nan"),
            "p99_s": round(percentile(lat, 99), 3) if lat else float("nan"),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "requests_per_s": round(self.requests_per_s, 2),
            "wall_s": round(self.wall_s, 1),
        }


def load_test(client: Any, model: str, prompts: Sequence[str], *, clients: int = 8,
              requests_per_client: int = 5, max_tokens: int = 8,
              **request: Any) -> LoadResult:
    """``clients`` threads each send ``requests_per_client`` chat requests one after another.

    At most ``clients`` requests are in flight at once (bounded). Request ``i`` of client ``c``
    asks ``prompts[(c * requests_per_client + i) % len(prompts)]``. Failed requests are counted,
    not raised. Greedy (``temperature=0``) unless ``request`` says otherwise.
    """
    if clients < 1 or requests_per_client < 1:
        raise ValueError("clients and requests_per_client must be at least 1")
    if not prompts:
        raise ValueError("give at least one prompt")
    request.setdefault("temperature", 0)
    results: list[RequestResult] = []
    lock = threading.Lock()
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
            with lock:
                results.append(RequestResult(c, start - t0, end - start, tokens, error))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(run_client, range(clients)))
    results.sort(key=lambda r: r.start_s)
    return LoadResult(clients, requests_per_client, time.perf_counter() - t0, results)


# ---------------------------------------------------------------- vLLM on a GPU

def vllm_command(model: str = "01-ai/Yi-6B-Chat", *, port: int = 8000, host: str = LOOPBACK,
                 dtype: str = "bfloat16", max_model_len: int = 4096) -> list[str]:
    """The ``vllm serve`` command for a Yi chat model.

    ``--generation-config auto`` makes vLLM read the model's ``generation_config.json`` (Yi-Chat:
    eos 7 = ``<|im_end|>``, temperature 0.6, top_p 0.8) instead of stopping only at the
    tokenizer's eos (2), the cause of "replies never stop" (vllm-project/vllm#1861). Pair it
    with :func:`vllm_stop_body` on each request as a safety net.
    """
    return ["vllm", "serve", model, "--host", host, "--port", str(port), "--dtype", dtype,
            "--max-model-len", str(max_model_len), "--generation-config", "auto"]


def vllm_stop_body(stop_ids: Sequence[int] = YI_CHAT_STOP_IDS) -> dict[str, Any]:
    """``extra_body`` for the OpenAI client that makes vLLM stop at these token ids (vLLM's
    ``stop_token_ids`` extension; Yi chat: ``<|im_end|>`` 7 and ``<|endoftext|>`` 2)."""
    return {"stop_token_ids": [int(i) for i in stop_ids]}


def shell_line(command: Sequence[str]) -> str:
    """A command list as one line to paste into a shell."""
    return " ".join(shlex.quote(part) for part in command)
