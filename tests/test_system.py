"""yi_helpers.system: machine facts and measurement helpers used by the notebooks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from yi_helpers.models import estimate_memory
from yi_helpers.system import machine_summary, progress, tensor_bytes


def test_tensor_bytes_counts_tied_weights_once():
    emb = torch.nn.Embedding(100, 8)
    head = torch.nn.Linear(8, 100, bias=False)
    head.weight = emb.weight  # tied, as in SmolLM2
    model = torch.nn.ModuleDict({"emb": emb, "head": head}).to(torch.bfloat16)
    model.register_buffer("scale", torch.ones(4))  # buffers count too
    assert tensor_bytes(model) == 100 * 8 * 2 + 4 * 4


def test_machine_summary_names_cpu_and_versions():
    line = machine_summary()
    assert f"torch {torch.__version__}" in line and "cores" in line and "transformers" in line


def test_progress_wraps_an_iterable(capsys):
    assert list(progress(range(3), desc="x", disable=True)) == [0, 1, 2]


def test_memory_estimate_prints_its_parts():
    text = str(estimate_memory("01-ai/Yi-6B-Chat", batch_size=4))
    assert text.startswith("01-ai/Yi-6B-Chat: 13.2 GB (weights 12.1 + KV cache")
    assert "batch 4, 2048 tokens, 16-bit weights" in text


def test_artifact_dir_lives_in_the_hub_cache(tmp_path, monkeypatch):
    from yi_helpers.system import artifact_dir

    monkeypatch.setenv("YI_HUB_CACHE", str(tmp_path))
    assert artifact_dir("lesson04-adapter") == tmp_path / "artifacts" / "lesson04-adapter"
    with pytest.raises(ValueError):
        artifact_dir("../escape")


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
