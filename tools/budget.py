"""The test budget's ledger: each lesson's runs in a pytest session against its allocation in
docs/CONTRIBUTING.md's budget table, on a common scale.

A timing is never a test. The repository's root ``conftest.py`` collects the seconds of each
lesson's runs and of its slowest cell, prints the ledger at the end of the run (over-budget
lines marked) and writes it to :data:`LEDGER` (``make budget`` prints it again); it never changes
the run's exit status.

Allocations are held to the slowest host kind we run on (the *reference host*). A short, fixed
calibration (:func:`calibrate`: the float32 and bfloat16 matrix products and the batch-1 decode
matrix-vector products the lessons spend their time in) gives this host's *speed factor*: its
seconds divided by the reference host's seconds for the same work. A run's reference seconds are
its seconds divided by that factor; those are what the ledger compares with the allocations.

    python tools/budget.py --calibrate     # this host's calibration and speed factor
    python tools/budget.py                 # the ledger of the last run (make budget)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

__all__ = ["BUDGET_DOC", "CELL_LIMIT_S", "LEDGER", "LESSON_LIMIT_S", "REFERENCE", "calibrate",
           "calibrate_in_subprocess", "ledger_lines", "lesson_of", "over_budget", "read_budget",
           "speed_factor"]

ROOT = Path(__file__).resolve().parents[1]
BUDGET_DOC = ROOT / "docs" / "CONTRIBUTING.md"
LEDGER = ROOT / "build" / "budget" / "ledger.json"
#: DEVELOPERS' rules, in reference seconds: a lesson's full run and any one of its cells
LESSON_LIMIT_S = 150.0
CELL_LIMIT_S = 60.0
#: :func:`calibrate`'s seconds per part on the reference host (the slowest kind: AMD EPYC, AVX2
#: only, no native bf16; median of five calibrations, torch 2.13.0, 2 threads)
REFERENCE = {"matmul_fp32": 0.76, "matmul_bf16": 1.14, "decode_fp32": 0.92}


def calibrate(repeats: int = 3) -> dict[str, float]:
    """Seconds for a fixed piece of each kind of work the lessons do, best of ``repeats``:
    ``matmul_fp32`` and ``matmul_bf16`` (prefill and training: a 512-token batch through a
    576 x 1536 MLP, as in the embedded model), ``decode_fp32`` (generation: one token's vector
    through the same layers and the 49,152-row output head, memory-bound). About 5-10 s."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 576, generator=gen)
    w_up = torch.randn(1536, 576, generator=gen) / 24
    w_down = torch.randn(576, 1536, generator=gen) / 40
    head = torch.randn(49152, 576, generator=gen) / 24
    v = torch.randn(1, 576, generator=gen)

    def prefill(dtype, n):
        a, up, down = x.to(dtype), w_up.to(dtype), w_down.to(dtype)
        for _ in range(n):
            torch.nn.functional.linear(torch.nn.functional.linear(a, up).relu(), down)

    def decode(n):
        for _ in range(n):
            for _ in range(30):  # the embedded model's 30 blocks' MLPs
                torch.nn.functional.linear(torch.nn.functional.linear(v, w_up).relu(), w_down)
            torch.nn.functional.linear(v, head)

    work = {"matmul_fp32": lambda: prefill(torch.float32, 60),
            "matmul_bf16": lambda: prefill(torch.bfloat16, 12),
            "decode_fp32": lambda: decode(60)}
    seconds = {}
    with torch.inference_mode():
        for name, job in work.items():
            job()  # warm-up: thread pool, caches, kernel choice
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                job()
                best = min(best, time.perf_counter() - start)
            seconds[name] = best
    return seconds


def calibrate_in_subprocess() -> dict[str, float]:
    """:func:`calibrate` in a fresh Python process: at the end of a long pytest run the same work
    took about 20 % longer inside the pytest process than in a fresh one (cause not found)."""
    import subprocess

    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--calibrate", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def speed_factor(seconds: dict[str, float], reference: dict[str, float] = REFERENCE) -> float:
    """This host's seconds over the reference host's, the geometric mean over the parts:
    1.0 on the reference host, below 1 on a faster one."""
    return statistics.geometric_mean(seconds[k] / reference[k] for k in reference)


def read_budget(text: str | None = None) -> dict[str, float]:
    """The budget table of docs/CONTRIBUTING.md (between the ``budget-table`` markers): part →
    allocated reference seconds. Parts: ``setup``, ``unit``, ``extra``, and for each lesson
    ``NN full`` (nbval, the embedded model), ``NN smoke`` (papermill, quick sizes on the Yi
    stand-in) and ``NN recipe`` (the recipe cells alone)."""
    text = BUDGET_DOC.read_text(encoding="utf-8") if text is None else text
    _, _, rest = text.partition("<!-- budget-table -->")
    table, end, _ = rest.partition("<!-- /budget-table -->")
    if not end:
        raise ValueError("docs/CONTRIBUTING.md has no <!-- budget-table --> ... "
                         "<!-- /budget-table --> block")
    budget = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"\d+", cells[1]):
            budget[cells[0].strip("` ")] = float(cells[1])
    return budget


def lesson_of(nodeid: str) -> tuple[str, str] | None:
    """(lesson number, "full" | "smoke" | "recipe") of a notebook test's node id; None for other
    tests. "full": one of the lesson's cells under nbval; "smoke": its run on the Yi stand-in;
    "recipe": its recipe cells run alone, without yi_helpers (tests/test_recipes.py)."""
    m = re.match(r"(?:.*/)?notebooks/(\d\d)_[^/]*\.ipynb::", nodeid)  # nbval: one item a cell
    if m:
        return m.group(1), "full"
    m = re.search(r"test_notebook_smoke_run\[(\d\d)_", nodeid)
    if m:
        return m.group(1), "smoke"
    m = re.search(r"test_recipe_runs_without_yi_helpers\[(\d\d)_", nodeid)
    return (m.group(1), "recipe") if m else None


def over_budget(seconds: dict[str, float], budget: dict[str, float], factor: float = 1.0,
                slowest_cell: dict[str, float] | None = None) -> list[str]:
    """One line per run whose reference seconds (``seconds / factor``) exceed its allocation,
    have no allocation, or whose slowest cell exceeds :data:`CELL_LIMIT_S`."""
    problems = []
    for key, took in sorted(seconds.items()):
        ref = took / factor
        if key not in budget:
            problems.append(f"{key}: {ref:.0f} s, and no allocation in docs/CONTRIBUTING.md")
        elif ref > budget[key]:
            problems.append(f"{key}: {ref:.0f} s, over its allocation of {budget[key]:.0f} s")
    for key, took in sorted((slowest_cell or {}).items()):
        if took / factor > CELL_LIMIT_S:
            problems.append(f"{key}: one cell took {took / factor:.0f} s, over {CELL_LIMIT_S:.0f} s")
    return problems


def ledger_lines(ledger: dict) -> list[str]:
    """The ledger as text: one line per run (seconds here, reference seconds, allocation),
    then the over-budget lines, each starting with ``OVER BUDGET``."""
    factor = ledger["factor"]
    budget = ledger["budget"]
    cells = ledger.get("slowest_cell", {})
    lines = [f"speed factor {factor:.2f} (this host's calibration / the reference host's; "
             f"reference s = s here / factor)",
             f"{'run':>10} {'s here':>7} {'ref s':>6} {'alloc':>6} {'slowest cell, ref s':>20}"]
    for key, took in sorted(ledger["seconds"].items()):
        alloc = f"{budget[key]:6.0f}" if key in budget else "     -"
        cell = f"{cells[key] / factor:20.1f}" if key in cells else ""
        lines.append(f"{key:>10} {took:7.1f} {took / factor:6.1f} {alloc}{cell}")
    lines += [f"OVER BUDGET (reported, not a failure): {p}" for p in
              over_budget(ledger["seconds"], budget, factor, cells)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The test budget's ledger (docs/CONTRIBUTING.md).")
    parser.add_argument("--calibrate", action="store_true",
                        help="time the calibration here and print the speed factor")
    parser.add_argument("--json", action="store_true", help="with --calibrate: print JSON only")
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    args = parser.parse_args(argv)
    if args.calibrate:
        seconds = calibrate()
        if args.json:
            print(json.dumps(seconds))
            return 0
        print(json.dumps({k: round(v, 3) for k, v in seconds.items()}))
        print(f"speed factor {speed_factor(seconds):.2f}")
        return 0
    if not args.ledger.exists():
        print(f"No ledger at {args.ledger}: `make test` (or a pytest run of a lesson) writes it.",
              file=sys.stderr)
        return 1
    ledger = json.loads(args.ledger.read_text(encoding="utf-8"))
    print(f"ledger of the run of {ledger['when']} on {ledger['host']}")
    print("\n".join(ledger_lines(ledger)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
