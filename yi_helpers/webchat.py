"""A chat app in the browser (lesson 10): :class:`ChatApp` holds what the buttons do as plain
Python (tested without a browser), in front of a model of this process (:class:`LocalBackend`)
or an OpenAI-compatible server (:class:`OpenAIBackend`); :func:`launch` serves its Gradio page on
127.0.0.1 with analytics and the update check off (nothing leaves the machine)."""

from __future__ import annotations

import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .chat import YI_DEMO_SAMPLING, Conversation, chat
from .long_context import context_window
from .serve import LOOPBACK, PortInUseError, free_port, port_is_free

__all__ = ["Settings", "YI_DEMO", "LocalBackend", "OpenAIBackend", "ChatApp", "text_of",
           "launch", "connect"]


@dataclass(frozen=True)
class Settings:
    """The app's sampling knobs, Yi's web demo's by default (:data:`YI_DEMO`).
    ``temperature=0`` means greedy (only the repetition penalty then applies); ``top_k=0``: off."""

    temperature: float = YI_DEMO_SAMPLING["temperature"]
    top_p: float = YI_DEMO_SAMPLING["top_p"]
    top_k: int = 0
    repetition_penalty: float = YI_DEMO_SAMPLING["repetition_penalty"]
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        problems = [text for ok, text in [
            (0 <= self.temperature <= 2, f"temperature {self.temperature} (0 to 2)"),
            (0 < self.top_p <= 1, f"top_p {self.top_p} (above 0, at most 1)"),
            (self.top_k >= 0, f"top_k {self.top_k} (0 = off, or a positive count)"),
            (1 <= self.repetition_penalty <= 2,
             f"repetition_penalty {self.repetition_penalty} (1 = off, to 2)"),
            (self.max_new_tokens >= 1, f"max_new_tokens {self.max_new_tokens} (at least 1)"),
        ] if not ok]
        if problems:
            raise ValueError("out of range: " + ", ".join(problems))

    def for_transformers(self) -> dict[str, Any]:
        """Keyword arguments of ``yi_helpers.chat`` (``generate``)."""
        knobs: dict[str, Any] = {"repetition_penalty": self.repetition_penalty}
        if self.temperature:
            knobs |= {"temperature": self.temperature, "top_p": self.top_p,
                      "top_k": self.top_k or None}
        return knobs

    def for_openai(self, penalty_field: str = "repetition_penalty") -> dict[str, Any]:
        """Arguments of ``client.chat.completions.create``; ``top_k`` and the repetition penalty
        go in ``extra_body``, the latter under the server's name (vLLM and ``transformers
        serve``: ``repetition_penalty``; llama.cpp: ``repeat_penalty``)."""
        body: dict[str, Any] = {"max_tokens": self.max_new_tokens,
                                "temperature": self.temperature}
        extra: dict[str, Any] = {penalty_field: self.repetition_penalty}
        if self.temperature:
            body["top_p"] = self.top_p
            if self.top_k:
                extra["top_k"] = self.top_k
        return body | {"extra_body": extra}


YI_DEMO = Settings()


class BackendError(RuntimeError):
    """A back end that cannot answer; the message says what to do, and the app shows it."""


class _Stoppable:
    """What both back ends share: a count of the streams in progress and the stop flag."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = 0

    @contextmanager
    def _streaming(self) -> Iterator[None]:
        """Around a stream: counts it as running, with the stop flag cleared."""
        with self._lock:
            self._running += 1
        self._stop.clear()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    @property
    def busy(self) -> bool:
        """True while a reply is being generated (or streamed from a server)."""
        return self._running > 0

    @property
    def stopped(self) -> bool:
        """True when the last reply ended because stop was pressed."""
        return self._stop.is_set()

    def stop(self) -> bool:
        """Ask the reply in progress to stop; False when none runs."""
        if not self.busy:
            return False
        self._stop.set()
        return True


class LocalBackend(_Stoppable):
    """A model in this process (``yi_helpers.load``...). ``max_context`` defaults to the model's
    window; a smaller one makes the app drop old turns sooner."""

    def __init__(self, model: Any, tokenizer: Any, *, max_context: int | None = None) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        window = context_window(model.config)
        self.max_context = min(max_context or window, window)
        # the folder's name, not its path: the page shows it to whoever opens the app
        self.name = f"in process: {Path(str(getattr(model, 'name_or_path', 'model'))).name}"
        self._reply: Any = None  # the ReplyStream in progress, or the last one

    @property
    def tokens(self) -> int:
        """New tokens of the reply in progress (or of the last one)."""
        return self._reply.tokens if self._reply is not None else 0

    def stream(self, messages: Sequence[Mapping[str, str]], settings: Settings
               ) -> Iterator[str]:
        self._reply = None
        with self._streaming():
            self._reply = chat(self.model, self.tokenizer, messages, stream=True,
                               max_new_tokens=settings.max_new_tokens, stop=self._stop,
                               **settings.for_transformers())
            try:
                yield from self._reply
            finally:
                self._reply.close()  # joins the generation thread: idle once this returns


class OpenAIBackend(_Stoppable):
    """Any OpenAI-compatible chat endpoint (``base_url`` ends in ``/v1``).

    ``tokenizer`` and ``max_context`` are the served model's: the app counts the history's
    tokens with them to keep it inside the window. ``penalty_field`` is the server's name for
    the repetition penalty (``"repeat_penalty"`` for llama.cpp)."""

    def __init__(self, base_url: str, model: str, *, tokenizer: Any, max_context: int,
                 penalty_field: str = "repetition_penalty") -> None:
        from openai import OpenAI

        super().__init__()
        self.base_url, self.model = base_url.rstrip("/"), model
        self.tokenizer, self.max_context = tokenizer, int(max_context)
        self.penalty_field = penalty_field
        self.name = f"OpenAI-compatible: {self.base_url} ({model})"
        self.client = OpenAI(base_url=self.base_url, api_key="not-needed", timeout=60.0,
                             max_retries=0)
        #: content chunks of the reply in progress (or of the last one): one token each on
        #: vLLM and llama.cpp
        self.tokens = 0

    def _error(self, exc: Exception) -> BackendError:
        import openai

        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"no answer from {self.base_url}: is the server running? Start "
                                "it (lesson 07: `transformers serve`; lesson 08: llama.cpp) or "
                                "check the URL and port.")
        if isinstance(exc, openai.APIStatusError):
            detail = str(getattr(exc, "message", exc))[:200]
            return BackendError(f"the server at {self.base_url} answered {exc.status_code}: "
                                f"{detail}. Its log says more; the app keeps working.")
        return BackendError(f"the server at {self.base_url} failed: {exc}")

    def stream(self, messages: Sequence[Mapping[str, str]], settings: Settings
               ) -> Iterator[str]:
        import openai

        self.tokens = 0
        with self._streaming():
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=[dict(m) for m in messages], stream=True,
                    **settings.for_openai(self.penalty_field))
            except openai.APIError as exc:
                raise self._error(exc) from exc
            try:
                for chunk in response:
                    if self._stop.is_set():
                        break
                    if chunk.choices and chunk.choices[0].delta.content:
                        self.tokens += 1
                        yield chunk.choices[0].delta.content
            except openai.APIError as exc:
                raise self._error(exc) from exc
            finally:
                response.close()  # the server sees the closed connection and cancels
                # close the client's own event generator now, not whenever the garbage
                # collector gets to it (openai 3.57 then trips over a half-imported httpx)
                inner = getattr(response, "_iterator", None)
                if inner is not None:
                    inner.close()


def text_of(message: Mapping[str, Any]) -> str:
    """A chat message's text: Gradio hands contents back as a list of parts
    (``[{"type": "text", "text": ...}]``); the hub writes plain strings."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))


@dataclass
class Reply:
    """What one press of send or regenerate produced, for the notebook and the tests."""

    text: str = ""
    tokens: int = 0  # the reply's tokens, as the back end counts them
    first_token_s: float | None = None
    total_s: float = 0.0
    stopped: bool = False
    error: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else 0.0


Update = tuple[list[dict[str, str]], str, str, str]  # chat, message box, status, context
KNOBS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


class ChatApp:
    """What the app's buttons do, independent of Gradio: each handler takes the chat as Gradio
    holds it and yields updates ``(chat, message box, status, context)``. The model sees the
    system prompt and the newest turns that fit in ``backend.max_context``; the chat on screen
    keeps everything, and the context line says what the model no longer sees. Errors become a
    status line; the chat is left as it was."""

    def __init__(self, backend: Any, *, system: str = "", settings: Settings = YI_DEMO) -> None:
        self.backend, self.system, self.settings = backend, system, settings
        self.last = Reply()

    def conversation(self, history: Sequence[Mapping[str, Any]], system: str) -> Conversation:
        """The history as the model will see it (not yet fitted)."""
        conv = Conversation(self.backend.tokenizer, system.strip() or None,
                            max_context=self.backend.max_context)
        conv.messages.extend(_clean(history))
        return conv

    def settings_from(self, *knobs: Any) -> Settings:
        """Settings from the UI's sliders (in :data:`KNOBS`' order); missing ones keep the app's."""
        given = {name: value for name, value in zip(KNOBS, knobs) if value is not None}
        for name in ("top_k", "max_new_tokens"):
            if name in given:
                given[name] = int(given[name])
        return replace(self.settings, **given)

    def send(self, message: str, history: Sequence[Mapping[str, Any]] | None,
             system: str | None = None, *knobs: Any) -> Iterator[Update]:
        """Add the user's message and stream the reply. ``system`` is the system prompt box
        (``None``: the app's own; ``""``: none); ``knobs`` are the sliders'."""
        history = _clean(history)
        if not (message or "").strip():
            yield history, message or "", "Type a message first.", ""
            return
        yield from self._respond(history + [{"role": "user", "content": message.strip()}],
                                 system, knobs, restore=message)

    def regenerate(self, history: Sequence[Mapping[str, Any]] | None,
                   system: str | None = None, *knobs: Any) -> Iterator[Update]:
        """Drop the last reply and answer the last user message again."""
        history = _clean(history)
        while history and history[-1]["role"] == "assistant":
            history.pop()
        if not history:
            yield history, "", "Nothing to regenerate: send a message first.", ""
            return
        yield from self._respond(history, system, knobs, restore="")

    def stop(self) -> str:
        if self.backend.stop():
            return "Stopping…"
        return "Nothing is running: there is nothing to stop."

    def clear(self) -> Update:
        self.last = Reply()
        return [], "", "Cleared.", ""

    def _respond(self, history: list[dict[str, str]], system: str | None, knobs: Sequence[Any],
                 restore: str) -> Iterator[Update]:
        """Stream the reply to ``history``; on an error, the chat without the new message and
        the message box with ``restore`` (the message, to be edited and sent again)."""
        before = history[:-1] if restore else history  # what an error leaves on screen
        if self.backend.busy:
            yield before, restore, "A reply is still running: wait, or press Stop.", ""
            return
        reply = self.last = Reply()
        try:
            settings = self.settings_from(*knobs)
            conv = self.conversation(history, self.system if system is None else system)
            dropped = conv.fit(reserve=settings.max_new_tokens, log=False)  # shown instead
        except ValueError as exc:  # out-of-range knobs, or a message longer than the window
            reply.error = str(exc)
            yield before, restore, f"⚠️ {exc}", ""
            return
        context = (f"The model sees {len(conv.messages)} message(s), {conv.count_tokens()} "
                   f"tokens + {settings.max_new_tokens} for the reply, of a "
                   f"{conv.max_context}-token window.")
        if dropped:
            quoted = "; ".join(f"{m['role']}: “{m['content'][:30]}”" for m in dropped)
            context += (f" **{len(dropped)} oldest message(s) no longer fit and were left out:**"
                        f" {quoted}")
        shown = history + [{"role": "assistant", "content": ""}]
        yield list(shown), "", "Generating…", context
        start = time.perf_counter()
        try:
            for piece in self.backend.stream(conv.messages, settings):
                if reply.first_token_s is None:
                    reply.first_token_s = time.perf_counter() - start
                reply.text += piece
                shown[-1] = {"role": "assistant", "content": reply.text}
                yield list(shown), "", "Generating…", context  # a copy per update
        except BackendError as exc:
            reply.error = str(exc)
            reply.total_s = time.perf_counter() - start
            yield before, restore, f"⚠️ {exc}", context
            return
        reply.total_s = time.perf_counter() - start
        reply.stopped = self.backend.stopped
        reply.tokens = self.backend.tokens
        if reply.first_token_s is None:
            timing = "no token"
        else:
            timing = (f"first token after {reply.first_token_s:.2f} s, {reply.tokens} tokens in "
                      f"{reply.total_s:.1f} s ({reply.tokens_per_s:.1f} tokens/s)")
        if not reply.text:
            shown[-1] = {"role": "assistant", "content": "(no reply)"}
        yield shown, "", ("Stopped: " if reply.stopped else "Done: ") + timing, context


def _clean(history: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": text_of(m)} for m in history or []]


def build_ui(app: ChatApp, extend: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """The Gradio ``Blocks`` of the app; each handler is also an API endpoint (``/send``,
    ``/stop``, ``/regenerate``, ``/clear``) for ``gradio_client``. ``extend(parts)`` runs inside
    the ``Blocks`` at the end, with the components by name (``chatbot``, ``message``, ``status``,
    ``context``, ``system``, ``knobs``, ``send``, ``stop``, ``regenerate``, ``clear``): add
    buttons and events there (the exercises do)."""
    import gradio as gr

    # Read when a Blocks is created: no telemetry, no update check (requests to the internet).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue calls pandas options that pandas 3 deprecates: noise in the outputs.
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            message=r".*(no_silent_downcasting|copy keyword is deprecated)")

    s = app.settings
    with gr.Blocks(title="Yi chat", analytics_enabled=False) as demo:
        gr.Markdown(f"## Yi chat\nBack end: {app.backend.name}")
        chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chat")
        with gr.Row():
            message = gr.Textbox(label="Message", placeholder="Type a message (English or 中文)",
                                 scale=5, elem_id="message", autofocus=True)
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Row():
            stop = gr.Button("Stop", elem_id="stop")
            regenerate = gr.Button("Regenerate", elem_id="regenerate")
            clear = gr.Button("Clear", elem_id="clear")
        status = gr.Markdown(elem_id="status")
        context = gr.Markdown(elem_id="context")
        with gr.Accordion("System prompt and sampling", open=False):
            system = gr.Textbox(label="System prompt", value=app.system, lines=2,
                                elem_id="system")
            knobs = [
                gr.Slider(0, 2, value=s.temperature, step=0.05, label="temperature (0 = greedy)"),
                gr.Slider(0.05, 1, value=s.top_p, step=0.05, label="top_p"),
                gr.Slider(0, 100, value=s.top_k, step=1, label="top_k (0 = off)"),
                gr.Slider(1, 2, value=s.repetition_penalty, step=0.05,
                          label="repetition penalty (1 = off)"),
                gr.Slider(1, 1024, value=s.max_new_tokens, step=1, label="max new tokens"),
            ]
        outputs = [chatbot, message, status, context]
        for trigger, name in ((send.click, "send"), (message.submit, None)):
            trigger(app.send, [message, chatbot, system, *knobs], outputs, api_name=name or False)
        regenerate.click(app.regenerate, [chatbot, system, *knobs], outputs,
                         api_name="regenerate")
        # stop runs beside the streaming handler (its own queue, no limit)
        stop.click(app.stop, None, status, api_name="stop", concurrency_limit=None,
                   queue=False)
        clear.click(app.clear, None, outputs, api_name="clear")
        if extend is not None:
            extend({"chatbot": chatbot, "message": message, "status": status,
                    "context": context, "system": system, "knobs": knobs, "send": send,
                    "stop": stop, "regenerate": regenerate, "clear": clear})
    return demo


def connect(url: str) -> Any:
    """A quiet ``gradio_client.Client`` for the app at ``url``."""
    from gradio_client import Client

    return Client(url, verbose=False)


def launch(app: ChatApp, *, port: int | None = None,
           extend: Callable[[dict[str, Any]], None] | None = None,
           **kwargs: Any) -> tuple[str, Any]:
    """Serve the app on 127.0.0.1 (``port=None``: a free one) without blocking; returns its URL
    and the ``Blocks`` (``demo.close()`` stops it). A local back end is warmed up first, so the
    first reply's wait is the model's. ``kwargs`` go to Gradio's ``launch``: pass ``share=True``
    (a public tunnel) only on a network you trust."""
    if port is not None and not port_is_free(port):
        raise PortInUseError(f"port {port} on 127.0.0.1 is in use: pass another port, or "
                             "port=None for a free one")
    if isinstance(app.backend, LocalBackend):  # the first generate's lazy set-up, done now
        local = app.backend
        chat(local.model, local.tokenizer, [{"role": "user", "content": "Hi"}], max_new_tokens=2)
    demo = build_ui(app, extend)
    demo.queue(default_concurrency_limit=1)
    options = {"server_name": LOOPBACK, "server_port": port or free_port(),
               "prevent_thread_lock": True, "inline": False, "quiet": True, "share": False,
               "ssr_mode": False} | kwargs
    _, url, _ = demo.launch(**options)
    return url, demo
