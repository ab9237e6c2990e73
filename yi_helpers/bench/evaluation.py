"""Quality, measured: perplexity and multiple-choice accuracy.

- :func:`perplexity` is the hub's one perplexity: a sliding window (``window`` tokens, moved by
  ``stride``), each token scored once. Lessons 04, 05 and 06 use the defaults (512 / 256) on
  the packaged held-out texts, so their numbers compare.
- :func:`evaluate_mc` scores the hub's multiple-choice questions (:func:`load_questions`) in
  the MMLU / C-Eval prompt formats the Yi team described, both by the log-likelihood of each
  option letter and by the generated answer. :func:`lm_eval_task_dir` writes the same questions
  and prompts as an lm-evaluation-harness task, and :func:`lm_eval_predictions` reads what
  ``lm_eval.simple_evaluate`` answered on it, question by question.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..compat import cache_kwarg, output_cache
from ..corpus import LANGUAGES, data_path

__all__ = ["LETTERS", "LANGUAGES", "load_questions", "header", "build_prompt", "dev_shots",
           "evaluate_mc", "evaluate_cloze", "accuracy_interval", "perplexity",
           "TextPrediction", "text_prediction", "lm_eval_task_dir", "lm_eval_yi_mmlu_dir",
           "lm_eval_predictions"]

LETTERS = ("A", "B", "C", "D")

#: The prompts the Yi team described for its scores (01-ai/Yi#221): a header naming the subject,
#: the question with lettered options, then the answer cue. Greedy decoding.
MMLU_HEADER = ("The following are multiple choice questions (with answers) about {subject}. "
               "Please select the correct answer and output the corresponding option.")
CEVAL_HEADER = "以下是关于 {subject} 的单项选择题，请选出其中的正确答案。"
ANSWER_CUE = {"en": "The correct answer is:", "zh": "正确答案是:"}
HEADER = {"en": MMLU_HEADER, "zh": CEVAL_HEADER}
#: lm-evaluation-harness joins the prompt and the option with this (its ``target_delimiter``):
#: the option scored is " A", not "A". Whitespace changes the tokens, so it changes the scores.
TARGET_DELIMITER = " "
SHOT_DELIMITER = "\n\n"


# --------------------------------------------------------------------------- questions

#: The question sets: ``"hub"``, school subjects (English and Chinese), and ``"control"``, 20
#: everyday questions any speaker answers (English only): where a scorer can be seen to work.
QUESTION_SETS = ("hub", "control")


def load_questions(lang: str = "en", split: str = "test", subjects: Sequence[str] | None = None,
                   limit: int | None = None, question_set: str = "hub") -> list[dict]:
    """The hub's multiple-choice questions (``yi_helpers/data/mc_{lang}.jsonl``; the control set:
    ``mc_control_{lang}.jsonl``).

    Each record: ``id``, ``subject``, ``split`` (``"dev"``: 5 per subject, the few-shot examples;
    ``"test"``: the questions scored), ``question``, ``choices`` (4 strings), ``answer`` ("A"-"D").
    ``limit`` keeps the first ``limit`` questions taken round-robin over subjects (so a small
    subset still covers every subject).
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    if question_set not in QUESTION_SETS:
        raise ValueError(f"question_set must be one of {QUESTION_SETS}, got {question_set!r}")
    if question_set == "control" and lang != "en":
        raise ValueError("the control set is English only: use lang='en'")
    name = f"mc_{lang}.jsonl" if question_set == "hub" else f"mc_control_{lang}.jsonl"
    rows = [json.loads(line) for line in
            data_path(name).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split and (subjects is None or r["subject"] in subjects)]
    if limit is not None:
        by_subject: dict[str, list[dict]] = {}
        for r in rows:
            by_subject.setdefault(r["subject"], []).append(r)
        mixed = [q for group in _round_robin(list(by_subject.values())) for q in group]
        rows = mixed[:limit]
    return rows


def _round_robin(groups: list[list[dict]]) -> Iterable[list[dict]]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]


def subject_name(subject: str, lang: str) -> str:
    """How the header names a subject: ``high_school_biology`` → ``high school biology``."""
    return subject.replace("_", " ") if lang == "en" else subject


def format_question(q: dict, lang: str) -> str:
    """One question as the prompt shows it: text, lettered options, the answer cue (no answer)."""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, q["choices"]))
    return f"{q['question'].strip()}\n{options}\n{ANSWER_CUE[lang]}"


def header(subject: str, lang: str) -> str:
    return HEADER[lang].format(subject=subject_name(subject, lang))


def build_prompt(q: dict, lang: str, shots: Sequence[dict] = ()) -> str:
    """The full prompt: header, then each example with its answer, then the question.

    Shaped exactly as lm-evaluation-harness builds it (description + examples joined by a blank
    line + question), so both tools score the same text.
    """
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
    """The first option letter in a generated answer (" B. Paris" → "B"), or None."""
    m = _LETTER.search(text.replace("Ａ", "A").replace("Ｂ", "B").replace("Ｃ", "C")
                       .replace("Ｄ", "D"))
    return m.group(1) if m else None


# --------------------------------------------------------------------------- scoring

def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split the way lm-evaluation-harness splits them: trailing
    spaces move to the continuation, the whole string is encoded, the context tokens cut off."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


class PrefixCache:
    """Reuses the KV cache of a shared prompt prefix (the header and the few-shot examples) across
    questions: only the tokens after the longest common prefix are computed again."""

    def __init__(self, model):
        self.model, self.ids, self.cache = model, [], None

    def run(self, ids: list[int]):
        """Logits of the last token of ``ids`` and a cache holding all of ``ids``."""
        common = 0
        for a, b in zip(self.ids, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # always compute at least the last token
        device = next(self.model.parameters()).device
        if self.cache is None or common == 0:
            self.cache, common = None, 0
        else:
            extra = self.cache.get_seq_length() - common
            if extra:
                self.cache.crop(-extra)  # transformers 5: a negative count of tokens to drop
        out = self.model(input_ids=torch.tensor([ids[common:]], device=device), use_cache=True,
                         logits_to_keep=1, **{cache_kwarg(self.model): self.cache})
        self.cache, self.ids = output_cache(out), list(ids)
        return out.logits[0, -1].float()


@torch.no_grad()
def score_question(model, tokenizer, prompt: str, *, gen_tokens: int = 4,
                   prefix: PrefixCache | None = None) -> dict:
    """Score one prompt both ways from a single prefill.

    - log-likelihood: log p(" A"), ..., log p(" D") after the prompt; the prediction is the best.
    - generated: ``gen_tokens`` greedy tokens continuing the prompt; the prediction is the first
      option letter in them (None when there is none: counted wrong).
    """
    pairs = [encode_pair(tokenizer, prompt, TARGET_DELIMITER + letter) for letter in LETTERS]
    ctx = pairs[0][0]
    if not all(p[0] == ctx and len(p[1]) == 1 for p in pairs):
        raise ValueError("each option must be one token after the same context; "
                         f"got {[tokenizer.convert_ids_to_tokens(p[1]) for p in pairs]}")
    prefix = prefix or PrefixCache(model)
    logits = prefix.run(ctx)
    logprobs = logits.log_softmax(-1)
    option_lp = [float(logprobs[p[1][0]]) for p in pairs]
    # greedy continuation from the same cache
    device = logits.device
    generated = [int(logits.argmax())]
    cache = prefix.cache
    for _ in range(gen_tokens - 1):
        out = model(input_ids=torch.tensor([[generated[-1]]], device=device), use_cache=True,
                    logits_to_keep=1, **{cache_kwarg(model): cache})
        cache = output_cache(out)
        generated.append(int(out.logits[0, -1].argmax()))
    prefix.ids = ctx + generated[:-1]  # the cache now also holds the generated tokens
    text = tokenizer.decode(generated, skip_special_tokens=True)
    return {"option_logprobs": option_lp, "pred_ll": LETTERS[max(range(4), key=option_lp.__getitem__)],
            "generated": text, "pred_gen": parse_choice(text), "prompt_tokens": len(ctx)}


def evaluate_mc(model, tokenizer, lang: str = "en", *, shots: int = 0, limit: int | None = None,
                gen_tokens: int = 4, label: str = "", progress: bool = False,
                question_set: str = "hub") -> dict:
    """Accuracy on the hub's ``lang`` test questions with ``shots`` dev examples per subject
    (``question_set="control"``: the everyday control questions, see :data:`QUESTION_SETS`).

    Returns a record: ``acc_ll`` (log-likelihood of the option letter), ``acc_gen`` (the generated
    answer), ``unparsed`` (generations without an option letter, counted wrong), ``n``,
    ``per_subject`` accuracies (log-likelihood), ``seconds`` and ``items`` (one per question).
    """
    questions = load_questions(lang, "test", limit=limit, question_set=question_set)
    subjects = sorted({q["subject"] for q in questions}, key=[q["subject"] for q in questions].index)
    items = []
    start = time.perf_counter()
    iterator: Iterable[dict] = questions
    if progress:
        from ..system import progress as bar
        iterator = bar(questions, desc=f"{lang} {shots}-shot", total=len(questions))
    caches = {s: PrefixCache(model) for s in subjects}  # one shared prefix per subject
    for q in iterator:
        prompt = build_prompt(q, lang, dev_shots(lang, q["subject"], shots, question_set))
        r = score_question(model, tokenizer, prompt, gen_tokens=gen_tokens,
                           prefix=caches[q["subject"]])
        items.append({"id": q["id"], "subject": q["subject"], "answer": q["answer"], **r})
    seconds = time.perf_counter() - start
    n = len(items)
    per_subject = {s: _acc([i for i in items if i["subject"] == s], "pred_ll") for s in subjects}
    return {"label": label, "lang": lang, "set": question_set, "shots": shots, "n": n,
            "acc_ll": _acc(items, "pred_ll"), "acc_gen": _acc(items, "pred_gen"),
            "unparsed": sum(i["pred_gen"] is None for i in items), "chance": 0.25,
            "per_subject": per_subject, "seconds": round(seconds, 2), "items": items}


#: Cloze scoring's prompt: the question alone, no lettered options; the answer text follows.
CLOZE_PROMPT = {"en": "Question: {question}\nAnswer:", "zh": "问题：{question}\n答案："}
CLOZE_DELIMITER = {"en": " ", "zh": ""}


@torch.no_grad()
def score_cloze(model, tokenizer, q: dict, lang: str) -> dict:
    """Cloze scoring of one question: the log-likelihood of each option's *text* after the bare
    question (no letters shown), summed over its tokens; the most likely option is the answer.

    The letter format asks a model to know the answer *and* to map it onto "A".."D"; small models
    often cannot do the second. Cloze asks only the first (lm-evaluation-harness scores ARC and
    HellaSwag this way). Returns ``pred`` (a letter) and ``logliks`` (one per option)."""
    device = next(model.parameters()).device
    prompt = CLOZE_PROMPT[lang].format(question=q["question"].strip())
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    options = [tokenizer(CLOZE_DELIMITER[lang] + choice, add_special_tokens=False)["input_ids"]
               for choice in q["choices"]]
    # one forward pass for all options: a batch padded on the right, where padding changes no
    # logit before it (causal attention)
    width = len(p_ids) + max(map(len, options))
    pad = [tokenizer.pad_token_id or 0]
    ids = torch.tensor([p_ids + o + pad * (width - len(p_ids) - len(o)) for o in options], device=device)
    mask = torch.tensor([[1] * (len(p_ids) + len(o)) + [0] * (width - len(p_ids) - len(o))
                         for o in options], device=device)
    logprobs = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    token_lp = logprobs.gather(-1, ids[:, 1:, None])[..., 0]
    logliks = [float(token_lp[i, len(p_ids) - 1:len(p_ids) - 1 + len(o)].sum())
               for i, o in enumerate(options)]
    return {"pred": LETTERS[max(range(len(logliks)), key=logliks.__getitem__)], "logliks": logliks}


def evaluate_cloze(model, tokenizer, lang: str = "en", *, limit: int | None = None,
                   question_set: str = "hub", label: str = "") -> dict:
    """Accuracy by :func:`score_cloze` on the ``lang`` test questions of ``question_set``.
    Returns ``acc``, ``n``, ``chance`` (0.25), ``set``, ``seconds`` and ``items``."""
    questions = load_questions(lang, "test", limit=limit, question_set=question_set)
    start = time.perf_counter()
    items = [{"id": q["id"], "answer": q["answer"], **score_cloze(model, tokenizer, q, lang)}
             for q in questions]
    return {"label": label, "lang": lang, "set": question_set, "scoring": "cloze",
            "n": len(items), "acc": _acc(items, "pred"), "chance": 0.25,
            "seconds": round(time.perf_counter() - start, 2), "items": items}


def _acc(items: list[dict], key: str) -> float:
    return sum(i[key] == i["answer"] for i in items) / len(items) if items else float("nan")


# --------------------------------------------------------------------------- perplexity

#: The window and stride every lesson's perplexity uses (the held-out English text fits one
#: window; the Chinese one, longer in tokens, takes a few, each token seeing >= 256 before it).
PERPLEXITY_WINDOW = 512
PERPLEXITY_STRIDE = 256


@torch.no_grad()
def accuracy_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (``z=1.96``) Wilson confidence interval of an accuracy of ``correct`` / ``n``.

    Where the true accuracy could be, given the questions asked: with 20 questions and 5 right
    (25%) it is anywhere from about 11% to 47%, so a small set cannot tell a model at chance
    from a weak one. Wilson's interval stays inside [0, 1] and behaves at 0 or n correct, where
    the textbook ``p ± z·sqrt(p(1-p)/n)`` collapses to a point."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got {correct}/{n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def perplexity(model, tokenizer, text: str, *, window: int = PERPLEXITY_WINDOW,
               stride: int | None = None, max_tokens: int | None = None, label: str = "",
               lang: str = "") -> dict:
    """Perplexity of ``text``: exp of the mean next-token loss (nats), with a sliding window.

    The text is tokenized as it is (no special tokens added). Windows of ``window`` tokens start
    every ``stride`` tokens (default ``window // 2``); each token is scored once, in the first
    window where it is new, so every token after the first ``window`` has at least
    ``window - stride`` tokens of context; the very first token is never scored (nothing
    predicts it). ``max_tokens`` keeps only the text's first tokens (a faster check).

    Returns a record: ``ppl``, ``nll`` (mean, nats), ``tokens`` (scored), ``windows``,
    ``window``, ``stride``, ``label``, ``lang``.
    """
    stride = window // 2 if stride is None else stride
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    if len(ids) < 2:
        raise ValueError("text is too short for perplexity (needs at least 2 tokens)")
    device = next(model.parameters()).device
    total, counted, windows, prev_end = 0.0, 0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        new = end - prev_end  # tokens not scored yet
        chunk = torch.tensor([ids[begin:end]], device=device)
        logprobs = model(input_ids=chunk).logits[0, :-1].float().log_softmax(-1)
        targets = chunk[0, 1:]
        token_lp = logprobs.gather(-1, targets[:, None])[:, 0]
        first = max(len(targets) - new, 0)  # the window's first token has no context: never scored
        total -= float(token_lp[first:].sum())
        counted += len(targets) - first
        windows += 1
        prev_end = end
        if end == len(ids):
            break
    nll = total / counted
    return {"label": label, "lang": lang, "ppl": math.exp(nll), "nll": nll, "tokens": counted,
            "windows": windows, "window": window, "stride": stride}



# --------------------------------------------------------------------------- lm-evaluation-harness

#: How many times better than a uniform guess over the vocabulary a model must predict held-out
#: text to count as trained: a random model scores about 1 (its perplexity is about its
#: vocabulary size); SmolLM2-135M about 1,500 on the hub's English text, a real Yi far more.
TRAINED_VS_CHANCE = 100.0


@dataclass(frozen=True)
class TextPrediction:
    """How well a model predicts held-out text, next to chance (see :func:`text_prediction`)."""

    perplexity: float
    vocab_size: int

    @property
    def vs_chance(self) -> float:
        """Vocabulary size / perplexity: 1 for a uniform guess over the vocabulary."""
        return self.vocab_size / self.perplexity

    @property
    def trained(self) -> bool:
        """True when the model predicts the text at least ``TRAINED_VS_CHANCE`` times better
        than chance: claims about what training taught it can be checked."""
        return self.vs_chance >= TRAINED_VS_CHANCE

    def __str__(self) -> str:
        verdict = ("a trained model: the checks of what it learned apply" if self.trained else
                   "close to chance, random weights for example: the checks that need a "
                   "trained model are skipped")
        return (f"held-out perplexity {self.perplexity:,.0f}, vocabulary {self.vocab_size:,}: "
                f"vocabulary / perplexity = {self.vs_chance:,.0f} (1 is a uniform guess), "
                f"{verdict}")


def text_prediction(model, tokenizer, text: str | None = None, *,
                    perplexity_value: float | None = None) -> TextPrediction:
    """Measure whether a model has learned language: its :func:`perplexity` on ``text`` (default:
    the hub's held-out English prose) against its vocabulary size. Lessons condition the claims
    that hold only for a trained model (sampling diversity, facts learned, quantization rankings)
    on ``.trained``, a measured property, never on the model's name. Pass ``perplexity_value``
    when it was measured already on that text."""
    if perplexity_value is None:
        from ..corpus import heldout_text

        perplexity_value = perplexity(model, tokenizer, text or heldout_text("en"))["ppl"]
    return TextPrediction(float(perplexity_value), len(tokenizer))


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
    """Write a custom lm-evaluation-harness task for the hub's questions: a YAML file and local
    JSON data, with the same header, question format, answer cue and option continuation
    (" A") as :func:`build_prompt`, and ``shots`` examples of each question's subject before it.
    Returns (folder, task name), for ``TaskManager(include_path=folder)``."""
    folder = Path(folder or tempfile.mkdtemp(prefix="yi-lm-eval-"))
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"yi_hub_mc_{lang}"
    tests = load_questions(lang, "test", limit=limit)
    examples = {q["subject"]: dev_shots(lang, q["subject"], 5) for q in tests}

    def doc(q: dict) -> dict:
        return {"id": q["id"], "subject": q["subject"],
                "header": header(q["subject"], lang), "text": format_question(q, lang),
                "label": LETTERS.index(q["answer"]), "answer": q["answer"]}

    # lm_eval draws few-shot examples from one split; our examples depend on the subject, so each
    # test row carries its own subject's examples, and the YAML places the first `shots` of them
    rows = [{**doc(q), "shots": [doc(s) for s in examples[q["subject"]]]} for q in tests]
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
    """Write lm-evaluation-harness tasks for MMLU in the Yi team's prompt (``yi_mmlu``, a group
    of 57 ``yi_mmlu_<subject>`` tasks on the hub's ``cais/mmlu``): the subject header with Yi's
    second sentence, the lettered options, ``The correct answer is:``, and ``" A"`` as the scored
    continuation, as :func:`build_prompt` writes them; the first 5 dev questions are the shots.
    Run it with ``lm_eval --include_path FOLDER --tasks yi_mmlu --num_fewshot 5 ...``.
    The subjects are read from the installed lm_eval's own MMLU tasks."""
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
    preds = {}
    for sample in samples:
        lls = [r[0] for r in sample["filtered_resps"]]
        preds[sample["doc"]["id"]] = LETTERS[max(range(len(lls)), key=lls.__getitem__)]
    return {"lang": lang, "shots": shots, "n": len(samples),
            "acc": results["results"][task]["acc,none"], "preds": preds,
            "prompt": samples[0]["arguments"][0][0] if samples else ""}
