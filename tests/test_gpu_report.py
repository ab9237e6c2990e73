"""tools/gpu_report.py: the GPU runner's report, its rows next to the planner and the Yi README,
and the numbers it reads out."""

from __future__ import annotations

import json

import pytest

from gpu_report import GpuReport, memory_per_token, memory_record, record_dict
from yi_helpers.models import estimate_memory


def test_memory_record_compares_with_estimate_and_readme():
    r = memory_record("01-ai/Yi-6B", 4, 2048, measured_gb=13.5)
    assert r.readme_gb == 13 and r.estimate_gb == pytest.approx(13.2, abs=0.1)
    assert record_dict(r)["estimate_error"] == pytest.approx(r.estimate_gb / 13.5 - 1)
    assert r.weights == "bf16"


def test_a_4bit_measurement_is_compared_with_4bit_numbers():
    r = memory_record("01-ai/Yi-6B", 1, 4096, measured_gb=5.0, weight_bits=4, weights="nf4")
    assert r.readme_gb == 4  # the README's Yi-6B-Chat-4bits row, not the bf16 row (12)
    assert r.estimate_gb == pytest.approx(
        estimate_memory("01-ai/Yi-6B", batch_size=1, context_len=4096, weight_bits=4).total_gb)
    assert r.estimate_gb < memory_record("01-ai/Yi-6B", 1, 4096, 5.0).estimate_gb / 2
    assert r.weights == "nf4" and record_dict(r)["weights"] == "nf4"
    assert memory_record("01-ai/Yi-6B", 1, 4096, 5.0, weight_bits=3).readme_gb is None


def test_report_json_and_markdown(tmp_path):
    report = GpuReport(device="NVIDIA H100", torch_version="2.x", started="2026-11-28T00:00:00Z")
    report.notebooks.append({"notebook": "01_loading_yi.ipynb", "status": "ok", "seconds": 12.5,
                             "peak_gpu_gb": 1.2})
    report.memory.append(record_dict(memory_record("01-ai/Yi-6B", 1, 4096, 13.0)))
    report.decode.append({"model": "01-ai/Yi-6B", "weights": "bf16", "batch_size": 1,
                          "tokens_per_s": 50.0, "min": 49.0, "max": 51.0,
                          "roofline_tokens_per_s": 200.0, "fraction": 0.25})
    report.skipped.append("4-bit: --skip-4bit")
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["schema_version"] == 1 and data["notebooks"][0]["seconds"] == 12.5
    assert set(data["memory"][0]) >= {"model", "batch_size", "context_len", "measured_gb",
                                      "estimate_gb", "readme_gb", "estimate_error"}
    md = md_path.read_text()
    assert GpuReport.load(json_path) == report and GpuReport.load(json_path).to_markdown() == md
    assert "| 01_loading_yi.ipynb | ok | 12.5 | 1.2 |" in md
    assert "| 01-ai/Yi-6B | bf16 | 1 | 4096 | 13.0 |" in md
    assert "| 01-ai/Yi-6B | bf16 | eager, dynamic cache | 1 | 50.0 (49.0–51.0) | 200.0 | 25% | – |" in md
    assert "- 4-bit: --skip-4bit" in md
    assert "states no context length" in md  # the README's cells are not at 4,096 tokens
    report.memory[0] = record_dict(memory_record("01-ai/Yi-6B", 1, 2048, 13.0))
    assert "states no context length" not in report.to_markdown()


def _row(batch, measured, estimate, model="01-ai/Yi-6B", context=4096, weights="bf16"):
    return {"model": model, "batch_size": batch, "context_len": context, "measured_gb": measured,
            "estimate_gb": estimate, "readme_gb": None, "weights": weights,
            "estimate_error": estimate / measured - 1}


def test_memory_per_token_is_the_slope_between_the_two_largest_batches():
    rows = [_row(1, 12.0, 12.0), _row(4, 13.0, 12.5), _row(16, 20.0, 16.0), _row(32, 30.0, 21.0),
            _row(1, 5.0, 4.5, weights="nf4")]
    slope = memory_per_token(rows)
    tokens = 16 * 4096
    assert slope["batches"] == (16, 32) and slope["weights"] == "bf16"
    assert slope["measured_kb"] == pytest.approx(10.0e9 / tokens / 1e3)
    assert slope["estimate_kb"] == pytest.approx(5.0e9 / tokens / 1e3)
    assert slope["kv_kb"] == pytest.approx(65.536)  # Yi-6B: 2 x 32 layers x 4 KV heads x 128 x 2 B
    assert memory_per_token(rows[:1] + rows[-1:]) is None  # one batch size per format: no slope
    assert memory_per_token(rows + [_row(32, 30.0, 21.0)]) == slope  # a repeated batch counts once
    assert memory_per_token([_row(1, 1.0, 1.0, model="mine"), _row(2, 2.0, 1.5, model="mine")]
                            )["kv_kb"] is None  # not in the registry: no KV share


def test_report_reads_its_numbers_out():
    report = GpuReport(device="NVIDIA H200", torch_version="2.x", started="now")
    report.memory += [_row(16, 20.0, 16.0), _row(32, 30.0, 21.0)]
    report.decode.append({"model": "01-ai/Yi-6B", "weights": "bf16", "batch_size": 1,
                          "tokens_per_s": 40.0, "min": 39.0, "max": 41.0,
                          "roofline_tokens_per_s": 400.0, "fraction": 0.1})
    md = report.to_markdown()
    assert "## Reading the numbers" in md
    assert "costs 153 KB measured against 76 KB estimated (batch 16 -> 32 at 4,096 tokens)" in md
    assert "its KV cache alone is 66 KB, so 87 KB are activations of the prefill" in md
    assert "25.0 ms per token against 2.5 ms" in md and "far from memory-bound" in md
    report.decode[0] |= {"tokens_per_s": 300.0, "fraction": 0.75}
    assert "far from memory-bound" not in report.to_markdown()
    assert "Reading the numbers" not in GpuReport(device="x", torch_version="x",
                                                  started="now").to_markdown()
