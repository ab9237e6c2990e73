"""lm-evaluation-harness tasks in the hub's prompt, and cloze scoring (lesson 06)."""

from __future__ import annotations

import pytest
import torch

from yi_helpers import bench
from yi_helpers.bench import evaluation


# lm_eval's accuracy equals the hub's scorer, question by question: lesson 06 asserts it in its
# check cell and prints it in a cell nbval compares (section 6), so no unit test repeats the run.


@pytest.mark.parametrize("shots", [0, 2])
def test_the_hub_task_renders_the_hub_prompt_with_its_shots(tmp_path, shots):
    """bench.lm_eval_task_dir: the YAML's prompt, rendered as lm_eval renders it, is the prompt
    bench.build_prompt writes with the same number of the subject's examples."""
    import jinja2
    import json

    import yaml

    folder, name = bench.lm_eval_task_dir("en", limit=2, folder=tmp_path, shots=shots)
    task = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8"))
    rows = json.loads((folder / f"{name}_test.json").read_text(encoding="utf-8"))
    for q, row in zip(bench.load_questions("en", limit=2), rows):
        text = jinja2.Template(task["doc_to_text"]).render(**row)
        assert text == bench.build_prompt(q, "en", bench.dev_shots("en", q["subject"], shots))


def test_lm_eval_predictions_reads_each_questions_best_option():
    """The record lm_eval.simple_evaluate(..., log_samples=True) returns, as lesson 06 reads it:
    per question, the option of highest log-likelihood; lm_eval's own accuracy alongside."""
    def sample(qid, lls, prompt):  # one (log-likelihood, is-greedy) pair per option A-D
        return {"doc": {"id": qid}, "filtered_resps": [(ll, False) for ll in lls],
                "arguments": [(prompt, " A")]}

    samples = [sample("q1", [-3.0, -1.0, -2.0, -4.0], "Prompt one"),
               sample("q2", [-0.5, -1.0, -2.0, -4.0], "Prompt two")]
    results = {"samples": {"task": samples}, "results": {"task": {"acc,none": 0.5}}}
    record = bench.lm_eval_predictions(results, "task")
    assert record["preds"] == {"q1": "B", "q2": "A"}
    assert record["n"] == 2 and record["acc"] == 0.5 and record["prompt"] == "Prompt one"


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
    assert template["target_delimiter"] == evaluation.TARGET_DELIMITER
    q = bench.load_questions("en", limit=1)[0]
    doc = {"question": q["question"], "choices": q["choices"]}
    text = jinja2.Template(template["doc_to_text"]).render(**doc)
    assert text == evaluation.format_question(q, "en")
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
    q = bench.load_questions("en", question_set="control")[0]
    one = evaluation.score_cloze(model, tok, q, "en")
    assert len(one["logliks"]) == 4 and one["pred"] in bench.LETTERS
    # the options are scored in one padded batch: the same sums as one option at a time
    prompt = tok(f"Question: {q['question'].strip()}\nAnswer:", add_special_tokens=False)["input_ids"]
    for choice, batched in zip(q["choices"], one["logliks"]):
        option = tok(" " + choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + option])
        with torch.no_grad():
            logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        alone = logprobs[len(prompt) - 1:].gather(-1, ids[0, len(prompt):, None]).sum()
        assert float(alone) == pytest.approx(batched, abs=1e-3)
    with pytest.raises(ValueError, match="English only"):
        bench.load_questions("zh", question_set="control")
