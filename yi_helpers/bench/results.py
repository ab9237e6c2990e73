"""The results of lesson 06 as one JSON record, checked against :data:`SCHEMA`, so a later run,
another machine or a GPU can be compared field by field. The fields (schema version 2), beside
``schema_version``, ``created`` (UTC), ``machine``, ``model`` and ``bandwidth_gbs`` (GB/s):

- ``speed``: :func:`~yi_helpers.bench.speed.measure_generation` records (with
  ``roofline_tok_s`` and ``fraction`` where :func:`~yi_helpers.bench.speed.roofline` added them)
- ``perplexity``: :func:`~yi_helpers.bench.perplexity.perplexity` records
- ``mc``: :func:`~yi_helpers.bench.evaluation.evaluate_mc` records without their ``items``
- ``lm_eval``: :func:`~yi_helpers.bench.evaluation.lm_eval_predictions` records without ``preds``
- ``comparison``: one row per model (``label``, then what the lesson measured); ``notes``
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["SCHEMA", "results_record", "validate", "write_results"]

SCHEMA_VERSION = 2  # 2: speed records name their KV cache ("dynamic" | "static") and "compiled"


def results_record(*, machine: str, model: str, speed: list[dict] = (),
                   roofline_gbs: float | None = None, perplexity: list[dict] = (),
                   mc: list[dict] = (), lm_eval: list[dict] = (), comparison: list[dict] = (),
                   notes: Sequence[str] = ()) -> dict:
    """The lesson's results as one JSON-ready record (without the per-question items)."""
    return {"schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine, "model": model, "bandwidth_gbs": roofline_gbs,
            "speed": list(speed), "perplexity": list(perplexity),
            "mc": [{k: v for k, v in r.items() if k != "items"} for r in mc],
            "lm_eval": [{k: v for k, v in r.items() if k != "preds"} for r in lm_eval],
            "comparison": list(comparison), "notes": list(notes)}


#: Field → type for every section (a dict: the fields of each record in that list).
SCHEMA: dict[str, Any] = {
    "schema_version": int, "created": str, "machine": str, "model": str,
    "bandwidth_gbs": (float, type(None)),
    "speed": {"label": str, "dtype": str, "device": str, "batch_size": int, "prompt_len": int,
              "new_tokens": int, "repeats": int, "cache": str, "compiled": bool,
              "ttft_s": dict, "prefill_tok_s": dict, "decode_tok_s": dict,
              "decode_tok_s_total": dict, "peak_mb": float, "peak_extra_mb": float},
    "perplexity": {"label": str, "lang": str, "ppl": float, "tokens": int, "windows": int},
    "mc": {"label": str, "lang": str, "shots": int, "n": int, "acc_ll": float, "acc_gen": float,
           "unparsed": int, "per_subject": dict},
    "lm_eval": {"lang": str, "shots": int, "n": int, "acc": float},
    "comparison": {"label": str},
    "notes": list,
}


def validate(record: dict) -> None:
    """Raise ``ValueError`` naming the first field that does not match :data:`SCHEMA` (an int
    passes for a float, a bool never for an int)."""
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {SCHEMA_VERSION}, got "
                         f"{record.get('schema_version')!r}")
    for key, kind in SCHEMA.items():
        if key not in record:
            raise ValueError(f"missing field {key!r}")
        if not isinstance(kind, dict):
            if not isinstance(record[key], kind):
                raise ValueError(f"{key!r} should be {kind}, got {type(record[key]).__name__}")
            continue
        if not isinstance(record[key], list):
            raise ValueError(f"{key!r} must be a list of records")
        for i, row in enumerate(record[key]):
            for field, ftype in kind.items():
                if field not in row:
                    raise ValueError(f"{key}[{i}] lacks {field!r}")
                value = row[field]
                if (not isinstance(value, (float, int) if ftype is float else ftype)
                        or isinstance(value, bool) and ftype is not bool):
                    raise ValueError(f"{key}[{i}].{field} should be {ftype}, got "
                                     f"{type(value).__name__}")


def write_results(record: dict, path: str | Path) -> Path:
    """Validate and write the record as JSON (UTF-8, indented)."""
    validate(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
