"""yi_helpers.webchat: the chat app of lesson 10, without a browser (tests/test_chat_browser.py
drives it in Chromium). The handlers run on the embedded model; the OpenAI back end talks to
llama.cpp's server, to a port with nothing behind it, and to a server that answers 500."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import pytest

from yi_helpers.chat import chat
from yi_helpers.serve import PortInUseError, free_port
from yi_helpers.webchat import (YI_DEMO, BackendError, ChatApp, LocalBackend, OpenAIBackend,
                                Settings, connect, launch, text_of)

GREEDY = Settings(temperature=0, repetition_penalty=1.0, max_new_tokens=12)
STORY = "Write a long story about a dragon who learns to bake bread."


# -- settings and messages ----------------------------------------------------------------------
def test_defaults_are_yis_web_demo():
    assert (YI_DEMO.temperature, YI_DEMO.top_p, YI_DEMO.repetition_penalty) == (0.6, 0.8, 1.2)
    assert YI_DEMO.for_transformers() == {"repetition_penalty": 1.2, "temperature": 0.6,
                                          "top_p": 0.8, "top_k": None}


def test_greedy_and_server_settings():
    assert GREEDY.for_transformers() == {"repetition_penalty": 1.0}  # no sampling knob: greedy
    body = Settings(top_k=40).for_openai("repeat_penalty")
    assert body["extra_body"] == {"repeat_penalty": 1.2, "top_k": 40}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.8, 256)
    assert "top_p" not in GREEDY.for_openai() and GREEDY.for_openai()["temperature"] == 0


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_p": 0}, {"top_k": -2},
                                 {"repetition_penalty": 0.5}, {"max_new_tokens": 0}])
def test_out_of_range_settings_are_refused(bad):
    with pytest.raises(ValueError, match="out of range"):
        Settings(**bad)


def test_text_of_reads_gradio_and_plain_messages():
    assert text_of({"role": "user", "content": "hi"}) == "hi"
    assert text_of({"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                     {"type": "text", "text": "b"}]}) == "ab"
    assert text_of({"role": "assistant", "content": {"type": "text", "text": "c"}}) == "c"


# -- the stop event and the token count of yi_helpers.chat ------------------------------------
def test_a_set_stop_event_ends_generate_at_once(embedded):
    model, tok = embedded
    stop = threading.Event()
    stop.set()
    messages = [{"role": "user", "content": STORY}]
    assert len(chat(model, tok, messages, max_new_tokens=50, stop=stop).split()) <= 1


def test_a_closed_stream_ends_its_thread_and_counts_tokens(embedded):
    model, tok = embedded
    before = threading.active_count()
    stream = chat(model, tok, [{"role": "user", "content": STORY}], max_new_tokens=200,
                  stream=True)
    next(stream)
    stream.close()  # joins the generation thread
    assert threading.active_count() == before
    assert 1 <= stream.tokens < 200
    full = chat(model, tok, [{"role": "user", "content": STORY}], max_new_tokens=7, stream=True)
    assert "".join(full) and full.tokens == 7


# -- ChatApp on the embedded model --------------------------------------------------------------
@pytest.fixture(scope="module")
def app(embedded):
    model, tok = embedded
    return ChatApp(LocalBackend(model, tok, max_context=256), system="Answer briefly.",
                   settings=GREEDY)


def test_send_streams_the_reply_and_keeps_the_history(app):
    updates = list(app.send("What is the capital of France?", [], app.system))
    assert len(updates) > 3
    chat_, box, status, context = updates[-1]
    assert [m["role"] for m in chat_] == ["user", "assistant"] and box == ""
    assert status.startswith("Done: first token after")
    assert "The model sees 2 message(s)" in context and "256-token window" in context
    assert app.last.tokens == app.backend.tokens > 0 and app.last.first_token_s is not None
    again = list(app.send("And of Italy?", chat_, app.system))[-1][0]
    assert [m["content"] for m in again[:2]] == [m["content"] for m in chat_]
    assert len(again) == 4


def test_stop_ends_the_generation_thread(app):
    app2 = ChatApp(app.backend, settings=Settings(temperature=0, max_new_tokens=200))
    updates = app2.send(STORY, [], "")

    def press_stop():
        while app.backend.tokens < 5 or not app.backend.busy:
            time.sleep(0.01)
        app2.stop()

    presser = threading.Thread(target=press_stop)
    presser.start()
    final = list(updates)[-1]
    presser.join()
    assert final[2].startswith("Stopped") and app2.last.stopped
    assert 5 <= app2.last.tokens < 200 and not app.backend.busy
    assert app2.stop() == "Nothing is running: there is nothing to stop."


def test_leaving_the_handler_early_stops_the_model(app):
    updates = app.send(STORY, [], "")
    for _ in range(4):  # the first update comes before the model starts
        next(updates)
    assert app.backend.busy
    updates.close()  # what Gradio does when the browser goes away
    assert not app.backend.busy


def test_errors_become_status_lines(app):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    chat_, box, status, _ = list(app.send("  ", history, ""))[-1]
    assert status == "Type a message first." and chat_ == history
    chat_, box, status, _ = list(app.send("tea " * 400, history, ""))[-1]
    assert status.startswith("⚠️ the prompt needs") and chat_ == history
    assert box == "tea " * 400, "the message stays in the box to be shortened"
    chat_, _, status, _ = list(app.send("hi", history, "", 5.0))[-1]  # temperature 5
    assert "out of range: temperature" in status and chat_ == history


def test_old_turns_drop_out_and_the_context_line_says_so(app):
    long = "Tea is brewed from the leaves of the tea plant, then dried. " * 3
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {long}"}
               for i in range(8)]
    first = app.send("One more?", history, "")
    _, _, status, context = next(first)
    first.close()
    assert status == "Generating…"
    assert "no longer fit and were left out" in context and "user: “0: Tea is brewed" in context
    conv = app.conversation(history + [{"role": "user", "content": "One more?"}], "")
    dropped = conv.fit(reserve=GREEDY.max_new_tokens, log=False)
    assert f"The model sees {len(conv.messages)} message(s)" in context and len(dropped) >= 2


def test_regenerate_and_clear(app):
    history = list(app.send("Name a colour.", [], ""))[-1][0]
    again = list(app.regenerate(history, ""))[-1][0]
    assert len(again) == 2 and text_of(again[-1]) == text_of(history[-1])  # greedy: the same
    assert list(app.regenerate([], ""))[-1][2].startswith("Nothing to regenerate")
    assert app.clear() == ([], "", "Cleared.", "")


# -- the OpenAI-compatible back end -------------------------------------------------------------
def _remote(url, tok, **kwargs):
    return OpenAIBackend(url, "model", tokenizer=tok, max_context=512, **kwargs)


def test_a_server_that_is_down_is_a_clear_error(embedded):
    url = f"http://127.0.0.1:{free_port()}/v1"
    app = ChatApp(_remote(url, embedded[1]), settings=GREEDY)
    chat_, box, status, _ = list(app.send("hi", [], ""))[-1]
    assert status.startswith(f"⚠️ no answer from {url}: is the server running?")
    assert chat_ == [] and box == "hi" and not app.backend.busy


def test_a_server_error_is_a_clear_error(embedded):
    class Fails(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.dumps({"error": {"message": "model crashed"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fails)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        app = ChatApp(_remote(url, embedded[1]), settings=GREEDY)
        _, _, status, _ = list(app.send("hi", [], ""))[-1]
        assert status.startswith(f"⚠️ the server at {url} answered 500")
        with pytest.raises(BackendError, match="model crashed"):
            list(app.backend.stream([{"role": "user", "content": "hi"}], GREEDY))
    finally:
        server.shutdown()


@pytest.mark.slow
def test_llamacpp_server_streams_and_stops(embedded):
    from yi_helpers.llamacpp import LlamaCpp

    with LlamaCpp(n_ctx=512) as llm:
        remote = _remote(llm.base_url, embedded[1], penalty_field="repeat_penalty")
        app = ChatApp(remote, settings=GREEDY)
        _, _, status, _ = list(app.send("What is the capital of France?", [], ""))[-1]
        assert status.startswith("Done") and app.last.text.strip()  # (a 4-bit file: its own words)
        assert app.last.tokens == remote.tokens > 1
        stream = remote.stream([{"role": "user", "content": STORY}],
                               Settings(temperature=0, max_new_tokens=300))
        pieces = [next(stream) for _ in range(5)]
        assert remote.busy and remote.stop()
        rest = list(stream)  # ends at the next chunk
        assert len(rest) == 0 and not remote.busy and remote.stopped and len(pieces) == 5


# -- the app served, driven by gradio_client ----------------------------------------------------
@pytest.fixture
def no_internet(monkeypatch):
    """Connections to anything but this machine fail (and are recorded)."""
    attempts = []
    connect_ = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(host)
            raise OSError(f"test: no internet ({host})")
        return connect_(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


@pytest.mark.slow
def test_launched_app_answers_on_loopback_without_internet(app, no_internet):
    url, demo = launch(app)
    try:
        assert url.startswith("http://127.0.0.1:") and not demo.analytics_enabled
        client = connect(url)
        job = client.submit("Name a fruit.", [], "", 0, 0.8, 0, 1.0, 8, api_name="/send")
        outputs = list(job)
        assert len(outputs) > 2 and job.outputs()[-1][2].startswith("Done")
        assert client.predict(api_name="/stop").startswith("Nothing is running")
        assert client.predict(api_name="/clear")[0] == []
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(PortInUseError, match="in use"):
            launch(app, port=port)
    finally:
        demo.close()
    assert no_internet == [], f"the app tried to reach {no_internet}"
