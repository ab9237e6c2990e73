"""Benchmarks, measured honestly: speed and memory, perplexity, multiple-choice accuracy.

Every function returns plain records (dicts of numbers and strings) that a notebook can print,
plot and write as JSON (``write_results``, schema ``SCHEMA_VERSION``). Timings are never single:
one warm-up, then ``repeats`` runs, reported as the median with min and max.

- Speed: ``measure_generation`` times the prefill (time to first token) and the decode steps of
  greedy generation with the KV cache; ``roofline`` turns a decode speed into the fraction of the
  memory-bandwidth upper bound (:mod:`yi_helpers.gpu` measures the bandwidth).
- Memory: peak RSS on a CPU (``/proc/self/status`` VmHWM, reset through ``clear_refs``), peak
  allocated memory on a GPU.
- Quality: ``perplexity`` with a sliding window; ``evaluate_mc`` scores the hub's multiple-choice
  questions (``load_questions``) in the MMLU / C-Eval prompt formats the Yi team described, both
  by the log-likelihood of each option letter and by the generated answer; ``lm_eval_mc`` runs
  the same questions and prompts through lm-evaluation-harness.
"""

from __future__ import annotations

import json
import math
import logging
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from .corpus import data_path
from .gpu import _cache_kwarg, _out_cache, _sync

SCHEMA_VERSION = 2  # 2: speed records name their KV cache ("dynamic" | "static") and "compiled"
LETTERS = ("A", "B", "C", "D")
LANGUAGES = ("en", "zh")

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

def load_questions(lang: str = "en", split: str = "test", subjects: Sequence[str] | None = None,
                   limit: int | None = None) -> list[dict]:
    """The hub's multiple-choice questions (``yi_helpers/data/mc_{lang}.jsonl``).

    Each record: ``id``, ``subject``, ``split`` (``"dev"``: 5 per subject, the few-shot examples;
    ``"test"``: the questions scored), ``question``, ``choices`` (4 strings), ``answer`` ("A"-"D").
    ``limit`` keeps the first ``limit`` questions taken round-robin over subjects (so a small
    subset still covers every subject).
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    rows = [json.loads(line) for line in
            data_path(f"mc_{lang}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
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


def dev_shots(lang: str, subject: str, k: int) -> list[dict]:
    """The first ``k`` dev questions of ``subject`` (the few-shot examples, never scored)."""
    if k == 0:
        return []
    shots = load_questions(lang, "dev", subjects=[subject])
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

def _encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split the way lm-evaluation-harness splits them: trailing
    spaces move to the continuation, the whole string is encoded, the context tokens cut off."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


class _PrefixCache:
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
                         logits_to_keep=1, **{_cache_kwarg(self.model): self.cache})
        self.cache, self.ids = _out_cache(out), list(ids)
        return out.logits[0, -1].float()


@torch.no_grad()
def score_question(model, tokenizer, prompt: str, *, gen_tokens: int = 4,
                   prefix: _PrefixCache | None = None) -> dict:
    """Score one prompt both ways from a single prefill.

    - log-likelihood: log p(" A"), ..., log p(" D") after the prompt; the prediction is the best.
    - generated: ``gen_tokens`` greedy tokens continuing the prompt; the prediction is the first
      option letter in them (None when there is none: counted wrong).
    """
    pairs = [_encode_pair(tokenizer, prompt, TARGET_DELIMITER + letter) for letter in LETTERS]
    ctx = pairs[0][0]
    if not all(p[0] == ctx and len(p[1]) == 1 for p in pairs):
        raise ValueError("each option must be one token after the same context; "
                         f"got {[tokenizer.convert_ids_to_tokens(p[1]) for p in pairs]}")
    prefix = prefix or _PrefixCache(model)
    logits = prefix.run(ctx)
    logprobs = logits.log_softmax(-1)
    option_lp = [float(logprobs[p[1][0]]) for p in pairs]
    # greedy continuation from the same cache
    device = logits.device
    generated = [int(logits.argmax())]
    cache = prefix.cache
    for _ in range(gen_tokens - 1):
        out = model(input_ids=torch.tensor([[generated[-1]]], device=device), use_cache=True,
                    logits_to_keep=1, **{_cache_kwarg(model): cache})
        cache = _out_cache(out)
        generated.append(int(out.logits[0, -1].argmax()))
    prefix.ids = ctx + generated[:-1]  # the cache now also holds the generated tokens
    text = tokenizer.decode(generated, skip_special_tokens=True)
    return {"option_logprobs": option_lp, "pred_ll": LETTERS[max(range(4), key=option_lp.__getitem__)],
            "generated": text, "pred_gen": parse_choice(text), "prompt_tokens": len(ctx)}


def evaluate_mc(model, tokenizer, lang: str = "en", *, shots: int = 0, limit: int | None = None,
                gen_tokens: int = 4, label: str = "", progress: bool = False) -> dict:
    """Accuracy on the hub's ``lang`` test questions with ``shots`` dev examples per subject.

    Returns a record: ``acc_ll`` (log-likelihood of the option letter), ``acc_gen`` (the generated
    answer), ``unparsed`` (generations without an option letter, counted wrong), ``n``,
    ``per_subject`` accuracies (log-likelihood), ``seconds`` and ``items`` (one per question).
    """
    questions = load_questions(lang, "test", limit=limit)
    subjects = sorted({q["subject"] for q in questions}, key=[q["subject"] for q in questions].index)
    items = []
    start = time.perf_counter()
    iterator: Iterable[dict] = questions
    if progress:
        from .system import progress as bar
        iterator = bar(questions, desc=f"{lang} {shots}-shot", total=len(questions))
    caches = {s: _PrefixCache(model) for s in subjects}  # one shared prefix per subject
    for q in iterator:
        prompt = build_prompt(q, lang, dev_shots(lang, q["subject"], shots))
        r = score_question(model, tokenizer, prompt, gen_tokens=gen_tokens,
                           prefix=caches[q["subject"]])
        items.append({"id": q["id"], "subject": q["subject"], "answer": q["answer"], **r})
    seconds = time.perf_counter() - start
    n = len(items)
    per_subject = {s: _acc([i for i in items if i["subject"] == s], "pred_ll") for s in subjects}
    return {"label": label, "lang": lang, "shots": shots, "n": n,
            "acc_ll": _acc(items, "pred_ll"), "acc_gen": _acc(items, "pred_gen"),
            "unparsed": sum(i["pred_gen"] is None for i in items), "chance": 0.25,
            "per_subject": per_subject, "seconds": round(seconds, 2), "items": items}


def _acc(items: list[dict], key: str) -> float:
    return sum(i[key] == i["answer"] for i in items) / len(items) if items else float("nan")


# --------------------------------------------------------------------------- perplexity

@torch.no_grad()
def perplexity(model, tokenizer, text: str, *, window: int = 256, stride: int = 128,
               max_tokens: int | None = None, label: str = "", lang: str = "") -> dict:
    """Perplexity of ``text`` with a sliding window.

    Windows of ``window`` tokens start every ``stride`` tokens; each token is scored once, in the
    first window where it is new, with at least ``window - stride`` tokens of context before it
    (the first ``window`` tokens have less). Returns ``ppl``, ``nll`` (mean, nats), ``tokens``
    (scored), ``windows``. ``max_tokens`` keeps only the text's first tokens (a faster check).
    """
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    ids = tokenizer.encode(text)[:max_tokens]
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
    return {"label": label, "lang": lang, "ppl": math.exp(nll), "nll": nll, "tokens": counted, "windows": windows,
            "window": window, "stride": stride}


# --------------------------------------------------------------------------- speed and memory

def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, MB); ``reset_peak_rss`` restarts it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # macOS: bytes, Linux: KiB; it cannot be reset

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024


def rss_mb() -> float:
    """This process's resident memory now (VmRSS, MB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak_rss() -> bool:
    """Restart the VmHWM high-water mark at the current RSS (Linux: ``5 > /proc/self/clear_refs``).
    Returns False where that is not possible (the peak then covers the whole process life)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _random_prompt(model, batch_size: int, prompt_len: int, seed: int = 0) -> torch.Tensor:
    """Random token ids (``batch_size`` × ``prompt_len``, ids from 3 up: no special tokens at the
    start of the vocabulary), seeded, on the model's device: timing needs no real text."""
    ids = torch.randint(3, model.config.vocab_size, (batch_size, prompt_len),
                        generator=torch.Generator().manual_seed(seed))
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def _one_generation(model, ids: torch.Tensor, new_tokens: int, *, static_cache: bool = False,
                    cache_len: int | None = None,
                    decode_forward=None) -> tuple[float, float, torch.Tensor]:
    """(prefill seconds, decode seconds for new_tokens - 1 steps, the generated token ids) of one
    greedy generation. ``static_cache``: a preallocated ``StaticCache`` of ``cache_len`` slots
    (fixed shapes, what torch.compile needs); ``decode_forward``: the callable for the decode
    steps (for example ``torch.compile(model.forward)``), the prefill always runs ``model``."""
    device = next(model.parameters()).device
    ids = ids.to(device)  # a prompt made on the CPU works with a model on the GPU
    key = _cache_kwarg(model)
    batch, length = ids.shape
    step = decode_forward or model
    cache = None
    if static_cache:
        from transformers import StaticCache

        cache = StaticCache(config=model.config, max_cache_len=cache_len or length + new_tokens)
    extra = {key: cache} if cache is not None else {}
    _sync(device)
    t0 = time.perf_counter()
    positions = torch.arange(length, device=device).expand(batch, -1)
    out = model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1, **extra)
    nxt = out.logits[:, -1:].argmax(-1)
    _sync(device)
    t1 = time.perf_counter()
    cache, tokens = _out_cache(out), [nxt]
    for i in range(new_tokens - 1):
        position = torch.full((batch, 1), length + i, device=device, dtype=torch.long)
        out = step(input_ids=nxt, position_ids=position, use_cache=True, logits_to_keep=1,
                   **{key: cache})
        cache = _out_cache(out)
        nxt = out.logits[:, -1:].argmax(-1)
        tokens.append(nxt)
    _sync(device)
    return t1 - t0, time.perf_counter() - t1, torch.cat(tokens, dim=1)


def measure_generation(model, *, batch_size: int = 1, prompt_len: int = 128,
                       new_tokens: int = 16, repeats: int = 3, warmup: int = 1,
                       label: str = "", seed: int = 0, static_cache: bool = False,
                       decode_forward=None) -> dict:
    """Time greedy generation: prefill (time to first token) and decode, with the KV cache.

    One forward pass over the prompt gives the first token (TTFT); each further token is one
    decode step. Reports median / min / max over ``repeats`` runs after ``warmup`` runs:
    ``ttft_s``, ``prefill_tok_s`` (prompt tokens × batch / prefill time), ``decode_tok_s``
    (tokens per second per sequence) and ``decode_tok_s_total`` (× batch), and the peak memory:
    ``peak_mb`` (GPU allocated, or CPU RSS high-water) and ``peak_extra_mb`` (above the memory
    held before the run: activations and KV cache).

    ``static_cache=True`` preallocates the KV cache for ``prompt_len + new_tokens`` tokens
    instead of growing it; ``decode_forward`` replaces ``model`` for the decode steps (a
    compiled forward: see :func:`compile_decode`). Both are written into the record
    (``cache``, ``compiled``).
    """
    if new_tokens < 2:
        raise ValueError("new_tokens must be >= 2 (one prefill token, then decode steps)")
    device = next(model.parameters()).device
    ids = _random_prompt(model, batch_size, prompt_len, seed)
    how = dict(static_cache=static_cache, cache_len=prompt_len + new_tokens,
               decode_forward=decode_forward)
    for _ in range(warmup):
        _one_generation(model, ids, min(new_tokens, 4), **how)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        reset_peak_rss()
        before = rss_mb()
    prefill, decode = [], []
    for _ in range(repeats):
        p, d, _tokens = _one_generation(model, ids, new_tokens, **how)
        prefill.append(p)
        decode.append(d)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else peak_rss_mb())
    steps = new_tokens - 1
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return {"label": label, "dtype": dtype, "device": device.type, "batch_size": batch_size,
            "prompt_len": prompt_len, "new_tokens": new_tokens, "repeats": repeats,
            "cache": "static" if static_cache else "dynamic", "compiled": decode_forward is not None,
            "ttft_s": _stats(prefill),
            "prefill_tok_s": _stats([batch_size * prompt_len / t for t in prefill]),
            "decode_tok_s": _stats([steps / t for t in decode]),
            "decode_tok_s_total": _stats([batch_size * steps / t for t in decode]),
            "peak_mb": round(peak, 1), "peak_extra_mb": round(peak - before, 1)}


def compile_decode(model, *, batch_size: int = 1, prompt_len: int = 128, new_tokens: int = 16,
                   backend: str = "inductor", mode: str | None = None) -> tuple[Any, float]:
    """``torch.compile`` the model's forward for decode steps with a static cache, and compile it
    now: returns ``(compiled forward, compile seconds)``.

    The compile happens on the first calls (one generation at these sizes), so its cost is
    measured apart from the speed after it. ``dynamic=False``: one graph for these fixed shapes
    (another batch size or cache length compiles again). ``backend="eager"`` checks the
    mechanics in seconds without generating code (tests). On a CUDA GPU try
    ``mode="reduce-overhead"`` (CUDA graphs).
    """
    forward = torch.compile(model.forward, backend=backend, mode=mode, dynamic=False)
    ids = _random_prompt(model, batch_size, prompt_len)
    start = time.perf_counter()
    _one_generation(model, ids, new_tokens, static_cache=True, cache_len=prompt_len + new_tokens,
                    decode_forward=forward)
    return forward, time.perf_counter() - start


def break_even_tokens(base_tok_s: float, faster_tok_s: float, extra_s: float) -> float | None:
    """Generated tokens after which a one-time cost of ``extra_s`` seconds (a compile) is paid
    back by decoding at ``faster_tok_s`` instead of ``base_tok_s``; ``None`` when the faster
    path saves nothing (it never pays back).

    Each token saves ``1/base - 1/faster`` seconds, so the break-even is ``extra_s`` divided by
    that saving. Example: 10 → 20 tok/s saves 0.05 s a token: a 30 s compile pays back after
    600 tokens.
    """
    if base_tok_s <= 0 or faster_tok_s <= 0 or extra_s < 0:
        raise ValueError("speeds must be > 0 tokens/s and the extra time >= 0 s")
    saved = 1 / base_tok_s - 1 / faster_tok_s
    return extra_s / saved if saved > 0 else None


def dtype_speedup(speed: list[dict], dtype: str = "bfloat16", base: str = "float32") -> dict | None:
    """Speed of ``dtype`` as a multiple of ``base`` on the same setting: the batch-1 run with the
    shortest prompt both dtypes have in ``speed`` (``measure_generation`` records).

    Returns ``{"prompt_len", "prefill", "decode"}`` (above 1: ``dtype`` is faster), or ``None``
    when the two dtypes share no batch-1 prompt length.
    """
    def runs(dt: str) -> dict[int, dict]:
        return {r["prompt_len"]: r for r in speed if r["dtype"] == dt and r["batch_size"] == 1}

    fast, slow = runs(dtype), runs(base)
    shared = sorted(fast.keys() & slow.keys())
    if not shared:
        return None
    a, b = fast[shared[0]], slow[shared[0]]
    return {"prompt_len": shared[0],
            "prefill": a["prefill_tok_s"]["median"] / b["prefill_tok_s"]["median"],
            "decode": a["decode_tok_s"]["median"] / b["decode_tok_s"]["median"]}


def greedy_tokens(model, ids: torch.Tensor, new_tokens: int, *, static_cache: bool = False,
                  decode_forward=None) -> torch.Tensor:
    """The ``new_tokens`` greedy tokens that ``measure_generation`` times (to check that a faster
    path computes the same thing)."""
    return _one_generation(model, ids, new_tokens, static_cache=static_cache,
                           decode_forward=decode_forward)[2]


def _tensor_nbytes(t) -> int:
    """Bytes of a tensor, including quantized tensor subclasses (torchao keeps int8 data and
    scales in inner tensors: ``__tensor_flatten__`` names them)."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_nbytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def weight_bytes(model) -> int:
    """Bytes of a model's parameters and buffers, shared tensors once, quantized ones as stored."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += _tensor_nbytes(t)
    return total


def kv_bytes_per_token(model) -> int:
    """Bytes of KV cache one token adds: 2 (K and V) × layers × KV heads × head size × bytes."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * element


def roofline(record: dict, *, weight_bytes: float, kv_per_token: float,
             bandwidth_gbs: float) -> dict:
    """Add the decode roofline to a ``measure_generation`` record.

    A decode step reads every weight once (for the whole batch) and each sequence's KV cache, so
    memory bandwidth bounds it: ``tokens/s per sequence ≤ bandwidth / (weights + batch × context
    × KV per token)`` (:func:`yi_helpers.gpu.decode_roofline_tokens_per_s`). The context used is
    the middle of the decode. ``fraction`` is the measured median over that bound.
    """
    from .gpu import decode_roofline_tokens_per_s

    context = record["prompt_len"] + record["new_tokens"] // 2
    bound = decode_roofline_tokens_per_s(weight_bytes, kv_per_token, context, bandwidth_gbs,
                                         batch_size=record["batch_size"])
    return {**record, "roofline_tok_s": bound, "bandwidth_gbs": bandwidth_gbs,
            "fraction": record["decode_tok_s"]["median"] / bound}


# --------------------------------------------------------------------------- lm-evaluation-harness

def lm_eval_task_dir(lang: str, *, limit: int | None = None, folder: str | Path | None = None,
                     name: str | None = None) -> tuple[Path, str]:
    """Write a custom lm-evaluation-harness task for the hub's questions: a YAML file and local
    JSON data (test and dev splits), with the same header, question format, answer cue and
    option continuation (" A") as :func:`build_prompt`. Returns (folder, task name)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="yi-lm-eval-"))
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"yi_hub_mc_{lang}"
    tests = load_questions(lang, "test", limit=limit)
    shots = {q["subject"]: dev_shots(lang, q["subject"], 5) for q in tests}

    def doc(q: dict) -> dict:
        return {"id": q["id"], "subject": q["subject"],
                "header": header(q["subject"], lang), "text": format_question(q, lang),
                "label": LETTERS.index(q["answer"]), "answer": q["answer"]}

    # lm_eval draws few-shot examples from one split; our examples depend on the subject, so each
    # test row carries its own subject's examples, and the YAML places them (k set per run)
    rows = [{**doc(q), "shots": [doc(s) for s in shots[q["subject"]]]} for q in tests]
    with open(folder / f"{name}_test.json", "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    yaml = f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(folder / f"{name}_test.json"))}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{header}}}}\\n\\n{{% for s in shots[:num_shots|int] %}}{{{{s.text}}}} {{{{s.answer}}}}\\n\\n{{% endfor %}}{{{{text}}}}"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    (folder / f"{name}.yaml").write_text(yaml, encoding="utf-8")
    return folder, name


def lm_eval_mc(pretrained: str | Path, lang: str = "en", *, shots: int = 0,
               limit: int | None = None, dtype: str = "float32", device: str = "cpu",
               batch_size: int = 1) -> dict:
    """Run the hub's questions through lm-evaluation-harness (``hf`` model type, custom local
    task, offline). Returns ``acc``, ``n`` and ``preds`` (question id → predicted letter)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="yi-lm-eval-") as tmp:
        folder, name = lm_eval_task_dir(lang, limit=limit, folder=tmp)
        text = (folder / f"{name}.yaml").read_text(encoding="utf-8")
        (folder / f"{name}.yaml").write_text(text.replace("num_shots|int", str(shots)),
                                             encoding="utf-8")
        start = time.perf_counter()
        # The Yi team scored raw prompts, not chat-formatted ones, so the chat template is off on
        # purpose; lm_eval warns about that with the model's local path: keep it out of lessons.
        quiet = logging.getLogger("lm_eval.evaluator")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            results = lm_eval.simple_evaluate(
                model="hf", model_args={"pretrained": str(pretrained), "dtype": dtype,
                                        "device": device},
                # include_defaults=False: only this task, not an index of lm_eval's ~14,700
                # built-in ones (6-15 s on this CPU, each call)
                tasks=[name],
                task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                num_fewshot=0, batch_size=batch_size, log_samples=True, verbosity="ERROR")
        finally:
            quiet.setLevel(level)
        seconds = time.perf_counter() - start
    samples = results["samples"][name]
    preds = {}
    for s in samples:
        lls = [r[0] for r in s["filtered_resps"]]
        preds[s["doc"]["id"]] = LETTERS[max(range(len(lls)), key=lls.__getitem__)]
    acc = results["results"][name]["acc,none"]
    return {"lang": lang, "shots": shots, "n": len(samples), "acc": acc, "preds": preds,
            "prompt": samples[0]["arguments"][0][0] if samples else "",
            "seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- JSON output

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
