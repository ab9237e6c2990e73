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


def test_the_yi_mmlu_tasks_write_the_hub_prompt(tmp_path):
    """`lm_eval --include_path DIR --tasks yi_mmlu`: 57 subjects in Yi's prompt, which renders
    exactly as bench.build_prompt writes the same question (the data set itself is on the hub,
    so only the task definitions are checked here)."""
    import jinja2
    import yaml
    from lm_eval.tasks import TaskManager

    folder = bench.lm_eval_yi_mmlu_dir(tmp_path)
    tasks = TaskManager(include_path=str(folder), include_defaults=False).all_tasks
    assert "yi_mmlu" in tasks and "yi_mmlu_anatomy" in tasks
    assert sum(t.startswith("yi_mmlu_") for t in tasks) == 57
    template = yaml.safe_load((folder / "_yi_mmlu_template_yaml").read_text())
    subject = yaml.safe_load((folder / "yi_mmlu_anatomy.yaml").read_text())
    assert template["target_delimiter"] == bench.TARGET_DELIMITER
    q = bench.load_questions("en", limit=1)[0]
    doc = {"question": q["question"], "choices": q["choices"]}
    text = jinja2.Template(template["doc_to_text"]).render(**doc)
    assert text == bench.format_question(q, "en")
    shot = bench.load_questions("en", "dev", limit=1)[0]
    lm_eval_prompt = (subject["description"]
                      + jinja2.Template(template["doc_to_text"]).render(**shot)
                      + template["target_delimiter"] + shot["answer"]
                      + template["fewshot_delimiter"] + text)
    assert lm_eval_prompt == bench.build_prompt({**q, "subject": "anatomy"}, "en", [shot])


def test_cloze_scoring_sees_what_the_letters_hide(embedded):
    """On the everyday control questions the embedded model answers well by cloze (the option's
    text after the bare question); the letter format asks it to map answers onto letters too."""
    model, tok = embedded
    cloze = bench.evaluate_cloze(model, tok, "en", question_set="control")
    assert cloze["n"] == 20 and cloze["set"] == "control"
    low, _ = bench.accuracy_interval(round(cloze["acc"] * cloze["n"]), cloze["n"])
    assert low > 0.25, f"control set by cloze: {cloze['acc']:.2f}, not clearly above chance"
    one = bench.score_cloze(model, tok, bench.load_questions("en", question_set="control")[0], "en")
    assert len(one["logliks"]) == 4 and one["pred"] in bench.LETTERS
    with pytest.raises(ValueError, match="English only"):
        bench.load_questions("zh", question_set="control")
