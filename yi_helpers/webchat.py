"""A chat app in the browser (lesson 10): a Gradio UI in front of one of two back ends.

- :class:`LocalBackend`: a model loaded in this process (``yi_helpers.load``), streamed by
  ``yi_helpers.chat``; stop ends the generation within a token.
- :class:`OpenAIBackend`: any OpenAI-compatible server (``transformers serve`` of lesson 07,
  vLLM, llama.cpp's server of lesson 08) through the ``openai`` client; stop closes the stream,
  and the server cancels the request.

:class:`ChatApp` holds what the buttons do (send, regenerate, stop, clear) as plain Python, so it
is tested without a browser; :func:`build_ui` wires it to Gradio ``Blocks``; :func:`launch`
serves it on 127.0.0.1 with analytics and the update check off (nothing leaves the machine).

    >>> backend = LocalBackend(model, tokenizer)
    >>> url, demo = launch(ChatApp(backend))      # http://127.0.0.1:<port>/
"""

from __future__ import annotations

import os

# Gradio reads this when a Blocks is created: no telemetry, no update check (both would send
# requests to the internet). Set before gradio is imported anywhere in this process.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence  # noqa: E402

from .chat import Conversation, chat, default_template  # noqa: E402
from .long_context import context_window  # noqa: E402
from .serve import LOOPBACK, PortInUseError, free_port, port_is_free  # noqa: E402

__all__ = ["Settings", "YI_DEMO", "LocalBackend", "OpenAIBackend", "ChatApp", "text_of",
           "build_ui", "launch", "connect"]

logger = logging.getLogger(__name__)

# Gradio's queue calls pandas options that pandas 3 deprecates: noise in every notebook output,
# nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*(no_silent_downcasting|copy keyword is deprecated)",
                        category=DeprecationWarning)


@dataclass(frozen=True)
class Settings:
    """The sampling knobs of the app. ``temperature=0`` means greedy (the other knobs but the
    repetition penalty are then unused); ``top_k=0`` means no top-k cut."""

    temperature: float = 0.6
    top_p: float = 0.8
    top_k: int = 0
    repetition_penalty: float = 1.2
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.temperature <= 2:
            problems.append(f"temperature {self.temperature} (0 to 2)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p {self.top_p} (above 0, at most 1)")
        if self.top_k < 0:
            problems.append(f"top_k {self.top_k} (0 = off, or a positive count)")
        if not 1 <= self.repetition_penalty <= 2:
            problems.append(f"repetition_penalty {self.repetition_penalty} (1 = off, to 2)")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens {self.max_new_tokens} (at least 1)")
        if problems:
            raise ValueError("out of range: " + ", ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def for_transformers(self) -> dict[str, Any]:
        """Keyword arguments of ``yi_helpers.chat`` (``generate``)."""
        knobs: dict[str, Any] = {"repetition_penalty": self.repetition_penalty}
        if not self.greedy:
            knobs |= {"temperature": self.temperature, "top_p": self.top_p,
                      "top_k": self.top_k or None}
        return knobs

    def for_openai(self, penalty_field: str = "repetition_penalty") -> dict[str, Any]:
        """Arguments of ``client.chat.completions.create``: the OpenAI fields, and the
        server-specific ones in ``extra_body`` (``top_k``; the repetition penalty under the
        server's name: vLLM and ``transformers serve`` say ``repetition_penalty``, llama.cpp
        ``repeat_penalty``)."""
        body: dict[str, Any] = {"max_tokens": self.max_new_tokens,
                                "temperature": self.temperature}
        extra: dict[str, Any] = {penalty_field: self.repetition_penalty}
        if not self.greedy:
            body["top_p"] = self.top_p
            if self.top_k:
                extra["top_k"] = self.top_k
        return body | {"extra_body": extra}


#: Yi's own web demo: temperature 0.6, top_p 0.8, repetition penalty 1.2 (top-k unset).
YI_DEMO = Settings()


class BackendError(RuntimeError):
    """A back end that cannot answer (not running, an error status, a broken stream): the
    message says what to do, and the app shows it."""


class Backend(Protocol):
    """What the app needs from a back end."""

    name: str
    tokenizer: Any
    max_context: int
    tokens: int  # new tokens of the reply in progress (or of the last one)

    def stream(self, messages: Sequence[Mapping[str, str]], settings: Settings
               ) -> Iterator[str]: ...

    def stop(self) -> bool: ...

    @property
    def busy(self) -> bool: ...

    @property
    def stopped(self) -> bool: ...


class _Running:
    """Counts the streams in progress and carries the stop flag shared by a back end."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._count -= 1

    @property
    def busy(self) -> bool:
        return self._count > 0

    def stop(self) -> bool:
        """Ask the running stream to stop; False when none runs."""
        if not self.busy:
            return False
        self.stop_event.set()
        return True


class _Stoppable:
    """What both back ends share: the running count and the stop flag."""

    _running: _Running

    @property
    def busy(self) -> bool:
        """True while a reply is being generated (or streamed from a server)."""
        return self._running.busy

    @property
    def stopped(self) -> bool:
        """True when the last reply ended because stop was pressed."""
        return self._running.stop_event.is_set()

    def stop(self) -> bool:
        """Ask the reply in progress to stop; False when none runs."""
        return self._running.stop()


class LocalBackend(_Stoppable):
    """A model in this process: the embedded model, a Yi id loaded by ``yi_helpers.load``...

    ``max_context`` defaults to the model's window; a smaller one makes the app drop old turns
    sooner (the lesson shows it with a few hundred tokens)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_context: int | None = None,
                 template: Any = None, name: str | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.template = template if template is not None else default_template(tokenizer)
        window = context_window(model.config)
        self.max_context = min(max_context or window, window)
        # the folder's name, not its path: the page shows it to whoever opens the app
        folder = Path(str(getattr(model, "name_or_path", "model"))).name
        self.name = name or f"in process: {folder}"
        self._running = _Running()
        self._reply: Any = None  # the ReplyStream in progress, or the last one

    def warm_up(self) -> float:
        """One short greedy reply, so that the first user does not wait for the lazy set-up of
        the first ``generate`` call; returns its seconds."""
        start = time.perf_counter()
        chat(self.model, self.tokenizer, [{"role": "user", "content": "Hi"}], max_new_tokens=2,
             template=self.template)
        return time.perf_counter() - start

    @property
    def tokens(self) -> int:
        """New tokens of the reply in progress (or of the last one)."""
        return self._reply.tokens if self._reply is not None else 0

    def stream(self, messages: Sequence[Mapping[str, str]], settings: Settings
               ) -> Iterator[str]:
        self._reply = None
        with self._running:
            self._running.stop_event.clear()
            self._reply = chat(self.model, self.tokenizer, messages, stream=True,
                               max_new_tokens=settings.max_new_tokens, template=self.template,
                               stop=self._running.stop_event, **settings.for_transformers())
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
                 api_key: str = "not-needed", penalty_field: str = "repetition_penalty",
                 timeout: float = 60.0, template: Any = None) -> None:
        from openai import OpenAI

        self.base_url, self.model = base_url.rstrip("/"), model
        self.tokenizer, self.max_context = tokenizer, int(max_context)
        self.template = template if template is not None else default_template(tokenizer)
        self.penalty_field = penalty_field
        self.name = f"OpenAI-compatible: {self.base_url} ({model})"
        self.client = OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout,
                             max_retries=0)
        self._running = _Running()
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
        with self._running:
            self._running.stop_event.clear()
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=[dict(m) for m in messages], stream=True,
                    **settings.for_openai(self.penalty_field))
            except openai.APIError as exc:
                raise self._error(exc) from exc
            try:
                for chunk in response:
                    if self._running.stop_event.is_set():
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


class ChatApp:
    """What the app's buttons do, independent of Gradio.

    Each handler takes the chat as Gradio holds it (a list of ``{"role", "content"}``) and yields
    updates ``(chat, message box, status, context)``. The model sees the system prompt and the
    newest turns that fit in ``backend.max_context`` (a :class:`~yi_helpers.chat.Conversation`
    drops the oldest); the chat on screen keeps everything, and the context line says what the
    model no longer sees. Errors (empty message, too long, a back end down) become a status
    line; the chat is left as it was.
    """

    def __init__(self, backend: Backend, *, system: str = "", settings: Settings = YI_DEMO,
                 title: str = "Yi chat") -> None:
        self.backend, self.system, self.settings, self.title = backend, system, settings, title
        self.last = Reply()

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _clean(history: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": text_of(m)} for m in history or []]

    def conversation(self, history: Sequence[Mapping[str, Any]], system: str) -> Conversation:
        """The history as the model will see it (not yet fitted)."""
        conv = Conversation(self.backend.tokenizer, system.strip() or None,
                            max_context=self.backend.max_context,
                            template=getattr(self.backend, "template", None))
        conv.messages.extend(self._clean(history))
        return conv

    @staticmethod
    def _context_line(conv: Conversation, dropped: list[dict[str, str]],
                      reserve: int) -> str:
        tokens = conv.count_tokens()
        line = (f"The model sees {len(conv.messages)} message(s), {tokens} tokens + {reserve} "
                f"for the reply, of a {conv.max_context}-token window.")
        if dropped:
            quoted = "; ".join(f"{m['role']}: “{m['content'][:30]}”" for m in dropped)
            line += (f" **{len(dropped)} oldest message(s) no longer fit and were left out:** "
                     f"{quoted}")
        return line

    def settings_from(self, *knobs: Any) -> Settings:
        """Settings from the UI's sliders (temperature, top_p, top_k, repetition penalty,
        max tokens); missing ones keep the app's defaults."""
        names = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
        given = {name: value for name, value in zip(names, knobs) if value is not None}
        for name in ("top_k", "max_new_tokens"):
            if name in given:
                given[name] = int(given[name])
        return replace(self.settings, **given)

    # -- handlers -----------------------------------------------------------------------------
    def send(self, message: str, history: Sequence[Mapping[str, Any]] | None,
             system: str | None = None, *knobs: Any) -> Iterator[Update]:
        """Add the user's message and stream the reply. ``system`` is the system prompt box
        (``None``: the app's own; ``""``: none); ``knobs`` are the sliders'
        (:meth:`settings_from`)."""
        history = self._clean(history)
        if not (message or "").strip():
            yield history, message or "", "Type a message first.", ""
            return
        if self.backend.busy:
            yield history, message, "A reply is still running: wait, or press Stop.", ""
            return
        yield from self._respond(history + [{"role": "user", "content": message.strip()}],
                                 system, knobs, restore=message)

    def regenerate(self, history: Sequence[Mapping[str, Any]] | None,
                   system: str | None = None, *knobs: Any) -> Iterator[Update]:
        """Drop the last reply and answer the last user message again."""
        history = self._clean(history)
        while history and history[-1]["role"] == "assistant":
            history.pop()
        if not history:
            yield history, "", "Nothing to regenerate: send a message first.", ""
            return
        if self.backend.busy:
            yield history, "", "A reply is still running: wait, or press Stop.", ""
            return
        yield from self._respond(history, system, knobs, restore="")

    def stop(self) -> str:
        """Stop the running reply; says so when nothing runs."""
        if self.backend.stop():
            return "Stopping…"
        return "Nothing is running: there is nothing to stop."

    def clear(self) -> Update:
        self.last = Reply()
        return [], "", "Cleared.", ""

    def _respond(self, history: list[dict[str, str]], system: str | None, knobs: Sequence[Any],
                 restore: str) -> Iterator[Update]:
        reply = self.last = Reply()
        try:
            settings = self.settings_from(*knobs)
            conv = self.conversation(history, self.system if system is None else system)
            dropped = conv.fit(reserve=settings.max_new_tokens, log=False)  # shown instead
        except ValueError as exc:  # out-of-range knobs, or a message longer than the window
            reply.error = str(exc)
            yield history[:-1] if restore else history, restore, f"⚠️ {exc}", ""
            return
        context = self._context_line(conv, dropped, settings.max_new_tokens)
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
            yield history[:-1] if restore else history, restore, f"⚠️ {exc}", context
            return
        reply.total_s = time.perf_counter() - start
        reply.stopped = self.backend.stopped
        reply.tokens = self.backend.tokens
        status = self.status_line(reply)
        if not reply.text:
            shown[-1] = {"role": "assistant", "content": "(no reply)"}
        yield shown, "", status, context

    @staticmethod
    def status_line(reply: Reply) -> str:
        """The line under the chat after a reply."""
        if reply.first_token_s is None:
            timing = "no token"
        else:
            timing = (f"first token after {reply.first_token_s:.2f} s, {reply.tokens} tokens in "
                      f"{reply.total_s:.1f} s ({reply.tokens_per_s:.1f} tokens/s)")
        return ("Stopped: " if reply.stopped else "Done: ") + timing


def build_ui(app: ChatApp, extend: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """The Gradio ``Blocks`` of the app: chat, message box, send / stop / regenerate / clear, a
    system prompt and the sampling sliders (Yi's demo settings by default), a status line and
    the context line. Every handler is also an API endpoint (``/send``, ``/stop``,
    ``/regenerate``, ``/clear``) for ``gradio_client``.

    ``extend(parts)`` runs inside the ``Blocks`` at the end, with the components by name
    (``chatbot``, ``message``, ``status``, ``context``, ``system``, ``knobs``, ``send``,
    ``stop``, ``regenerate``, ``clear``): add buttons and events there (the exercises do)."""
    import gradio as gr

    s = app.settings
    with gr.Blocks(title=app.title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {app.title}\nBack end: {app.backend.name}")
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
                gr.Slider(0, 2, value=s.temperature, step=0.05,
                          label="temperature (0 = greedy)"),
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
    """A ``gradio_client.Client`` for the app at ``url`` (quiet): ``client.submit(...,
    api_name="/send")`` streams, ``client.predict(api_name="/stop")`` stops."""
    from gradio_client import Client

    return Client(url, verbose=False)


def launch(app: ChatApp, *, port: int | None = None,
           extend: Callable[[dict[str, Any]], None] | None = None,
           **kwargs: Any) -> tuple[str, Any]:
    """Serve the app on 127.0.0.1 (``port=None``: a free one) without blocking; returns its URL
    and the ``Blocks`` (``demo.close()`` stops it). A local back end is warmed up first, so the
    first reply's wait is the model's, not a one-off set-up's. ``share`` stays off: pass
    ``share=True``
    yourself only on a network you trust (it opens a public tunnel)."""
    if port is not None and not port_is_free(port):
        raise PortInUseError(f"port {port} on 127.0.0.1 is in use: pass another port, or "
                             "port=None for a free one")
    if hasattr(app.backend, "warm_up"):
        app.backend.warm_up()
    demo = build_ui(app, extend)
    demo.queue(default_concurrency_limit=1)
    options = {"server_name": LOOPBACK, "server_port": port or free_port(),
               "prevent_thread_lock": True, "inline": False, "quiet": True, "share": False,
               "ssr_mode": False} | kwargs
    _, url, _ = demo.launch(**options)
    return url, demo
