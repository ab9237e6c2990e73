"""GPU runner: every notebook on CUDA, and a Yi-6B-shaped model measured. `make gpu-check`.

    python tools/gpu_check.py [--out reports/gpu] [--quick] [--skip-notebooks] [--skip-yi]
                              [--skip-4bit] [--batches 1 4 16 32] [--context 4096]

On a machine without CUDA it says so and exits 0. On a CUDA machine it first says which of the
wheels the notebooks need are missing (`python tools/wheels.py` lists them all).

Budget on one H100/H200 (about 10 minutes): notebooks ~4 min, random Yi-6B build ~0.5 min,
memory at 4 batch sizes ~1 min, decode ~1 min, 4-bit (bitsandbytes) ~3 min; each part can be
skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from wheels import check, notebook_wheels, report as wheel_report, requirements_text  # noqa: E402


class GpuMemoryPoller:
    """Peak GPU memory used (GB) while a child process runs, from `nvidia-smi`, every 0.5 s."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak, self._stop = interval, None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def used_gb() -> float | None:
        if not shutil.which("nvidia-smi"):
            return None
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        try:
            return float(out.stdout.split()[0]) * 2**20 / 1e9  # MiB -> GB
        except (IndexError, ValueError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self.used_gb()
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_notebooks(report, out_dir: Path) -> None:
    from run_notebooks import discover, run

    for nb in discover(ROOT / "notebooks"):
        baseline = GpuMemoryPoller.used_gb() or 0.0
        with GpuMemoryPoller() as poller:
            result = run(nb, out_dir / "notebooks", {"DEVICE": "cuda"})
        status = "ok" if result["status"] == "ok" else f"FAILED: {result['error'][:200]}"
        peak = None if poller.peak is None else max(poller.peak - baseline, 0.0)
        report.notebooks.append({"notebook": nb.name, "status": status,
                                 "seconds": result["seconds"], "peak_gpu_gb": peak})
        print(f"{nb.name}: {status} in {result['seconds']:.0f} s", flush=True)


def run_yi(report, batches: list[int], context: int, skip_4bit: bool) -> None:
    import torch

    from yi_helpers.gpu import (decode_roofline_tokens_per_s, decode_tokens_per_s,
                                inference_peak_gb, measure_bandwidth_gbs, memory_record,
                                random_model, record_dict, yi_config)
    from yi_helpers.models import spec, weight_bytes

    model_id = "01-ai/Yi-6B"
    start = time.perf_counter()
    model = random_model(yi_config(model_id), dtype=torch.bfloat16, device="cuda")
    report.notes.append(f"random {model_id} built on the GPU in {time.perf_counter() - start:.0f} s")
    for batch in batches:
        try:
            gb = inference_peak_gb(model, batch, context)
            report.memory.append(record_dict(memory_record(model_id, batch, context, gb)))
        except torch.OutOfMemoryError:
            report.skipped.append(f"memory at batch {batch}: out of GPU memory")
            torch.cuda.empty_cache()
        print(f"memory batch {batch}: done", flush=True)
    bandwidth = measure_bandwidth_gbs("cuda")
    report.notes.append(f"measured copy bandwidth: {bandwidth:.0f} GB/s")
    s = spec(model_id)
    rate = decode_tokens_per_s(model, batch_size=1, prompt_len=128, new_tokens=64)
    roof = decode_roofline_tokens_per_s(weight_bytes(s, 16), s.kv_bytes_per_token(), 128 + 32,
                                        bandwidth)
    report.decode.append({"model": model_id, "weights": "bf16", "batch_size": 1,
                          "tokens_per_s": rate["median"], "min": rate["min"], "max": rate["max"],
                          "roofline_tokens_per_s": roof, "fraction": rate["median"] / roof})
    del model
    torch.cuda.empty_cache()
    if skip_4bit:
        report.skipped.append("4-bit (bitsandbytes): --skip-4bit")
        return
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        report.skipped.append("4-bit: bitsandbytes is not installed (pip install bitsandbytes)")
        return
    from transformers import BitsAndBytesConfig, LlamaForCausalLM
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # bitsandbytes quantizes at load time
        random_model(yi_config(model_id), dtype=torch.bfloat16, device="cpu").save_pretrained(tmp)
        q = LlamaForCausalLM.from_pretrained(
            tmp, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                        bnb_4bit_compute_dtype=torch.bfloat16),
            device_map="cuda").eval()
    gb = inference_peak_gb(q, 1, context)
    report.memory.append(record_dict(memory_record(model_id, 1, context, gb)) | {"weights": "nf4"})
    rate = decode_tokens_per_s(q, batch_size=1, prompt_len=128, new_tokens=64)
    roof = decode_roofline_tokens_per_s(weight_bytes(s, 4), s.kv_bytes_per_token(), 160, bandwidth)
    report.decode.append({"model": model_id, "weights": "nf4", "batch_size": 1,
                          "tokens_per_s": rate["median"], "min": rate["min"], "max": rate["max"],
                          "roofline_tokens_per_s": roof, "fraction": rate["median"] / roof})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "gpu")
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--skip-yi", action="store_true")
    parser.add_argument("--skip-4bit", action="store_true")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--quick", action="store_true",
                        help="skip the slow parts: 4-bit, and batch sizes above 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_4bit = True
        args.batches = [b for b in args.batches if b <= 4] or [1]

    wheels = notebook_wheels()
    try:
        import torch
    except ImportError:
        print("torch is not installed. The GPU runner needs a CUDA build of torch and these "
              "wheels (python tools/wheels.py prints this list):\n" + requirements_text(wheels))
        return 1
    if not torch.cuda.is_available():
        print("No CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to run "
              "here. Run `make gpu-check` on a machine with an NVIDIA GPU and a CUDA build of "
              "torch. It needs these wheels (python tools/wheels.py prints this list):\n"
              + requirements_text(wheels))
        return 0
    problems = check(wheels)
    print(wheel_report(problems), flush=True)

    from yi_helpers.gpu import GpuReport

    report = GpuReport(device=torch.cuda.get_device_name(0), torch_version=torch.__version__,
                       started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    report.notes += [f"wheel {p}" for p in problems]
    if args.skip_notebooks:
        report.skipped.append("notebooks: --skip-notebooks")
    else:
        run_notebooks(report, args.out)
    if args.skip_yi:
        report.skipped.append("Yi-shaped model: --skip-yi")
    else:
        run_yi(report, args.batches, args.context, args.skip_4bit)
    json_path, md_path = report.write(args.out)
    print(report.to_markdown())
    print(f"written: {json_path}, {md_path}")
    return 1 if any(n["status"] != "ok" for n in report.notebooks) else 0


if __name__ == "__main__":
    sys.exit(main())
