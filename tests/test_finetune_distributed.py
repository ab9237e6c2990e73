"""scripts/lora_sft.py (lesson 04 as a program) run for real in two CPU processes under
`accelerate launch`.

`accelerate launch --cpu --num_processes 2` starts *one* process unless MPI (`mpirun`) is
installed; `--multi_gpu --num_processes 2` starts two through torchrun, and on a machine without
CUDA they train on the CPU over gloo (accelerate's MULTI_CPU mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_accelerate_two_processes_train_and_write_one_adapter(tiny_llama_dir, tmp_path):
    from yi_helpers.corpus import data_path

    rows = data_path("hub_chat_train.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": ""}  # the CPU path (gloo), on a GPU machine too
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "scripts" / "lora_sft.py"), "--model", str(tiny_llama_dir),
           "--train-file", str(tmp_path / "train.jsonl"), "--output-dir", str(out),
           "--max-steps", "3", "--batch-size", "2", "--lora-r", "2", "--max-length", "96"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):  # both processes ran every step
        assert f"process {rank} of 2: 3 steps" in done.stdout, done.stdout[-2000:]
    adapters = sorted(p.parent for p in out.rglob("adapter_model.safetensors")
                      if "checkpoint-" not in str(p))
    assert adapters == [out / "adapter"]  # exactly one final adapter, written once
    assert done.stdout.count("adapter saved to") == 1  # only rank 0 saves
