"""Multiple-choice accuracy on the hub's questions (:func:`load_questions`), in the MMLU / C-Eval
prompts the Yi team described: by hand (:func:`evaluate_mc`: the option letters;
:func:`evaluate_cloze`: the options' text) and as lm-evaluation-harness tasks
(:func:`lm_eval_task_dir`, :func:`lm_eval_yi_mmlu_dir`, read back by :func:`lm_eval_predictions`).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from itertools import zip_longest
from pathlib import Path
from typing import Sequence

import torch

from ..compat import cache_kwarg, output_cache
from ..corpus import LANGUAGES, data_rows

__all__ = ["LETTERS", "load_questions", "build_prompt", "dev_shots", "evaluate_mc",
           "evaluate_cloze", "accuracy_interval", "lm_eval_task_dir", "lm_eval_yi_mmlu_dir",
           "lm_eval_predictions"]

LETTERS = ("A", "B", "C", "D")

#: The prompts behind the Yi team's scores (01-ai/Yi#221): a header naming the subject, the
#: question with lettered options, then the answer cue. Greedy decoding.
HEADER = {"en": "The following are multiple choice questions (with answers) about {subject}. "
                "Please select the correct answer and output the corresponding option.",
          "zh": "以下是关于 {subject} 的单项选择题，请选出其中的正确答案。"}
ANSWER_CUE = {"en": "The correct answer is:", "zh": "正确答案是:"}
#: lm-evaluation-harness joins the prompt and the option with this (its ``target_delimiter``):
#: the option scored is " A", not "A". Whitespace changes the tokens, so it changes the scores.
TARGET_DELIMITER = " "
SHOT_DELIMITER = "\n\n"


def load_questions(lang: str = "en", split: str = "test", subjects: Sequence[str] | None = None,
                   limit: int | None = None, question_set: str = "hub") -> list[dict]:
    """The hub's questions (``data/mc_{lang}.jsonl``) or, ``question_set="control"``, 20 everyday
    ones anyone answers (English only: where a scorer can be seen to work).

    Records: ``id``, ``subject``, ``split`` (``"dev"``: 5 per subject, the few-shot examples;
    ``"test"``: the questions scored), ``question``, ``choices`` (4), ``answer`` ("A"-"D").
    ``limit`` takes questions round-robin over subjects, so a small subset covers every subject.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    if question_set not in ("hub", "control"):
        raise ValueError(f"question_set must be 'hub' or 'control', got {question_set!r}")
    if question_set == "control" and lang != "en":
        raise ValueError("the control set is English only: use lang='en'")
    name = f"mc_{lang}.jsonl" if question_set == "hub" else f"mc_control_{lang}.jsonl"
    rows = [r for r in data_rows(name) if r["split"] == split and (subjects is None or r["subject"] in subjects)]
    if limit is not None:
        by_subject: dict[str, list[dict]] = {}
        for r in rows:
            by_subject.setdefault(r["subject"], []).append(r)
        rows = [q for group in zip_longest(*by_subject.values()) for q in group if q][:limit]
    return rows


def format_question(q: dict, lang: str) -> str:
    """One question as the prompt shows it: text, lettered options, the answer cue (no answer)."""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, q["choices"]))
    return f"{q['question'].strip()}\n{options}\n{ANSWER_CUE[lang]}"


def header(subject: str, lang: str) -> str:
    """The header of ``subject`` (``high_school_biology``: "... about high school biology. ...")."""
    return HEADER[lang].format(subject=subject.replace("_", " ") if lang == "en" else subject)


def build_prompt(q: dict, lang: str, shots: Sequence[dict] = ()) -> str:
    """Header, each example with its answer, then the question: shaped exactly as
    lm-evaluation-harness builds it, so both tools score the same text."""
    examples = "".join(format_question(s, lang) + TARGET_DELIMITER + s["answer"] + SHOT_DELIMITER
                       for s in shots)
    return header(q["subject"], lang) + SHOT_DELIMITER + examples + format_question(q, lang)


def dev_shots(lang: str, subject: str, k: int, question_set: str = "hub") -> list[dict]:
    """The first ``k`` dev questions of ``subject`` (the few-shot examples, never scored)."""
    if k == 0:
        return []
    shots = load_questions(lang, "dev", subjects=[subject], question_set=question_set)
    if len(shots) < k:
        raise ValueError(f"{subject!r} has {len(shots)} dev questions, fewer than k={k}")
    return shots[:k]


_LETTER = re.compile(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])")


def parse_choice(text: str) -> str | None:
    """The first option letter in a generated answer (" B. Paris" → "B", "Ｂ" too), or None."""
    m = _LETTER.search(text.translate(str.maketrans("ＡＢＣＤ", "ABCD")))
    return m.group(1) if m else None


class PrefixCache:
    """The KV cache of the last prompt, reused for the next one: only the tokens after their
    longest common prefix (the header and the few-shot examples) are computed again."""

    def __init__(self, model):
        self.model, self.ids, self.cache = model, [], None

    def run(self, ids: list[int]):
        """Logits of the last token of ``ids``; ``self.cache`` then holds all of ``ids``."""
        common = 0
        while common < min(len(self.ids), len(ids) - 1) and self.ids[common] == ids[common]:
            common += 1  # at most len(ids) - 1: the last token is always computed
        if common == 0:
            self.cache = None
        elif self.cache.get_seq_length() > common:
            self.cache.crop(common - self.cache.get_seq_length())  # a negative count: to drop
        device = next(self.model.parameters()).device
        out = self.model(input_ids=torch.tensor([ids[common:]], device=device), use_cache=True,
                         logits_to_keep=1, **{cache_kwarg(self.model): self.cache})
        self.cache, self.ids = output_cache(out), list(ids)
        return out.logits[0, -1].float()


@torch.no_grad()
def score_question(model, tokenizer, prompt: str, *, gen_tokens: int = 4,
                   prefix: PrefixCache | None = None) -> dict:
    """Score one prompt both ways from one prefill: by log p(" A") ... log p(" D") (``pred_ll``),
    and by the first option letter in ``gen_tokens`` greedy tokens (``pred_gen``, None: none).

    Each option is tokenized as lm-evaluation-harness does it: prompt and option encoded
    together, the prompt's tokens cut off (" A" and "A" are different tokens)."""
    ctx = tokenizer.encode(prompt)
    whole = [tokenizer.encode(prompt + TARGET_DELIMITER + letter) for letter in LETTERS]
    if not all(len(w) == len(ctx) + 1 for w in whole):
        raise ValueError("each option must be one token after the prompt's tokens; got "
                         f"{[tokenizer.convert_ids_to_tokens(w[len(ctx):]) for w in whole]}")
    prefix = prefix or PrefixCache(model)
    logits = prefix.run(ctx)
    logprobs = logits.log_softmax(-1)
    option_lp = [float(logprobs[w[-1]]) for w in whole]
    generated, cache = [int(logits.argmax())], prefix.cache
    for _ in range(gen_tokens - 1):
        out = model(input_ids=torch.tensor([[generated[-1]]], device=logits.device),
                    use_cache=True, logits_to_keep=1, **{cache_kwarg(model): cache})
        cache = output_cache(out)
        generated.append(int(out.logits[0, -1].argmax()))
    prefix.ids = ctx + generated[:-1]  # the cache now also holds the generated tokens
    text = tokenizer.decode(generated, skip_special_tokens=True)
    return {"option_logprobs": option_lp, "pred_ll": _best(option_lp), "generated": text,
            "pred_gen": parse_choice(text)}


def evaluate_mc(model, tokenizer, lang: str = "en", *, shots: int = 0, limit: int | None = None,
                gen_tokens: int = 4, label: str = "", question_set: str = "hub") -> dict:
    """Accuracy on the ``lang`` test questions with ``shots`` dev examples of each subject.

    Returns ``acc_ll`` (by log-likelihood), ``acc_gen`` (by the generated answer), ``unparsed``
    (generations without a letter, counted wrong), ``n``, ``per_subject`` (log-likelihood),
    ``seconds`` and ``items`` (one per question).
    """
    questions = load_questions(lang, "test", limit=limit, question_set=question_set)
    subjects = list(dict.fromkeys(q["subject"] for q in questions))
    caches = {s: PrefixCache(model) for s in subjects}  # one shared prefix per subject
    start, items = time.perf_counter(), []
    for q in questions:
        prompt = build_prompt(q, lang, dev_shots(lang, q["subject"], shots, question_set))
        r = score_question(model, tokenizer, prompt, gen_tokens=gen_tokens,
                           prefix=caches[q["subject"]])
        items.append({"id": q["id"], "subject": q["subject"], "answer": q["answer"], **r})
    per_subject = {s: _acc([i for i in items if i["subject"] == s], "pred_ll") for s in subjects}
    return {"label": label, "lang": lang, "set": question_set, "shots": shots, "n": len(items),
            "acc_ll": _acc(items, "pred_ll"), "acc_gen": _acc(items, "pred_gen"),
            "unparsed": sum(i["pred_gen"] is None for i in items), "per_subject": per_subject,
            "seconds": round(time.perf_counter() - start, 2), "items": items}


#: Cloze scoring's prompt: the question alone, no lettered options; the answer text follows.
CLOZE_PROMPT = {"en": "Question: {question}\nAnswer:", "zh": "问题：{question}\n答案："}
CLOZE_DELIMITER = {"en": " ", "zh": ""}


@torch.no_grad()
def score_cloze(model, tokenizer, q: dict, lang: str) -> dict:
    """The log-likelihood of each option's *text* after the bare question, summed over its
    tokens (``logliks``); the most likely option is ``pred``.

    The letter format asks a model to know the answer *and* to map it onto "A".."D"; small models
    often cannot do the second. Cloze asks only the first (lm-evaluation-harness scores ARC and
    HellaSwag this way)."""
    device = next(model.parameters()).device
    prompt = CLOZE_PROMPT[lang].format(question=q["question"].strip())
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    options = [tokenizer(CLOZE_DELIMITER[lang] + choice, add_special_tokens=False)["input_ids"]
               for choice in q["choices"]]
    # one batch, padded on the right: padding changes no logit before it (causal attention)
    rows = [p_ids + o for o in options]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id or 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    logprobs = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    token_lp = logprobs.gather(-1, ids[:, 1:, None])[..., 0]
    logliks = [float(token_lp[i, len(p_ids) - 1:len(r) - 1].sum()) for i, r in enumerate(rows)]
    return {"pred": _best(logliks), "logliks": logliks}


def evaluate_cloze(model, tokenizer, lang: str = "en", *, limit: int | None = None,
                   question_set: str = "hub", label: str = "") -> dict:
    """Accuracy by :func:`score_cloze`: ``acc``, ``n``, ``set``, ``seconds``, ``items``."""
    start = time.perf_counter()
    items = [{"id": q["id"], "answer": q["answer"], **score_cloze(model, tokenizer, q, lang)}
             for q in load_questions(lang, "test", limit=limit, question_set=question_set)]
    return {"label": label, "lang": lang, "set": question_set, "n": len(items),
            "acc": _acc(items, "pred"), "seconds": round(time.perf_counter() - start, 2),
            "items": items}


def _best(scores: Sequence[float]) -> str:
    return LETTERS[max(range(len(scores)), key=scores.__getitem__)]


def _acc(items: list[dict], key: str) -> float:
    return sum(i[key] == i["answer"] for i in items) / len(items) if items else float("nan")


def accuracy_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson interval (95% at ``z=1.96``) of an accuracy of ``correct`` / ``n``.

    With 20 questions and 5 right it spans about 11% to 47%: a small set cannot tell a model at
    chance from a weak one. Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not
    collapse to a point at 0 or n correct."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got {correct}/{n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


#: What every lm-eval task here scores: the four option letters, by accuracy of log-likelihood.
_LM_EVAL_SCORING = f"""doc_to_choice: {json.dumps(list(LETTERS))}
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def lm_eval_task_dir(lang: str, *, limit: int | None = None, folder: str | Path | None = None,
                     name: str | None = None, shots: int = 0) -> tuple[Path, str]:
    """Write the hub's questions as an lm-evaluation-harness task (YAML and local JSON) with the
    prompt :func:`build_prompt` writes, ``shots`` examples of each question's subject included.
    Returns (folder, task name), for ``TaskManager(include_path=folder)``."""
    folder = Path(folder or tempfile.mkdtemp(prefix="yi-lm-eval-"))
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"yi_hub_mc_{lang}"
    tests = load_questions(lang, "test", limit=limit)

    def doc(q: dict) -> dict:
        return {"id": q["id"], "subject": q["subject"],
                "header": header(q["subject"], lang), "text": format_question(q, lang),
                "label": LETTERS.index(q["answer"]), "answer": q["answer"]}

    # lm_eval draws few-shot examples from one split; ours depend on the subject, so each test
    # row carries its subject's examples, and the YAML places the first `shots` of them
    rows = [{**doc(q), "shots": [doc(s) for s in dev_shots(lang, q["subject"], 5)]} for q in tests]
    with open(folder / f"{name}_test.json", "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    yaml = f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(folder / f"{name}_test.json"))}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{header}}}}\\n\\n{{% for s in shots[:{shots}] %}}{{{{s.text}}}} {{{{s.answer}}}}\\n\\n{{% endfor %}}{{{{text}}}}"
doc_to_target: label
target_delimiter: {json.dumps(TARGET_DELIMITER)}
{_LM_EVAL_SCORING}"""
    (folder / f"{name}.yaml").write_text(yaml, encoding="utf-8")
    return folder, name


def lm_eval_yi_mmlu_dir(folder: str | Path) -> Path:
    """Write MMLU in the Yi team's prompt as lm-evaluation-harness tasks: the group ``yi_mmlu``
    of 57 ``yi_mmlu_<subject>`` tasks on the hub's ``cais/mmlu`` (subjects read from the
    installed lm_eval's MMLU), the first 5 dev questions as shots. Run it with
    ``lm_eval --include_path FOLDER --tasks yi_mmlu --num_fewshot 5 ...``."""
    import lm_eval

    default = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    subjects = sorted(re.search(r'"dataset_name": "([^"]+)"', p.read_text()).group(1)
                      for p in default.glob("mmlu_*.yaml"))
    if not subjects:
        raise RuntimeError(f"no MMLU subjects found in {default}: is lm_eval installed whole?")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options = "\\n".join(f"{letter}. {{{{choices[{i}]}}}}" for i, letter in enumerate(LETTERS))
    template = f"""dataset_path: cais/mmlu
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: "{{{{question.strip()}}}}\\n{options}\\n{ANSWER_CUE['en']}"
doc_to_target: answer
target_delimiter: {json.dumps(TARGET_DELIMITER)}
fewshot_delimiter: {json.dumps(SHOT_DELIMITER)}
{_LM_EVAL_SCORING}"""
    (folder / "_yi_mmlu_template_yaml").write_text(template, encoding="utf-8")
    for subject in subjects:
        description = header(subject, "en") + SHOT_DELIMITER
        (folder / f"yi_mmlu_{subject}.yaml").write_text(
            f"include: _yi_mmlu_template_yaml\ntask: yi_mmlu_{subject}\n"
            f"dataset_name: {subject}\ndescription: {json.dumps(description)}\n",
            encoding="utf-8")
    tasks = "\n".join(f"  - yi_mmlu_{s}" for s in subjects)
    (folder / "_yi_mmlu.yaml").write_text(
        f"group: yi_mmlu\ntask:\n{tasks}\naggregate_metric_list:\n  - metric: acc\n"
        "    weight_by_size: true\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    return folder


def lm_eval_predictions(results: dict, task: str, *, lang: str = "en", shots: int = 0) -> dict:
    """What ``lm_eval.simple_evaluate(..., log_samples=True)`` answered on ``task``: ``acc``,
    ``n``, ``preds`` (question id: the letter of highest log-likelihood) and the first
    ``prompt``, to compare question by question with :func:`evaluate_mc`."""
    samples = results["samples"][task]
    preds = {s["doc"]["id"]: _best([r[0] for r in s["filtered_resps"]]) for s in samples}
    return {"lang": lang, "shots": shots, "n": len(samples),
            "acc": results["results"][task]["acc,none"], "preds": preds,
            "prompt": samples[0]["arguments"][0][0] if samples else ""}
