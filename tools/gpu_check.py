"""GPU runner: every notebook on CUDA, and a Yi-6B-shaped model measured. `make gpu-check`.

    python tools/gpu_check.py [--out reports/gpu] [--quick] [--skip-notebooks] [-k 05]
                              [--skip-yi] [--skip-4bit] [--batches 1 4 16 32] [--context 4096]
    python tools/gpu_check.py --dry-run     # no GPU: checks the runner itself in seconds
    python tools/gpu_check.py --yi-standin  # the notebooks with the Yi-6B stand-in (make gpu-check-yi)

On a machine without CUDA it says so and exits 0. On a CUDA machine it first says which of the
wheels the notebooks need are missing (`python tools/wheels.py` lists them all). The Yi-shaped
part alone (`--skip-notebooks`) needs only torch, transformers, accelerate and safetensors, plus
bitsandbytes for its 4-bit row: it runs on a bare CUDA machine before the notebooks' wheels and
the embedded model are brought there.

Budget on one H200, measured (reports/gpu/report.md): the Yi-shaped part with its 4-bit row
77 s (build 2 s); the notebooks 01 19 s, 02 24 s, 03 25 s, 04 62 s, 05 180 s (its four
quantizations), 06 128 s (after 04 and 05: it reloads their folders), 07 40 s: about 9.2 minutes
in all (`make setup` converts the embedded model once before, in 26-48 s). `--quick` ran in one
go in 271 s. `--yi-standin` runs the notebooks with a random Yi-6B-Chat stand-in instead of the
embedded model (lesson 05 with int8 and AWQ 4-bit at group 128: STANDIN_LESSON_PARAMETERS), so
their seconds and peak GPU memory are those of Yi-6B-Chat; not timed on a GPU yet. The Yi-shaped
part adds a bf16 decode row with a static cache and torch.compile (`--skip-compile`: none).
Each part can be skipped: --skip-yi, --skip-notebooks, --skip-4bit, --exclude 05
(repeatable); --quick skips 4-bit, the batch sizes above 4 and lesson 05.
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
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
# the checkout first, for a GPU machine given only tools/wheels.py's wheels (no `pip install -e
# .`), and tools/ (the runner's siblings) also when it is run through runpy
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from wheels import (check, notebook_wheels, report as wheel_report,  # noqa: E402
                    requirements_text, yi_part_wheels)


class GpuMemoryPoller:
    """Peak GPU memory used (GB) while a child process runs, from `nvidia-smi`, every 0.5 s."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak, self._stop = interval, None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def used_gb() -> float | None:
        from yi_helpers.units import GB, MiB

        if not shutil.which("nvidia-smi"):
            return None
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        try:
            return float(out.stdout.split()[0]) * MiB / GB  # nvidia-smi reports MiB
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


#: What the Yi stand-in mode (``--yi-standin``) sets in a lesson's parameters cell besides
#: ``MODEL`` and ``DEVICE``, by notebook name prefix: the parameters a learner with Yi-6B-Chat on
#: one GPU would set too. Lesson 05 quantizes with int8 weight-only and AWQ 4-bit (GPTQ, which
#: calibrates block after block, is the slow one at 6B), with Yi's group size 128 (the 6B
#: stand-in only: the tiny one's 704-wide MLP takes the lesson's default group of 64).
STANDIN_LESSON_PARAMETERS: dict[str, dict] = {
    "05_": {"METHODS": ["int8 weight-only", "AWQ 4-bit"], "GROUP_SIZE": 128},
}


def standin_lesson_parameters(size: str) -> dict[str, dict]:
    """:data:`STANDIN_LESSON_PARAMETERS` for the stand-in of ``size`` ("6b" or "tiny")."""
    if size == "6b":
        return STANDIN_LESSON_PARAMETERS
    return {prefix: {k: v for k, v in extra.items() if k != "GROUP_SIZE"}
            for prefix, extra in STANDIN_LESSON_PARAMETERS.items()}


def lesson_parameters(name: str, parameters: dict, per_lesson: dict[str, dict] | None = None
                      ) -> dict:
    """``parameters`` plus the ``per_lesson`` entries whose key starts notebook ``name``."""
    merged = dict(parameters)
    for prefix, extra in (per_lesson or {}).items():
        if name.startswith(prefix):
            merged.update(extra)
    return merged


def run_notebooks(report, out_dir: Path, *, folder: Path = ROOT / "notebooks", match: str = "",
                  parameters: dict | None = None, exclude: Sequence[str] = (),
                  per_lesson: dict[str, dict] | None = None) -> None:
    """Every lesson notebook in ``folder`` (names containing ``match`` and none of ``exclude``)
    with papermill, one at a time, each with its seconds and the peak GPU memory it added
    (``nvidia-smi``). Excluded ones are listed in ``report.skipped``. ``per_lesson``: extra
    parameters by notebook name prefix (:func:`lesson_parameters`)."""
    from run_notebooks import discover, run

    parameters = {"DEVICE": "cuda"} if parameters is None else parameters
    report.notebook_parameters = {k: str(v) for k, v in parameters.items()}
    for nb in discover(folder, match):
        if any(pattern in nb.name for pattern in exclude):
            report.skipped.append(f"notebook {nb.name}: --exclude")
            continue
        these = lesson_parameters(nb.name, parameters, per_lesson)
        if these != parameters:
            report.notes.append(f"{nb.name} also ran with " + ", ".join(
                f"{k}={v!r}" for k, v in these.items() if k not in parameters))
        baseline = GpuMemoryPoller.used_gb() or 0.0
        with GpuMemoryPoller() as poller:
            result = run(nb, out_dir / "notebooks", these)
        status = "ok" if result["status"] == "ok" else f"FAILED: {result['error'][:200]}"
        peak = None if poller.peak is None else max(poller.peak - baseline, 0.0)
        report.notebooks.append({"notebook": nb.name, "status": status,
                                 "seconds": result["seconds"], "peak_gpu_gb": peak})
        print(f"{nb.name}: {status} in {result['seconds']:.0f} s", flush=True)


def _bitsandbytes_ready(report, skip_4bit: bool) -> bool:
    if skip_4bit:
        report.skipped.append("4-bit (bitsandbytes): --skip-4bit")
        return False
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        report.skipped.append("4-bit: bitsandbytes is not installed (pip install bitsandbytes)")
        return False
    return True


EAGER = "eager, dynamic cache"


def _decode_row(model, model_id: str, weights: str, weight_bytes: float, kv_bytes_per_token: int,
                bandwidth: float, *, compile_with: dict | None = None) -> dict:
    """Batch-1 decode speed next to the roofline. ``compile_with``: ``torch.compile`` keyword
    arguments (backend, mode) for a static-cache decode (:func:`compile_decode` below; its
    compile seconds are recorded apart) instead of the eager one."""
    from yi_helpers.bench.speed import decode_roofline_tokens_per_s, measure_generation

    prompt, new = 128, 64
    forward, compile_s, path = None, None, EAGER
    if compile_with is not None:
        forward, compile_s = compile_decode(model, prompt_len=prompt, new_tokens=new,
                                            **compile_with)
        how = ", ".join(f"{k}={v}" for k, v in compile_with.items() if v)
        path = f"static cache + torch.compile ({how})"
    rate = measure_generation(model, batch_size=1, prompt_len=prompt, new_tokens=new,
                              static_cache=forward is not None,
                              decode_forward=forward)["decode_tok_s"]
    # the average context while decoding: the prompt plus half the new tokens
    roof = decode_roofline_tokens_per_s(weight_bytes, kv_bytes_per_token, prompt + new // 2,
                                        bandwidth)
    return {"model": model_id, "weights": weights, "batch_size": 1, "path": path,
            "compile_s": compile_s,
            "tokens_per_s": rate["median"], "min": rate["min"], "max": rate["max"],
            "roofline_tokens_per_s": roof, "fraction": rate["median"] / roof}


def run_yi(report, batches: list[int], context: int, skip_4bit: bool, *,
           model_id: str = "01-ai/Yi-6B", config=None, device: str = "cuda",
           bandwidth_mb: int = 1024, compile_with: dict | None = None) -> None:
    """The random Yi-shaped model in bf16: peak memory per batch size, copy bandwidth, decode
    speed against the roofline; then the same weights in 4-bit NF4 where bitsandbytes is there.

    ``config`` defaults to ``model_id``'s registry config; a small one (``tiny_yi_config``) on
    ``device="cpu"`` checks this code without a GPU (``--dry-run``, and the tests).
    ``compile_with``: also a bf16 decode row with a static cache and ``torch.compile`` with these
    arguments (``{"backend": "inductor", "mode": "reduce-overhead"}`` on a GPU); ``None``: none.
    """
    import tempfile

    import torch

    from gpu_report import inference_peak_gb, memory_record, record_dict
    from yi_helpers.bench.speed import measure_bandwidth_gbs
    from yi_helpers.models import planned_weight_bytes, spec, spec_from_config
    from yi_shape import random_model, yi_config

    s = spec(model_id) if config is None else spec_from_config(config, id=model_id, kind="base")
    config = yi_config(s) if config is None else config
    four_bit = _bitsandbytes_ready(report, skip_4bit)

    def free() -> None:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = random_model(config, dtype=torch.bfloat16, device=device)
        report.notes.append(f"random {model_id} built on {device} in "
                            f"{time.perf_counter() - start:.0f} s")
        for batch in batches:
            try:
                gb = inference_peak_gb(model, batch, context)
                report.memory.append(record_dict(memory_record(s, batch, context, gb)))
            except torch.OutOfMemoryError:
                report.skipped.append(f"memory at batch {batch}: out of GPU memory")
                free()
            print(f"memory batch {batch}: done", flush=True)
        bandwidth = measure_bandwidth_gbs(device, size_mb=bandwidth_mb)
        report.notes.append(f"measured copy bandwidth: {bandwidth:.0f} GB/s")
        report.decode.append(_decode_row(model, s.id, "bf16", planned_weight_bytes(s, 16),
                                         s.kv_bytes_per_token(), bandwidth))
        print("decode bf16: done", flush=True)
        if compile_with is not None:
            try:
                report.decode.append(_decode_row(
                    model, s.id, "bf16", planned_weight_bytes(s, 16), s.kv_bytes_per_token(),
                    bandwidth, compile_with=compile_with))
            except Exception as err:  # a compiler failure is a finding, not the end of the run
                report.skipped.append(f"compiled decode: {type(err).__name__}: {str(err)[:300]}")
            print("decode bf16, static cache + compile: done", flush=True)
        if four_bit:  # bitsandbytes quantizes while loading: save the same weights first
            model.save_pretrained(tmp)
        del model
        free()
        if not four_bit:
            return
        from transformers import LlamaForCausalLM

        # the NF4 config of QLoRA's base (lesson 04's BitsAndBytesConfig); the
        # folder has no tokenizer, so the weights are loaded directly
        q = LlamaForCausalLM.from_pretrained(
            tmp, dtype=torch.bfloat16, device_map=device,
            quantization_config=bnb_4bit_config("bfloat16")).eval()
    gb = inference_peak_gb(q, 1, context)
    report.memory.append(record_dict(memory_record(s, 1, context, gb, weight_bits=4,
                                                   weights="nf4")))
    report.decode.append(_decode_row(q, s.id, "nf4", planned_weight_bytes(s, 4), s.kv_bytes_per_token(),
                                     bandwidth))
    print("4-bit: done", flush=True)


def run_long_context(report, lengths: list[int], *, model_id: str = "01-ai/Yi-6B-200K",
                     config=None, device: str = "cuda") -> None:
    """A random Yi-200K-shaped model in bf16 prefilled at each length (SDPA, ``logits_to_keep=1``):
    the memory the prefill added against the planner's ``prefill_gb``, prefill tokens/s and the
    time per decoded token at that context (``yi_helpers.long_context.measure_prefill``).
    A length that runs out of memory is recorded as skipped; the longer ones are not tried."""
    import torch

    from yi_helpers.long_context import measure_prefill
    from yi_helpers.models import estimate_memory, spec, spec_from_config
    from yi_helpers.units import GB, MB
    from yi_shape import random_model, yi_config

    s = spec(model_id) if config is None else spec_from_config(config, id=model_id, kind="base")
    config = yi_config(s) if config is None else config
    model = random_model(config, dtype=torch.bfloat16, device=device)
    for n in sorted(lengths):
        ids = torch.randint(3, config.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
        try:
            r = measure_prefill(model, ids, decode_steps=4)
        except torch.OutOfMemoryError:
            report.skipped.append(f"long context at {n:,} tokens: out of GPU memory")
            break
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        planned = estimate_memory(s, 1, n).prefill_gb
        report.long_context.append({
            "model": s.id, "tokens": n, "cache_gb": r["cache_mb"] * MB / GB,
            "added_gb": r["added_mb"] * MB / GB, "planned_gb": planned,
            "prefill_tok_s": r["prefill_tok_s"], "decode_ms_per_token": 1000 * r["decode_s_per_token"]})
        print(f"long context {n}: done", flush=True)
    del model


DRY_RUN_DEVICE = "CPU dry run (tiny Yi-shaped model): checks the runner, measures no GPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default reports/gpu, or build/gpu-dry-run)")
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("-k", "--match", default="",
                        help="only the notebooks whose name contains this (e.g. -k 05)")
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="skip the notebooks whose name contains this (repeatable: "
                             "--exclude 05 --exclude 06)")
    parser.add_argument("--skip-yi", action="store_true")
    parser.add_argument("--skip-4bit", action="store_true")
    parser.add_argument("--skip-compile", action="store_true",
                        help="no static-cache + torch.compile decode row")
    parser.add_argument("--yi-standin", action="store_true",
                        help="run the notebooks with the Yi-6B stand-in (random weights, Yi's "
                             "shapes and conventions; the tiny one with --dry-run) instead of "
                             "the embedded model: seconds and GPU memory at Yi-6B scale")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--long-context", type=int, nargs="+", metavar="TOKENS",
                        default=[16384, 32768, 65536, 131072],
                        help="prompt lengths of the Yi-6B-200K-shaped prefill rows")
    parser.add_argument("--skip-long-context", action="store_true")
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--quick", action="store_true",
                        help="skip the slow parts: 4-bit, batch sizes above 4, lesson 05")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: run the runner itself on the CPU in seconds, with a "
                             "tiny Yi-shaped model and a 256-token context; notebooks only with "
                             "-k (DEVICE='cpu')")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_4bit = True
        args.batches = [b for b in args.batches if b <= 4] or [1]
        args.exclude.append("05_")  # four quantizations: minutes on a GPU too
    if args.out is None:
        args.out = ROOT / "build" / "gpu-dry-run" if args.dry_run else ROOT / "reports" / "gpu"

    wheels = notebook_wheels()
    try:
        import torch
    except ImportError:
        print("torch is not installed. The GPU runner needs a CUDA build of torch and these "
              "wheels (python tools/wheels.py prints this list):\n" + requirements_text(wheels))
        return 1
    if not args.dry_run and not torch.cuda.is_available():
        print("No CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to run "
              "here. Run `make gpu-check` on a machine with an NVIDIA GPU and a CUDA build of "
              "torch (`python tools/gpu_check.py --dry-run` checks the runner on this CPU). It "
              "needs these wheels (python tools/wheels.py prints this list):\n"
              + requirements_text(wheels))
        return 0
    notebooks = not (args.skip_notebooks or (args.dry_run and not args.match))
    # without the notebooks, only the Yi-shaped part's few wheels matter
    needs = "the notebooks need" if notebooks else "the Yi-shaped model part needs"
    problems = check(wheels if notebooks else yi_part_wheels(wheels))
    print(wheel_report(problems, needs), flush=True)

    from gpu_report import GpuReport
    from yi_shape import tiny_yi_config

    device = "cpu" if args.dry_run else "cuda"
    report = GpuReport(device=DRY_RUN_DEVICE if args.dry_run else torch.cuda.get_device_name(0),
                       torch_version=torch.__version__,
                       started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    report.notes += [f"wheel {p}" for p in problems]
    if not notebooks:
        why = "--skip-notebooks" if args.skip_notebooks else "--dry-run without -k"
        report.skipped.append(f"notebooks: {why}")
    elif args.yi_standin:
        from yi_shape import standin

        size = "tiny" if args.dry_run else "6b"
        start = time.perf_counter()
        folder = standin(size)  # built once, then cached
        what = ("Yi-6B-Chat's shapes and conventions, so the seconds and memory are a "
                "Yi-6B-Chat's and the text is noise" if size == "6b" else
                "Yi-Chat's conventions at a tiny width: checks the mode's mechanics, measures "
                "nothing")
        report.notes.append(f"Yi stand-in ({size}) ready in {time.perf_counter() - start:.0f} s "
                            f"at {folder}: random weights with {what}")
        parameters = {"MODEL": str(folder), "DEVICE": device}
        if args.dry_run:  # the CPU checks the mechanics: small sizes
            parameters["QUICK"] = True
        run_notebooks(report, args.out, match=args.match, parameters=parameters,
                      exclude=args.exclude, per_lesson=standin_lesson_parameters(size))
    else:
        run_notebooks(report, args.out, match=args.match, parameters={"DEVICE": device},
                      exclude=args.exclude)
    if args.skip_yi:
        report.skipped.append("Yi-shaped model: --skip-yi")
    elif args.dry_run:  # backend="eager": the compile mechanics without generating code
        run_yi(report, args.batches, min(args.context, 256), args.skip_4bit,
               model_id="tiny-Yi-6B-shaped", config=tiny_yi_config(), device="cpu",
               bandwidth_mb=64, compile_with=None if args.skip_compile else {"backend": "eager"})
    else:  # CUDA graphs replay the whole decode step: no per-kernel launches from Python
        run_yi(report, args.batches, args.context, args.skip_4bit,
               compile_with=None if args.skip_compile else {"backend": "inductor",
                                                             "mode": "reduce-overhead"})
    if args.skip_long_context:
        report.skipped.append("long context: --skip-long-context")
    elif args.dry_run:
        run_long_context(report, [256, 512], model_id="tiny-Yi-6B-200K-shaped",
                         config=tiny_yi_config(), device="cpu")
    else:
        run_long_context(report, args.long_context)
    json_path, md_path = report.write(args.out)
    print(report.to_markdown())
    print(f"written: {json_path}, {md_path}")
    return 1 if any(n["status"] != "ok" for n in report.notebooks) else 0


def bnb_4bit_config(dtype: str = "bfloat16"):
    """bitsandbytes' 4-bit config as QLoRA uses it: NF4, double quantization, compute and
    storage in ``dtype`` (the runner's 4-bit row; bitsandbytes is checked for first)."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, dtype)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_quant_storage=compute)


def compile_decode(model, *, batch_size: int = 1, prompt_len: int = 128, new_tokens: int = 16,
                   backend: str = "inductor", mode: str | None = None) -> tuple:
    """``torch.compile`` the forward for static-cache decode steps and compile it now, with one
    generation at these sizes: returns ``(compiled forward, compile seconds)``.

    ``dynamic=False``: one graph for these shapes (another batch size or cache length compiles
    again). ``backend="eager"`` checks the mechanics in seconds without generating code (tests);
    on a CUDA GPU try ``mode="reduce-overhead"`` (CUDA graphs).
    """
    import torch

    from yi_helpers.bench.speed import random_prompt, timed_greedy

    forward = torch.compile(model.forward, backend=backend, mode=mode, dynamic=False)
    ids = random_prompt(model, batch_size, prompt_len)
    start = time.perf_counter()
    timed_greedy(model, ids, new_tokens, static_cache=True, cache_len=prompt_len + new_tokens,
                 decode_forward=forward)
    return forward, time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
