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


# ---------------------------------------------------------------------------------------------
# The test budget: each lesson's full run (nbval) and smoke run, against docs/CONTRIBUTING.md
# ---------------------------------------------------------------------------------------------

BUDGET_DOC = ROOT / "docs" / "CONTRIBUTING.md"
#: a run may take up to this multiple of its allocation before `make test` fails
BUDGET_TOLERANCE = 1.5


def host_kind() -> str:
    """``"avx512"`` or ``"avx2"``: which column of the budget table this CPU is held to (torch's
    kernel level; anything below AVX-512 counts as the slower host)."""
    import torch

    return "avx512" if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else "avx2"


def read_budget(text: str | None = None) -> dict[str, dict[str, float]]:
    """The budget table of docs/CONTRIBUTING.md (between the ``budget-table`` markers): part →
    {"avx512": seconds, "avx2": seconds}. Parts: ``setup``, ``unit``, ``extra``, and for each
    lesson ``NN full`` and ``NN smoke``."""
    import re

    text = BUDGET_DOC.read_text(encoding="utf-8") if text is None else text
    start, _, rest = text.partition("<!-- budget-table -->")
    table, end, _ = rest.partition("<!-- /budget-table -->")
    if not end:
        raise ValueError("docs/CONTRIBUTING.md has no <!-- budget-table --> ... "
                         "<!-- /budget-table --> block")
    budget = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"\d+", cells[1]):
            continue
        key = cells[0].strip("` ")
        budget[key] = {"avx512": float(cells[1]), "avx2": float(cells[2])}
    return budget


def lesson_of(nodeid: str) -> tuple[str, str] | None:
    """(lesson number, "full" | "smoke") of a notebook test's node id; None for other tests."""
    import re

    if nodeid.startswith("notebooks/"):  # nbval: notebooks/05_quantization.ipynb::Cell 3
        m = re.match(r"notebooks/(\d\d)_", nodeid)
        return (m.group(1), "full") if m else None
    m = re.search(r"test_notebook_smoke_run\[(\d\d)_", nodeid)
    return (m.group(1), "smoke") if m else None


_RUN_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    part = lesson_of(report.nodeid)
    if part is not None:
        key = f"{part[0]} {part[1]}"
        _RUN_SECONDS[key] = _RUN_SECONDS.get(key, 0.0) + report.duration


def over_budget(seconds: dict[str, float], budget: dict[str, dict[str, float]], host: str,
                tolerance: float = BUDGET_TOLERANCE) -> list[str]:
    """One line per run that took more than ``tolerance`` times its allocation, or that has
    none in the table."""
    problems = []
    for key, took in sorted(seconds.items()):
        if key not in budget:
            problems.append(f"{key} run: {took:.0f} s, and no allocation in docs/CONTRIBUTING.md")
        elif took > tolerance * budget[key][host]:
            problems.append(f"{key} run: {took:.0f} s, over {tolerance:g} x its allocation of "
                            f"{budget[key][host]:.0f} s ({host} host)")
    return problems


_PROBLEMS: list[str] = []


def pytest_sessionfinish(session):
    """Fail the run when a lesson's run took more than 1.5 x its allocation."""
    if _RUN_SECONDS:
        _PROBLEMS[:] = over_budget(_RUN_SECONDS, read_budget(), host_kind())
        if _PROBLEMS and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _RUN_SECONDS:
        return
    host = host_kind()
    budget = read_budget()
    terminalreporter.section(f"lesson runs against the test budget ({host} host)")
    for key, took in sorted(_RUN_SECONDS.items()):
        allowed = budget.get(key, {}).get(host)
        terminalreporter.write_line(f"{key:>9}: {took:6.1f} s" + (
            f" (allocation {allowed:.0f} s)" if allowed else " (no allocation)"))
    for line in _PROBLEMS:
        terminalreporter.write_line(f"OVER BUDGET: {line}", red=True)
