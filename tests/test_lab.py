"""`make lab` where workshops run it (tools/lab.py): loopback only, as root too, no news pop-up and
no update check; and, in `make test-extra`, `make lab`'s own recipe started headless serving a
lesson."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.error import URLError

import pytest

from conftest import ROOT, discover_notebooks
from lab import SETTINGS, command, settings_file, write_settings
from yi_helpers.serve import free_port


def test_the_command_binds_to_loopback_and_allows_root_only_as_root():
    as_root = command(root=True)
    assert as_root[1:4] == ["-m", "jupyter", "lab"] and as_root[0] == sys.executable
    assert "--ServerApp.ip=127.0.0.1" in as_root and "--allow-root" in as_root
    assert "--allow-root" not in command(root=False)
    assert as_root[-1] == str(ROOT / "notebooks")
    # options given later (make lab LAB_ARGS=...) come after the hub's, so they win
    assert command(["--port=9999"], root=False).index("--port=9999") > command(
        root=False).index("--ServerApp.ip=127.0.0.1")
    assert "--LabApp.news_url=None" in as_root
    assert "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate" in as_root


def test_the_settings_turn_news_and_update_checks_off_in_the_venv(tmp_path):
    path = write_settings(tmp_path)
    assert path == settings_file(tmp_path)
    assert path.parts[-5:] == ("jupyter", "lab", "settings", "overrides.d", "yi-hub.json")
    assert json.loads(path.read_text()) == SETTINGS
    notification = SETTINGS["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    # the names exist in the installed JupyterLab's schema: a rename would silently do nothing
    schema = (Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas" / "@jupyterlab"
              / "apputils-extension" / "notification.json")
    properties = json.loads(schema.read_text(encoding="utf-8"))["properties"]
    assert set(notification) <= set(properties)
    assert "false" in [choice["const"] for choice in properties["fetchNews"]["oneOf"]]


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


@pytest.mark.extra
def test_make_lab_serves_a_lesson(tmp_path):
    """`make lab`'s recipe (setup not redone: -o STAMP) with --no-browser, a free port and a token
    from LAB_ARGS: a lesson served (HTTP 200), the settings and page config say no news and no
    update check, the server listens on 127.0.0.1; then stopped."""
    port, token = free_port(), "yi-hub-test-token"
    lesson = discover_notebooks()[0].name
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    # a user's own JupyterLab settings, workspaces and runtime files stay out of the test
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    venv = sys.prefix
    args = f"--no-browser --port={port} --IdentityProvider.token={token}"
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "-C", str(ROOT), "-o", f"{venv}/.yi-hub-setup", "lab",
                                 f"VENV={venv}", f"LAB_ARGS={args}"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(f"{base}/api/contents/{lesson}", token)
                break
            except (URLError, ConnectionError):
                assert proc.poll() is None, f"make lab stopped:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no answer in 60 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        assert status == 200 and json.loads(body)["type"] == "notebook"
        status, page = _get(f"{base}/lab/tree/{lesson}", token)
        assert status == 200
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">'
                                      r"(.*?)</script>", page, re.S).group(1))
        assert config["news"] == {"disabled": True}
        _, body = _get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                       token)
        answer = json.loads(body)  # what the page composes: the user's settings over defaults
        defaults = {k: v.get("default") for k, v in answer["schema"]["properties"].items()}
        assert answer["settings"] == {}  # a fresh user: the defaults hold
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
        assert json.loads(_get(f"{base}/lab/api/update", token)[1]) == {"notification": None}
        running = [json.loads(p.read_text())
                   for p in (tmp_path / "runtime").glob("jpserver-*.json")]
        assert [(r["hostname"], r["port"]) for r in running] == [("127.0.0.1", port)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
