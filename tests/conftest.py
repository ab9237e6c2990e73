"""Shared fixtures: the embedded model (loaded once per test session) and the notebook list."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
sys.path.insert(0, str(ROOT / "tools"))  # the runner scripts are tested too

from run_notebooks import discover  # noqa: E402


def discover_notebooks() -> list[Path]:
    """Every lesson notebook (``NN_topic.ipynb``): new notebooks are covered automatically."""
    return discover(NOTEBOOK_DIR)


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2 model, float32 on the CPU."""
    from yi_helpers import load

    return load("embedded", device="cpu")


@pytest.fixture(scope="session")
def tiny_llama_config():
    """A tiny Llama config with Yi's vocabulary and GQA layout, for shape-only tests."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=64000, hidden_size=64, intermediate_size=172,
                       num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                       max_position_embeddings=256, rope_theta=5e6, tie_word_embeddings=False)


@pytest.fixture()
def tiny_llama_dir(tmp_path):
    """A tiny random Llama with the embedded tokenizer, saved as safetensors (loads in a second):
    for tests that need a real model folder (training, adapters, several processes) but no
    real behaviour."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from yi_helpers.embedded import prepare

    tok = AutoTokenizer.from_pretrained(prepare(verbose=False))
    torch.manual_seed(0)
    # widths: multiples of 64, as real models have; bitsandbytes' 4-bit CPU kernel on CPUs with
    # AVX-512 bf16 needs them (out_features % 32, in_features % its block size of 64)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    folder = tmp_path / "tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture()
def offline_hub_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache with the hub switched off. Call the fixture's value with
    ``(repo_id, folder)`` to put ``folder``'s files into the cache as that repository's
    ``main`` snapshot, in the cache's own layout (``refs/main`` names the snapshot)."""
    import shutil

    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def add(repo_id: str, folder: Path) -> None:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder, repo / "snapshots" / ("a" * 40))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("a" * 40)

    return add
