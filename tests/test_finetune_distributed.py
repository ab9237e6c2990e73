"""`python -m yi_helpers.finetune` run for real in two CPU processes under `accelerate launch`.

`accelerate launch --cpu --num_processes 2` starts *one* process unless MPI (`mpirun`) is
installed; `--multi_gpu --num_processes 2` starts two through torchrun, and with `device: cpu`
they train on the CPU over gloo (accelerate's MULTI_CPU mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_accelerate_two_processes_train_and_write_one_adapter(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"model: {tiny_llama_dir}\noutput_dir: {out}\nmax_steps: 3\nbatch_size: 2\n"
                   "eval_steps: 3\nsave_steps: 3\nmax_eval_rows: 4\nlora_r: 2\ndevice: cpu\n"
                   "progress_bar: false\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "yi_helpers.finetune", "--config", str(cfg)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):  # both processes ran every step
        lines = (out / "logs" / f"rank{rank}.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    adapters = sorted(p.parent for p in out.rglob("adapter_model.safetensors")
                      if "checkpoint-" not in str(p))
    assert adapters == [out / "adapter"]  # exactly one final adapter, written once
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert done.stdout.count("adapter: ") == 1  # only rank 0 reports and saves
