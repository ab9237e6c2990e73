"""Each lesson's recipe runs on its own, with nothing from this repository.

A lesson's main path is written with the ecosystem's own API (transformers, peft, torchao,
llama.cpp, Gradio, openai) in cells tagged ``recipe``. A learner copies those cells, puts a real
Yi id in ``MODEL`` and runs them in their own project. This file proves they can:

- statically (``make test-fast``): every lesson has recipe cells; none of them, nor the
  parameters cell, names ``yi_helpers`` or uses IPython syntax;
- by running them (``make test``): the lesson's parameters cell, then ``MODEL`` set to the
  embedded model's folder and ``DEVICE = "cpu"``, then the recipe cells in order, in a fresh
  Python process in which ``import yi_helpers`` raises ``ImportError``. The cells' own asserts
  must hold. ``QUICK_SIZES`` shortens a recipe where the test budget needs it, with the same
  names a learner sees in the parameters cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import discover_notebooks

NOTEBOOKS = discover_notebooks()
TAG = "recipe"

# Parameters a recipe run overrides after the lesson's parameters cell (the budget's quick sizes).
# Opt-in recipe paths (lesson 05's GPTQModel, lesson 06's torch.compile) keep their defaults
# here, off: the smoke runs switch them on, on the tiny Yi stand-in (test_notebooks_smoke.py).
QUICK_SIZES: dict[str, dict[str, object]] = {
    "04": {"MAX_STEPS": 2, "EVAL_ROWS": 2},
    "09": {"NEEDLE_LENGTHS": [512], "DEPTHS": [0.5]},  # one needle, not nine
}


def inputs_for(lesson: str) -> dict[str, str]:
    """Files a lesson's recipe reads, as a learner would pass their own: the hub's data files,
    the embedded model's GGUF, lesson 06's lm_eval task."""
    from yi_helpers import embedded
    from yi_helpers.corpus import data_path

    files = {"04": {"TRAIN_FILE": "hub_chat_train.jsonl", "EVAL_FILE": "hub_chat_eval.jsonl"},
             "05": {"CALIBRATION_FILE": "calibration_chat.jsonl"},
             "09": {"HAYSTACK_FILE": "haystack_en.txt"}}
    inputs = {name: str(data_path(file)) for name, file in files.get(lesson, {}).items()}
    if lesson == "08":
        inputs["GGUF"] = str(embedded.gguf_path())
    if lesson == "06":  # the hub's questions as an lm_eval task, as the lesson writes them
        from yi_helpers.bench import lm_eval_task_dir

        inputs["LM_EVAL_TASKS"], inputs["LM_EVAL_TASK"] = map(str, lm_eval_task_dir("en", limit=8))
    return inputs


@contextlib.contextmanager
def services_for(lesson: str) -> Iterator[dict[str, str]]:
    """Servers a lesson's recipe talks to, started here as a learner would start their own:
    lesson 07's client recipes need an OpenAI-compatible server (``transformers serve``)."""
    if lesson != "07":
        yield {}
        return
    from yi_helpers.serve import serve

    with serve("embedded", device="cpu", dtype="float32") as server:
        yield {"BASE_URL": server.base_url}


# `import yi_helpers` (and `from yi_helpers...`) raises ImportError in the recipe's process.
BLOCK = "import sys\nsys.modules['yi_helpers'] = None  # a recipe needs nothing from the hub\n"
IPYTHON = re.compile(r"^\s*[%!]", re.MULTILINE)


def cells(notebook: Path, tag: str) -> list[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and tag in c.get("metadata", {}).get("tags", [])]


def recipe_script(notebook: Path, model_folder: str, services: dict[str, str] | None = None) -> str:
    """The parameters cell; MODEL, DEVICE, the quick sizes and input files for this machine;
    the recipe cells."""
    lesson = notebook.name[:2]
    values = {**QUICK_SIZES.get(lesson, {}), **inputs_for(lesson), **(services or {})}
    overrides = [f"MODEL = {model_folder!r}", 'DEVICE = "cpu"',
                 *(f"{name} = {value!r}" for name, value in values.items())]
    return "\n\n".join([BLOCK, *cells(notebook, "parameters"), "\n".join(overrides),
                        *cells(notebook, TAG)]) + "\n"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_lesson_has_a_recipe_that_needs_no_hub_code(notebook):
    recipe = cells(notebook, TAG)
    assert recipe, f"{notebook.name}: no cell tagged {TAG!r} (the lesson's main path, copyable)"
    for source in [*cells(notebook, "parameters"), *recipe]:
        assert "yi_helpers" not in source, (
            f"{notebook.name}: a recipe or parameters cell uses yi_helpers:\n{source}")
        assert not IPYTHON.search(source), (
            f"{notebook.name}: a recipe cell uses IPython syntax (% or !), which plain Python "
            f"cannot run:\n{source}")
    assert "smoke" not in "".join(cells(notebook, "parameters")), (
        f"{notebook.name}: the test switch `smoke` belongs in papermill's parameters, not the "
        "learner's cell")


def test_recipe_script_blocks_the_hub_package(tmp_path):
    """The guard works: a script that imports yi_helpers fails in the recipe's process."""
    script = tmp_path / "recipe.py"
    script.write_text(BLOCK + "import yi_helpers\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and "import of yi_helpers halted" in result.stderr


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_recipe_runs_without_yi_helpers(notebook, tmp_path):
    from yi_helpers.resolve import resolve_model

    folder = resolve_model("embedded").local().location
    script = tmp_path / f"{notebook.stem}_recipe.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    with services_for(notebook.name[:2]) as services:
        script.write_text(recipe_script(notebook, str(folder), services), encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                cwd=tmp_path, env=env, timeout=600)
    print(f"{notebook.name} recipe: {time.perf_counter() - start:.1f} s")
    assert result.returncode == 0, (
        f"{notebook.name}: its recipe failed on its own (script {script}):\n"
        + textwrap.indent(result.stderr[-4000:], "  "))


SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_need_no_hub_code(script):
    source = script.read_text(encoding="utf-8")
    assert "yi_helpers" not in source, f"{script.name} imports the hub's package: a learner's copy would fail"


@pytest.mark.slow
def test_lora_script_trains_saves_and_resumes(tmp_path):
    """scripts/lora_sft.py (lesson 04 as a script): one step, the adapter saved; run again with
    one more step, it resumes from the checkpoint instead of starting over."""
    from yi_helpers.corpus import data_path
    from yi_helpers.resolve import resolve_model

    script = Path(__file__).resolve().parents[1] / "scripts" / "lora_sft.py"
    rows = data_path("hub_chat_train.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = [sys.executable, "-c", BLOCK + "import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
           str(script), "--model", str(resolve_model("embedded").local().location),
           "--train-file", str(tmp_path / "train.jsonl"), "--output-dir", str(tmp_path / "run"),
           "--batch-size", "2", "--max-length", "96"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    first = subprocess.run([*run, "--max-steps", "1"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoint-1").is_dir()
    second = subprocess.run([*run, "--max-steps", "2"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    assert f"resuming from {tmp_path / 'run' / 'checkpoint-1'}" in second.stdout, "it did not resume"
