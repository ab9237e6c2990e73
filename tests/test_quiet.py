"""yi_helpers.quiet: one progress line per long step, library noise kept out of lessons, and
nothing changed by importing the package."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from yi_helpers.quiet import progress


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    return done.stdout + done.stderr


def test_importing_the_package_changes_nothing_global():
    """Warning filters, logger levels and environment are the same before and after
    ``import yi_helpers`` (and its light modules)."""
    code = ("import json, logging, os, warnings\n"
            "NAMES = ('', 'torchao', 'torch.utils._pytree', 'bitsandbytes.backends.cpu.ops')\n"
            "def state():\n"
            "    levels = [logging.getLogger(n).level for n in NAMES]\n"
            "    return [repr(warnings.filters), levels, dict(os.environ)]\n"
            "before = state()\n"
            "import yi_helpers, yi_helpers.machine, yi_helpers.quiet, yi_helpers.cache\n"
            "print(json.dumps(before == state()))")
    assert json.loads(run(code).splitlines()[-1]) is True


def test_progress_wraps_an_iterable():
    assert list(progress(range(3), desc="x", disable=True)) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gptqmodel") is None,
                    reason="gptqmodel is not installed (make setup installs it)")
def test_quiet_gptqmodel_banner_keeps_the_import_banner_out():
    assert "GPT-QModel" in run("import gptqmodel")  # the banner this helper is for
    quiet = run("from yi_helpers.quiet import quiet_gptqmodel_banner\n"
                "quiet_gptqmodel_banner()\nimport gptqmodel")
    assert "GPT-QModel" not in quiet and "GIL is enabled" not in quiet


def test_bitsandbytes_cpu_kernel_hint_is_kept_out_of_lessons():
    """On a CPU with AVX-512 bf16, importing bitsandbytes logs that its optional hub kernel
    (``kernels``) is missing and falls back to the built-in one. ``quiet_libraries`` silences
    that logger: it must be the one bitsandbytes logs with, and the hint must not reach the
    output."""
    import importlib
    import logging

    from yi_helpers.quiet import quiet_libraries

    quiet_libraries()
    ops = importlib.import_module("bitsandbytes.backends.cpu.ops")
    assert ops.logger.name == "bitsandbytes.backends.cpu.ops"
    assert ops.logger.getEffectiveLevel() >= logging.ERROR
    out = run("from yi_helpers.quiet import quiet_libraries\n"
              "quiet_libraries()\nimport bitsandbytes")
    assert "kernels-community" not in out


def test_notebook_progress_keeps_one_finished_line(monkeypatch):
    """In a notebook the progress line is one display, redrawn in place: the saved notebook
    keeps its last state only, the finished line with the time."""
    drawn = []

    class Handle:
        def update(self, obj):
            drawn.append(obj.data)

    monkeypatch.setattr("yi_helpers.quiet.in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display",
                        lambda obj, display_id=None: drawn.append(obj.data) or Handle())
    assert list(progress(range(4), desc="training", unit="step", mininterval=3600)) == [0, 1, 2, 3]
    assert len(drawn) == 2  # the first line, then the last: nothing between at this interval
    assert drawn[0].startswith("training: 0/4 steps, 0 s so far")
    assert drawn[-1].startswith("training: 4/4 steps in 0 s (") and drawn[-1].endswith(" s/step)")
    assert list(progress(iter("abc"), desc="x")) == ["a", "b", "c"]  # no length: no total
    assert drawn[-1].startswith("x: 3 it in ")
