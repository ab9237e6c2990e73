"""lm-evaluation-harness scores the hub's questions exactly as yi_helpers.bench does."""

from __future__ import annotations

import pytest

from yi_helpers import bench
from yi_helpers.embedded import safetensors_dir


@pytest.mark.slow
def test_lm_eval_accuracy_equals_the_hub_scorer(embedded):
    model, tok = embedded
    ours = bench.evaluate_mc(model, tok, "en", shots=0, limit=20, gen_tokens=1)
    theirs = bench.lm_eval_mc(safetensors_dir(), "en", shots=0, limit=20)
    assert theirs["n"] == ours["n"] == 20
    assert theirs["prompt"] == bench.build_prompt(bench.load_questions("en", limit=20)[0], "en")
    assert theirs["preds"] == {i["id"]: i["pred_ll"] for i in ours["items"]}
    assert theirs["acc"] == pytest.approx(ours["acc_ll"], abs=1e-12)
