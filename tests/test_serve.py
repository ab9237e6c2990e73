"""yi_helpers.serve: the server's life cycle, the OpenAI client against a real server, load test.

Fast tests use a stand-in server (a few lines of http.server) to check start, readiness, errors
and clean-up; the slow ones start ``transformers serve`` once for the module.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from yi_helpers import serve as S

# A stand-in server: answers /health, or dies, or ignores SIGTERM (argv: port, mode).
FAKE_SERVER = r"""
import http.server, signal, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "die":
    print("Traceback: something went wrong while loading", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "silent":
    time.sleep(60)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{"status": "ok"}')
    def log_message(self, *a):
        pass
print("fake server up", flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """serve() runs the stand-in server; returns the list of processes it started."""
    started, popen_kwargs = [], []
    real_popen = subprocess.Popen
    mode = {"value": "ok"}

    def command(name, *, port, **_):
        return [sys.executable, "-c", FAKE_SERVER, str(port), mode["value"]]

    def popen(*args, **kwargs):
        p = real_popen(*args, **kwargs)
        started.append(p)
        popen_kwargs.append(kwargs)
        return p

    monkeypatch.setattr(S, "server_command", command)
    monkeypatch.setattr(S.subprocess, "Popen", popen)
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "model.safetensors").touch()  # a model folder, as the resolver checks
    return SimpleNamespace(started=started, popen_kwargs=popen_kwargs, mode=mode, folder=folder)


# ---------------------------------------------------------------- fast

def test_port_checks():
    with socket.socket() as s:
        s.bind((S.LOOPBACK, 0))
        s.listen()
        port = s.getsockname()[1]
        assert not S.port_is_free(port)
    assert S.port_is_free(S.free_port())


def test_taken_port_is_refused_before_anything_starts(fake):
    with socket.socket() as s:
        s.bind((S.LOOPBACK, 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(S.PortInUseError, match=f"Port {port}.*port=None"):
            with S.serve(fake.folder, port=port):
                pass
    assert fake.started == []


def test_start_and_stop(fake):
    with S.serve(fake.folder) as server:
        assert server.is_running() and server.health()
        assert server.model == "tiny-model"  # the folder's name, not its path
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert "fake server up" in server.log_tail()
        log = server.log_path
    assert not server.is_running()
    assert S.port_is_free(server.port)
    assert not log.exists()  # the temporary log is cleaned up


def test_log_lines_waits_for_lines_written_after_the_answer(fake):
    with S.serve(fake.folder) as server:
        assert server.log_lines("fake server") == ["fake server up"]
        assert server.log_lines("ValueError", expect=0) == []

        def late_write():
            time.sleep(0.5)
            with open(server.log_path, "a", encoding="utf-8") as log:
                log.write("Traceback (most recent call last):\nValueError: late\n")

        writer = threading.Thread(target=late_write)
        writer.start()
        assert server.log_lines(("KeyError", "ValueError")) == []  # not written yet
        assert server.log_lines(("KeyError", "ValueError"), expect=1, timeout=10) == ["ValueError: late"]
        writer.join()
        start = time.perf_counter()
        assert server.log_lines("KeyError", expect=1, timeout=0.3) == []  # gives up, no error
        assert time.perf_counter() - start < 2


def test_stopped_even_when_the_block_raises(fake):
    with pytest.raises(KeyError):
        with S.serve(fake.folder):
            raise KeyError("boom")
    assert [p.poll() is not None for p in fake.started] == [True]


def test_dying_server_gives_a_clear_error_with_its_log(fake):
    fake.mode["value"] = "die"
    with pytest.raises(S.ServerStartError, match=r"exited \(code 3\)(.|\n)*something went wrong"):
        with S.serve(fake.folder):
            pass
    assert all(p.poll() is not None for p in fake.started)


def test_silent_server_times_out_and_is_stopped(fake):
    fake.mode["value"] = "silent"
    with pytest.raises(S.ServerStartError, match="within 1 s"):
        with S.serve(fake.folder, timeout=1):
            pass
    assert all(p.poll() is not None for p in fake.started)


def test_stubborn_server_is_killed(fake):
    fake.mode["value"] = "stubborn"
    with S.serve(fake.folder, stop_timeout=1) as server:
        pass
    assert server.process.returncode == -9  # SIGTERM ignored, so killed


def test_local_models_are_served_offline_from_their_parent_folder(fake, tmp_path):
    with S.serve(fake.folder) as server:
        assert server.model == "tiny-model"
    with S.serve("01-ai/Yi-6B-Chat") as hub:  # a hub id is passed on as it is
        assert hub.model == "01-ai/Yi-6B-Chat"
    local, remote = fake.popen_kwargs
    assert local["cwd"] == fake.folder.resolve().parent and local["env"]["HF_HUB_OFFLINE"] == "1"
    assert remote["cwd"] is None
    with pytest.raises(ValueError, match="not a folder"):
        with S.serve(tmp_path / "missing"):
            pass
    assert len(fake.started) == 2


def test_server_command():
    cmd = S.server_command("m", port=1234, device="cpu", dtype="float32")
    assert cmd[:5] == [sys.executable, "-m", "transformers.cli.transformers", "serve", "m"]
    assert cmd[cmd.index("--port") + 1] == "1234" and cmd[cmd.index("--host") + 1] == "127.0.0.1"


class FakeClient:
    """Looks like openai.OpenAI for load_test; records how many requests overlap."""

    def __init__(self, fail_every: int = 0):
        self.in_flight = self.max_in_flight = self.calls = 0
        self.lock = threading.Lock()
        self.fail_every = fail_every
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, *, model, max_tokens, messages, **kw):
        with self.lock:
            self.calls += 1
            n = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(0.01)
        with self.lock:
            self.in_flight -= 1
        assert kw["temperature"] == 0
        if self.fail_every and n % self.fail_every == 0:
            raise RuntimeError("server said no")
        return SimpleNamespace(usage=SimpleNamespace(completion_tokens=max_tokens))


def test_load_test_is_bounded_and_counts():
    client = FakeClient()
    result = S.load_test(client, "m", ["a", "b"], clients=3, requests_per_client=4, max_tokens=5)
    assert client.calls == 12 and len(result.results) == 12
    assert 1 <= client.max_in_flight <= 3
    assert sum(r.completion_tokens for r in result.results) == 60 and result.errors == 0
    summary = result.summary()
    assert summary["p50_s"] <= summary["p90_s"] <= summary["p99_s"]
    assert summary["tokens_per_s"] == pytest.approx(60 / result.wall_s, abs=0.05)


def test_load_test_counts_failures():
    result = S.load_test(FakeClient(fail_every=2), "m", ["a"], clients=2, requests_per_client=3)
    assert result.errors == 3 and result.summary()["requests"] == 6
    assert all("server said no" in r.error for r in result.results if r.error)


def test_response_json_hides_per_request_fields():
    from openai.types.chat import ChatCompletion

    r = ChatCompletion.model_validate({
        "id": "abc", "created": 123, "model": "m", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hi"}}]})
    data = S.response_json(r)
    assert data["id"] == data["created"] == "…"
    assert data["choices"][0]["message"]["content"] == "hi"


def test_error_info_reads_the_servers_answer():
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(400, json={"detail": "pinned"}, request=request)
    err = openai.BadRequestError("bad", response=response, body={"detail": "pinned"})
    assert S.error_info(err) == {"status": 400, "error": {"detail": "pinned"}}


def test_redact_paths_keeps_urls():
    text = 'File "/root/x/site-packages/a.py" then "POST /v1/chat/completions" in /tmp/q/log'
    assert S.redact_paths(text) == 'File "…/a.py" then "POST /v1/chat/completions" in …/log'


def test_vllm_settings_stop_yi_chat_at_im_end():
    cmd = S.vllm_command("01-ai/Yi-6B-Chat", port=8001)
    assert cmd[:3] == ["vllm", "serve", "01-ai/Yi-6B-Chat"]
    assert cmd[cmd.index("--generation-config") + 1] == "auto"
    assert S.vllm_stop_body()["stop_token_ids"][0] == 7
    assert S.shell_line(cmd).startswith("vllm serve 01-ai/Yi-6B-Chat --host 127.0.0.1 --port 8001")


# ---------------------------------------------------------------- slow: a real server

@pytest.fixture(scope="module")
def server():
    with S.serve("embedded", timeout=180) as srv:
        yield srv
    assert not srv.is_running() and S.port_is_free(srv.port)


def _ask(client, model, content="What is the capital of France?", **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 16)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw)


@pytest.mark.slow
def test_real_server_answers_like_local_greedy_chat(server, embedded):
    from yi_helpers.chat import chat

    client = server.client()
    assert [m.id for m in client.models.list()] == [server.model] and "/" not in server.model
    first, second = _ask(client, server.model), _ask(client, server.model)
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.content == second.choices[0].message.content
    model, tok = embedded
    local = chat(model, tok, [{"role": "user", "content": "What is the capital of France?"}],
                 max_new_tokens=16)
    assert first.choices[0].message.content.strip() == local


@pytest.mark.slow
def test_streamed_reply_equals_the_whole_reply(server):
    client = server.client()
    whole = _ask(client, server.model, "Name three colours.", max_tokens=12)
    chunks = list(_ask(client, server.model, "Name three colours.", max_tokens=12, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_stop_tokens_and_stop_strings(server):
    client = server.client()
    wrong = json.dumps({"eos_token_id": 0, "max_new_tokens": 24})  # stops at <|endoftext|> only
    runaway = _ask(client, server.model, max_tokens=24, extra_body={"generation_config": wrong})
    assert runaway.choices[0].finish_reason == "length" and runaway.usage.completion_tokens == 24
    fixed = _ask(client, server.model, max_tokens=24, stop=["<|im_end|>"],
                 extra_body={"generation_config": wrong})
    assert fixed.choices[0].finish_reason == "stop" and fixed.usage.completion_tokens < 24
    counted = _ask(client, server.model, "Count from 1 to 10.", max_tokens=40, stop=["4"])
    assert counted.choices[0].message.content.endswith("4") and "5" not in counted.choices[0].message.content


@pytest.mark.slow
def test_bad_requests_get_errors_and_the_server_stays_up(server):
    import openai

    client = server.client()
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "01-ai/Yi-6B-Chat")
    assert "pinned" in S.error_info(err.value)["error"]["detail"]
    for bad in ({"messages": [{"content": "hi"}]}, {"max_tokens": 0}):
        request = {"model": server.model, "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 4} | bad
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**request)
    errors = server.log_lines(("KeyError", "ValueError"), expect=2)
    assert errors[-2:] == ["KeyError: 'role'",
                           "ValueError: `max_new_tokens` must be greater than 0, but is 0."]
    assert server.health()
    assert _ask(client, server.model, max_tokens=4).choices[0].message.content


@pytest.mark.slow
def test_load_test_against_the_server(server):
    result = S.load_test(server.client(), server.model, ["Say hello.", "你好"], clients=2,
                         requests_per_client=2, max_tokens=3)
    assert result.errors == 0 and len(result.results) == 4
    assert sum(r.completion_tokens for r in result.results) > 0


@pytest.mark.slow
def test_a_broken_model_folder_fails_with_the_log_tail(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{ this is not json")
    (folder / "model.safetensors").touch()
    started = time.perf_counter()
    with pytest.raises(S.ServerStartError, match=r"exited(.|\n)*(JSON|json|Expecting)"):
        with S.serve(folder, timeout=120):
            pass
    assert time.perf_counter() - started < 60


def test_pick_device(monkeypatch):
    import torch

    assert S.pick_device("cpu") == ("cpu", "float32")
    device, dtype = S.pick_device("auto")
    assert device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert dtype == "float32"  # the embedded model: float32 on any device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert S.pick_device("cuda") == ("cuda", "float32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an A100/H100
    assert S.pick_device("cuda", "01-ai/Yi-6B-Chat") == ("cuda", "bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a V100
    assert S.pick_device("cuda", "01-ai/Yi-6B-Chat") == ("cuda", "float16")  # as load() gives it
    assert S.pick_device("cpu", "01-ai/Yi-6B-Chat") == ("cpu", "float32")
