"""Sweep the GPTQ settings that matter on the embedded model, each next to round-to-nearest on
the same grid (group size and symmetry), and print a markdown table for docs/notes.

    python tools/gptq_sweep.py [--group-size 64] [--out build/gptq_sweep.md] [--quick]

Every row: GPTQ 4-bit through ``yi_helpers.quantize.quantize`` (GPTQModel), reloaded from its
folder and dequantized to float32 (``dense_copy``), perplexity on the held-out English and
Chinese prose (``bench.perplexity``), and the ratio to symmetric RTN at the same group size
(GPTQModel's GPTQ grid is symmetric; its asymmetric folders reload broken, so asymmetric RTN is
printed for reference only). Each GPTQ run takes one to two minutes on a 2-core CPU; run it
alone (two torch processes on 2 cores thrash). ``--quick``: two settings, 4 conversations.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (name, GPTQModel QuantizeConfig fields over quantize()'s defaults, calibration conversations).
#: The first is lesson 05's setting (the hub's calibration set has 32 conversations).
SETTINGS = [
    ("lesson 05: desc_act (columns in activation order)", {}, 32),
    ("GPTQModel's default: act_group_aware", {"desc_act": False, "act_group_aware": True}, 32),
    ("neither (columns in order)", {"desc_act": False, "act_group_aware": False}, 32),
    ("desc_act, damping 0.01", {"damp_percent": 0.01}, 32),
    ("desc_act, damping 0.10", {"damp_percent": 0.10}, 32),
    ("desc_act, 8 conversations", {}, 8),
    ("desc_act, 16 conversations", {}, 16),
]


def perplexities(model, tokenizer) -> dict[str, float]:
    from yi_helpers.bench import perplexity
    from yi_helpers.corpus import heldout_text

    return {lang: perplexity(model, tokenizer, heldout_text(lang))["ppl"] for lang in ("en", "zh")}


def rtn_row(group_size: int, symmetric: bool) -> dict[str, float]:
    from yi_helpers import load
    from yi_helpers.quantize import rtn_quantize_model

    model, tokenizer = load("embedded", device="cpu", dtype="bfloat16")
    model = model.float()  # the bf16 weights, rounded on the grid, in float32 arithmetic
    rtn_quantize_model(model, bits=4, group_size=group_size, symmetric=symmetric)
    return perplexities(model, tokenizer)


def gptq_row(options: dict, n_calibration: int, group_size: int, seed: int = 0) -> dict:
    from yi_helpers import load
    from yi_helpers.quantize import dense_copy, quantize

    with tempfile.TemporaryDirectory() as tmp:
        result = quantize("embedded", "gptq", bits=4, group_size=group_size, out_dir=Path(tmp) / "q",
                          n_calibration=n_calibration, seed=seed, gptq_options=options)
        model, tokenizer = load(result.out_dir, device="cpu")
        ppl = perplexities(dense_copy(model, result.out_dir), tokenizer)
    return ppl | {"seconds": result.seconds, "n": result.n_calibration}


def table(rows: list[dict], rtn_sym: dict, rtn_asym: dict, group_size: int) -> str:
    lines = [f"| setting (GPTQ 4-bit, symmetric, group {group_size}) | conversations | ppl en | "
             "ppl zh | en vs RTN sym | zh vs RTN sym | quantize s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['en']:.2f} | {r['zh']:.2f} | "
                     f"{r['en'] / rtn_sym['en'] - 1:+.1%} | {r['zh'] / rtn_sym['zh'] - 1:+.1%} | "
                     f"{r['seconds']:.0f} |")
    lines.append(f"| RTN, symmetric (the like-for-like baseline) | – | {rtn_sym['en']:.2f} | "
                 f"{rtn_sym['zh']:.2f} | | | |")
    lines.append(f"| RTN, asymmetric (zero point; reference) | – | {rtn_asym['en']:.2f} | "
                 f"{rtn_asym['zh']:.2f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--quick", action="store_true", help="two settings, 4 conversations")
    args = parser.parse_args(argv)

    import torch

    from yi_helpers.machine import cpu_features

    settings = [(n, o, 4) for n, o, _ in SETTINGS[:2]] if args.quick else SETTINGS
    start = time.perf_counter()
    rtn_sym, rtn_asym = rtn_row(args.group_size, True), rtn_row(args.group_size, False)
    rows = []
    for name, options, n in settings:
        rows.append({"name": name, **gptq_row(options, n, args.group_size)})
        print(f"{name}: en {rows[-1]['en']:.2f}, zh {rows[-1]['zh']:.2f}", flush=True)
    text = (f"CPU: {cpu_features()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"{time.perf_counter() - start:.0f} s in all\n\n"
            + table(rows, rtn_sym, rtn_asym, args.group_size))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
