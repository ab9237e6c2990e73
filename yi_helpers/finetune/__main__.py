"""``python -m yi_helpers.finetune --config <yaml> [--set key=value ...]``

Runs the same LoRA training as notebook 04, alone or in every process of
``accelerate launch [--cpu] --num_processes N -m yi_helpers.finetune --config <yaml>``.
The config is checked (file, keys, data files) before any model loads. Re-running the same
command resumes from the last checkpoint in ``<output_dir>/checkpoints``.
"""

from __future__ import annotations

import argparse
import sys

import yaml

__all__ = ["main"]


def _parse_set(items: list[str]) -> dict:
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects key=value, got {item!r}")
        values[key.strip()] = yaml.safe_load(raw)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yi_helpers.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="YAML file (examples: yi_helpers/configs/*.yaml, or a shipped "
                             "example's name such as 'embedded')")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable), e.g. --set max_steps=10")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if a checkpoint exists")
    args = parser.parse_args(argv)

    from .config import ConfigError, example_configs, example_path, load_config

    path = args.config
    try:
        if path in example_configs() or f"{path}.yaml" in example_configs():
            path = example_path(path)
        cfg = load_config(path, **_parse_set(args.set))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from .train import train

    result = train(cfg, resume=not args.no_resume)
    if result.adapter_dir is not None:  # rank 0 only
        evals = result.eval_losses
        first = f"{evals[0][1]:.3f}" if evals else "n/a"
        last = f"{evals[-1][1]:.3f}" if evals else "n/a"
        print(f"trained steps {result.started_at_step}..{result.global_step} in "
              f"{result.train_seconds:.0f} s; trainable {result.trainable:,} of "
              f"{result.total:,} ({100 * result.trainable / result.total:.2f}%); "
              f"eval loss {first} -> {last}; adapter: {result.adapter_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
