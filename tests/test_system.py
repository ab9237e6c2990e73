"""yi_helpers.system: machine facts and measurement helpers used by the notebooks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from yi_helpers.models import estimate_memory
from yi_helpers.system import cpu_features, cpu_flags, machine_summary, native_bf16, progress


def test_machine_summary_names_cpu_and_versions():
    line = machine_summary()
    assert f"torch {torch.__version__}" in line and "cores" in line and "transformers" in line


# Shortened /proc/cpuinfo texts of the machines this hub was measured on, and of an Arm server.
EPYC_AVX512 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n"


def test_cpu_flags_read_x86_and_arm_cpuinfo():
    assert {"avx2", "avx512_bf16"} <= cpu_flags(EPYC_AVX512)
    assert "bf16" in cpu_flags(GRAVITON3) and "asimd" in cpu_flags(GRAVITON3)
    assert cpu_flags("model name : Apple M2\n") == frozenset()


def test_native_bf16_needs_a_bf16_flag_and_says_when_it_cannot_tell():
    assert native_bf16(cpu_flags(EPYC_AVX512)) is True
    assert native_bf16(cpu_flags(GRAVITON3)) is True
    assert native_bf16(cpu_flags(EPYC_AVX2)) is False  # avx2 alone converts bf16 on the fly
    assert native_bf16(frozenset()) is None


def test_cpu_features_names_torch_kernels_and_bf16():
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_features(cpu_flags(EPYC_AVX2)) == f"{capability} kernels, no native bf16"
    assert cpu_features(cpu_flags(EPYC_AVX512)).endswith("native bf16 (avx512_bf16)")
    assert cpu_features(frozenset()).endswith("bf16 support unknown")
    assert cpu_features().startswith(capability)  # this machine's own flags


def test_progress_wraps_an_iterable(capsys):
    assert list(progress(range(3), desc="x", disable=True)) == [0, 1, 2]


def test_memory_estimate_prints_its_parts():
    text = str(estimate_memory("01-ai/Yi-6B-Chat", batch_size=4))
    assert text.startswith("01-ai/Yi-6B-Chat: 13.2 GB (weights 12.1 + KV cache")
    assert "batch 4, 2048 tokens, 16-bit weights" in text


def test_artifact_dir_lives_in_the_hub_cache(tmp_path, monkeypatch):
    from yi_helpers.system import artifact_dir

    monkeypatch.setenv("YI_HUB_CACHE", str(tmp_path))
    artifacts = tmp_path / "artifacts"
    assert artifact_dir("lesson04-adapter") == artifacts / "embedded" / "lesson04-adapter"
    assert artifact_dir("lesson04-adapter", "01-ai/Yi-6B-Chat") == \
        artifacts / "01-ai--Yi-6B-Chat" / "lesson04-adapter"
    # a local folder (the Yi stand-in, say): its own folder, never the embedded model's
    folder = tmp_path / "yi-chat-standin-tiny"
    folder.mkdir()
    mine = artifact_dir("lesson04-adapter", str(folder))
    assert mine.parent.name.startswith("yi-chat-standin-tiny-") and mine.parent.parent == artifacts
    assert artifact_dir("lesson04-adapter", str(folder)) == mine  # the same place every time
    with pytest.raises(ValueError):
        artifact_dir("../escape")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gptqmodel") is None,
                    reason="gptqmodel is not installed (make setup installs it)")
def test_quiet_gptqmodel_banner_keeps_the_import_banner_out():
    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, check=True)
        return done.stdout + done.stderr

    assert "GPT-QModel" in run("import gptqmodel")  # the banner this helper is for
    quiet = run("from yi_helpers.system import quiet_gptqmodel_banner\n"
                "quiet_gptqmodel_banner()\nimport gptqmodel")
    assert "GPT-QModel" not in quiet and "GIL is enabled" not in quiet


def test_bitsandbytes_cpu_kernel_hint_is_kept_out_of_lessons():
    """On a CPU with AVX-512 bf16, importing bitsandbytes logs that its optional hub kernel
    (``kernels``) is missing and falls back to the built-in one. yi_helpers silences that logger:
    it must be the one bitsandbytes logs with, and the hint must not reach the output."""
    import importlib
    import logging

    import yi_helpers  # noqa: F401

    ops = importlib.import_module("bitsandbytes.backends.cpu.ops")
    assert ops.logger.name == "bitsandbytes.backends.cpu.ops"
    assert ops.logger.getEffectiveLevel() >= logging.ERROR
    done = subprocess.run([sys.executable, "-c", "import yi_helpers, bitsandbytes"],
                          capture_output=True, text=True, timeout=300, check=True)
    assert "kernels-community" not in done.stdout + done.stderr


def test_notebook_progress_keeps_one_finished_line(monkeypatch):
    """In a notebook the progress line is one display, redrawn in place: the saved notebook
    keeps its last state only, the finished line with the time and the postfix."""
    from yi_helpers.system import NotebookProgress

    drawn = []

    class Handle:
        def update(self, obj):
            drawn.append(obj.data)

    monkeypatch.setattr("IPython.display.display",
                        lambda obj, display_id=None: drawn.append(obj.data) or Handle())
    bar = NotebookProgress(total=4, desc="training", unit="step", mininterval=3600)
    for _ in range(4):
        bar.update()
    bar.set_postfix(loss="0.093", refresh=False)
    bar.close()
    bar.close()  # a second close draws nothing more
    assert len(drawn) == 2  # the first line, then the last: nothing between at this interval
    assert drawn[0].startswith("training: 0/4 steps, 0 s so far")
    assert drawn[-1].startswith("training: 4/4 steps in 0 s (") and drawn[-1].endswith(", loss=0.093")
    assert list(NotebookProgress(range(3), desc="x")) == [0, 1, 2]
    assert drawn[-1].startswith("x: 3/3 it in ")
