"""The results of lesson 06 as one JSON record, with a schema a test (and :func:`validate`)
checks, so a later run, another machine or a GPU can be compared field by field.

Fields (schema version 2):

- ``schema_version``, ``created`` (UTC), ``machine``, ``model``, ``bandwidth_gbs``
- ``speed``: one record per setting: ``label``, ``dtype``, ``batch_size``, ``prompt_len``,
  ``new_tokens``, ``repeats``, ``cache`` (``"dynamic"`` or ``"static"``), ``compiled``,
  ``ttft_s`` / ``prefill_tok_s`` / ``decode_tok_s`` / ``decode_tok_s_total`` as
  ``{median, min, max}``, ``peak_mb``, ``peak_extra_mb`` (the high-water mark of the process's
  memory, ``VmHWM`` on Linux, or ``torch.cuda.max_memory_allocated`` on a GPU, above what it held
  before the run); the dtype / batch records also ``roofline_tok_s`` and ``fraction``
- ``perplexity``: ``lang``, ``ppl``, ``nll``, ``tokens``, ``windows``, ``window``, ``stride``
- ``mc``: ``lang``, ``set`` (``"hub"`` or ``"control"``), ``shots``, ``n``, ``acc_ll``,
  ``acc_gen``, ``unparsed``, ``per_subject``, ``seconds``
- ``lm_eval``: ``lang``, ``shots``, ``n``, ``acc``, ``prompt``; ``comparison``: one row per
  model; ``notes``
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["SCHEMA", "results_record", "validate", "write_results"]

SCHEMA_VERSION = 2  # 2: speed records name their KV cache ("dynamic" | "static") and "compiled"

def results_record(*, machine: str, model: str, speed: list[dict] = (), roofline_gbs: float | None = None,
                   perplexity: list[dict] = (), mc: list[dict] = (), lm_eval: list[dict] = (),
                   comparison: list[dict] = (), notes: Sequence[str] = ()) -> dict:
    """The lesson's results as one JSON-ready record (schema in :data:`SCHEMA`)."""
    strip = [{k: v for k, v in r.items() if k != "items"} for r in mc]
    return {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime()),
            "machine": machine, "model": model, "bandwidth_gbs": roofline_gbs,
            "speed": list(speed), "perplexity": list(perplexity), "mc": strip,
            "lm_eval": [{k: v for k, v in r.items() if k != "preds"} for r in lm_eval],
            "comparison": list(comparison), "notes": list(notes)}


#: The JSON schema (version 2): field → type, for every section. ``validate`` checks it.
SCHEMA: dict[str, Any] = {
    "schema_version": int, "created": str, "machine": str, "model": str,
    "bandwidth_gbs": (float, type(None)),
    "speed": {"label": str, "dtype": str, "device": str, "batch_size": int, "prompt_len": int,
              "new_tokens": int, "repeats": int, "cache": str, "compiled": bool, "ttft_s": dict, "prefill_tok_s": dict,
              "decode_tok_s": dict, "decode_tok_s_total": dict, "peak_mb": float,
              "peak_extra_mb": float},
    "perplexity": {"label": str, "lang": str, "ppl": float, "tokens": int, "windows": int},
    "mc": {"label": str, "lang": str, "shots": int, "n": int, "acc_ll": float, "acc_gen": float,
           "unparsed": int, "per_subject": dict},
    "lm_eval": {"lang": str, "shots": int, "n": int, "acc": float},
    "comparison": {"label": str},
    "notes": list,
}


def validate(record: dict) -> None:
    """Raise ``ValueError`` naming the first field that does not match :data:`SCHEMA`."""
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {SCHEMA_VERSION}, got "
                         f"{record.get('schema_version')!r}")
    for key, kind in SCHEMA.items():
        if key not in record:
            raise ValueError(f"missing field {key!r}")
        value = record[key]
        if isinstance(kind, dict):
            if not isinstance(value, list):
                raise ValueError(f"{key!r} must be a list of records")
            for i, row in enumerate(value):
                for field, ftype in kind.items():
                    if field not in row:
                        raise ValueError(f"{key}[{i}] lacks {field!r}")
                    ok = ftype if isinstance(ftype, tuple) else (ftype,)
                    if ftype is float:
                        ok = (float, int)
                    if not isinstance(row[field], ok) or (isinstance(row[field], bool) and ftype is not bool):
                        raise ValueError(f"{key}[{i}].{field} should be {ftype}, got "
                                         f"{type(row[field]).__name__}")
        elif not isinstance(value, kind if isinstance(kind, tuple) else (kind,)):
            raise ValueError(f"{key!r} should be {kind}, got {type(value).__name__}")


def write_results(record: dict, path: str | Path) -> Path:
    """Validate and write the record as JSON (UTF-8, indented)."""
    validate(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
