"""Sampling written out plainly: ``transform`` applies transformers' logits processors' rules
in generate's order, one readable step at a time (a test holds it to theirs within 1e-6); the
measurements turn "this setting feels more diverse" into numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from .chat import SAMPLING_KNOBS, cut_at_stop, default_template, generation_kwargs, render

__all__ = ["YI_BASE_SAMPLING", "transform", "kept", "entropy_bits", "next_token_distribution",
           "repeated_ngram_rate", "sample", "measure"]

#: The Yi README's settings for base-model text generation (the chat ones are in ``chat``).
YI_BASE_SAMPLING = dict(temperature=0.7, top_k=40, top_p=0.8, repetition_penalty=1.3,
                        no_repeat_ngram_size=5)


def check_sampling_args(*, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                        min_p: float = 0.0, repetition_penalty: float = 1.0) -> None:
    """Raise a clear ``ValueError`` for an argument outside its range."""
    if not isinstance(temperature, (int, float)) or temperature <= 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be > 0, got {temperature!r}. For the most likely token "
                         "every time use greedy decoding (do_sample=False), not temperature 0.")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not isinstance(min_p, (int, float)) or not 0 <= min_p < 1:
        raise ValueError(f"min_p must be in [0, 1) (0 = off), got {min_p!r}")
    if not isinstance(repetition_penalty, (int, float)) or repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1 = off, > 1 discourages repeats), "
                         f"got {repetition_penalty!r}")


def check_logits(logits: torch.Tensor) -> None:
    """Raise ``ValueError`` for logits that would give NaN probabilities without a word: a NaN
    score, or a row where every score is ``-inf`` (nothing left to sample)."""
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN: the model's forward pass overflowed or was fed "
                         "invalid input (float16 on a CPU often does this; use float32 or "
                         "bfloat16).")
    rows = logits.reshape(-1, logits.shape[-1]) if logits.dim() else logits.reshape(1, 1)
    dead = torch.isneginf(rows).all(-1)
    if dead.any():
        raise ValueError(f"every logit is -inf in row(s) {dead.nonzero().flatten().tolist()}: "
                         "no token is left to sample. Check the mask or the bad-words list "
                         "that removed them.")


def transform(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
              input_ids: torch.Tensor | Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The probabilities of ``logits`` (``(vocab,)`` or ``(batch, vocab)``) after each sampling
    rule, keyed by the rule's name in the order ``generate`` applies them, from ``"logits"`` to
    ``"final"`` (removed tokens: probability 0). ``input_ids``, the tokens so far, are needed
    for ``repetition_penalty``."""
    check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                        repetition_penalty=repetition_penalty)
    scores = logits.detach().float()
    squeeze = scores.dim() == 1
    if squeeze:
        scores = scores.unsqueeze(0)
    check_logits(scores)
    stages: dict[str, torch.Tensor] = {"logits": scores.softmax(-1)}

    # 1. Repetition penalty: tokens already present become less likely. A positive score is
    #    divided by the penalty, a negative one multiplied (both move it down).
    if repetition_penalty != 1.0:
        if input_ids is None:
            raise ValueError("repetition_penalty needs input_ids (the tokens generated so far)")
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=scores.device)
        ids = ids.reshape(scores.shape[0], -1)
        seen = torch.zeros_like(scores, dtype=torch.bool).scatter(1, ids, True)
        penalised = torch.where(scores < 0, scores * repetition_penalty,
                                scores / repetition_penalty)
        scores = torch.where(seen, penalised, scores)
    stages["repetition_penalty"] = scores.softmax(-1)

    # 2. Temperature: divide the scores. < 1 sharpens the distribution, > 1 flattens it.
    scores = scores / temperature
    stages["temperature"] = scores.softmax(-1)

    # 3. Top-k: keep the k highest scores (ties with the k-th are kept).
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    stages["top_k"] = scores.softmax(-1)

    # 4. Top-p (nucleus): keep the most likely tokens whose probabilities add up to top_p
    #    (the token that crosses the line is kept; at least one token always survives).
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove_sorted = cumulative <= 1 - top_p
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)
        scores = scores.masked_fill(remove, -math.inf)
    stages["top_p"] = scores.softmax(-1)

    # 5. Min-p: drop tokens less likely than min_p times the most likely token's probability.
    if min_p > 0.0:
        probs = scores.softmax(-1)
        threshold = min_p * probs.amax(-1, keepdim=True)
        remove = probs < threshold
        remove.scatter_(-1, probs.argmax(-1, keepdim=True), False)
        scores = scores.masked_fill(remove, -math.inf)
    stages["min_p"] = scores.softmax(-1)

    stages["final"] = stages["min_p"]
    if squeeze:
        stages = {k: v.squeeze(0) for k, v in stages.items()}
    return stages


def kept(logits: torch.Tensor, **rules: Any) -> tuple[int, float]:
    """What a set of rules (``transform``'s arguments) leaves to sample from: the number of
    tokens kept, and the probability mass those tokens had before the rules."""
    survivors = transform(logits, **rules)["final"] > 0
    return int(survivors.sum()), float(logits.detach().float().softmax(-1)[survivors].sum())


def entropy_bits(probs: torch.Tensor) -> float:
    """Shannon entropy of a probability vector, in bits."""
    p = probs[probs > 0].double()
    return float(-(p * p.log2()).sum())


@dataclass
class NextToken:
    """The next-token distribution after a prompt."""

    logits: torch.Tensor  # (vocab,), float32
    ids: list[int]  # the ``top`` most likely ids, most likely first
    tokens: list[str]
    probs: list[float]


def _prompt_text(tokenizer: Any, prompt: str | Sequence[Mapping[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    return render(prompt, template=default_template(tokenizer))


def next_token_distribution(model: Any, tokenizer: Any, prompt: str | Sequence[Mapping[str, str]],
                            *, top: int = 20) -> NextToken:
    """The next-token probabilities after ``prompt`` (a string, or messages rendered with the
    tokenizer's chat template): the ``top`` most likely tokens, and all logits."""
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    ids = tokenizer(_prompt_text(tokenizer, prompt), add_special_tokens=False,
                    return_tensors="pt").to(model.device)
    with torch.no_grad():
        logits = model(**ids).logits[0, -1].float().cpu()
    probs = logits.softmax(-1)
    best = probs.topk(min(top, probs.shape[-1]))
    top_ids = [int(i) for i in best.indices]
    return NextToken(logits=logits, ids=top_ids,
                     tokens=[tokenizer.decode([i]) for i in top_ids],
                     probs=[float(p) for p in best.values])


def ngrams(tokens: Sequence[Any], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(sequences: Sequence[Sequence[Any]], n: int) -> float:
    """Distinct n-grams over all sequences / all n-grams (1.0 = nothing repeats). 0 if none."""
    grams = [g for seq in sequences for g in ngrams(seq, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(sequence: Sequence[Any], n: int = 3) -> float:
    """Share of a sequence's n-grams that already occurred earlier in the same sequence."""
    grams = ngrams(sequence, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def sample(model: Any, tokenizer: Any, prompt: str | Sequence[Mapping[str, str]], *,
           n: int = 8, max_new_tokens: int = 32, seed: int = 0, do_sample: bool = True,
           **sampling: Any) -> list[list[int]]:
    """``n`` continuations of ``prompt`` (token ids, stop tokens removed); same seed, same
    continuations. ``sampling``: generate's arguments (``temperature``, ``num_beams``...)."""
    check_sampling_args(**{k: sampling[k] for k in SAMPLING_KNOBS + ("repetition_penalty",)
                           if k in sampling})
    if do_sample:  # no hidden top-k=50 default: every knob is explicit
        sampling = {"top_k": 0, "top_p": 1.0, "temperature": 1.0} | sampling
    sampling["do_sample"] = do_sample
    kwargs = generation_kwargs(tokenizer, model, max_new_tokens, sampling)
    ids = tokenizer(_prompt_text(tokenizer, prompt), add_special_tokens=False,
                    return_tensors="pt").to(model.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**ids, num_return_sequences=n if do_sample else 1, **kwargs)
    results = [cut_at_stop(row, kwargs["eos_token_id"])
               for row in out[:, ids["input_ids"].shape[1]:].tolist()]
    return results if do_sample else results * n


def mean_log_likelihood(model: Any, tokenizer: Any, prompt: str | Sequence[Mapping[str, str]],
                        continuations: Sequence[Sequence[int]]) -> float:
    """Mean per-token log-probability (nats) of the continuations under the model itself, with
    no sampling rule applied: a proxy for quality (higher = more typical text)."""
    prefix = tokenizer(_prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    conts = [list(c) for c in continuations if len(c) > 0]
    if not conts:
        return float("nan")
    # One right-padded batch: causal attention means padding after a sequence changes nothing
    # before it, and padded positions are left out of the sum.
    width = len(prefix) + max(len(c) for c in conts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(conts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(conts), width), dtype=torch.long)
    for row, cont in enumerate(conts):
        seq = prefix + cont
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
    logp = logits[:, :-1].float().log_softmax(-1).cpu()
    targets = ids[:, 1:]
    picked = logp.gather(2, targets[..., None])[..., 0]
    scored = mask[:, 1:].bool()  # the continuations' tokens, not the prompt's
    scored[:, :max(len(prefix) - 1, 0)] = False
    return float(picked[scored].sum()) / int(scored.sum())


def measure(model: Any, tokenizer: Any, prompt: str | Sequence[Mapping[str, str]],
            continuations: Sequence[Sequence[int]]) -> dict[str, float]:
    """Diversity and quality of a set of continuations, as plain numbers."""
    return {
        "distinct_1": distinct_n(continuations, 1),
        "distinct_2": distinct_n(continuations, 2),
        "repeated_3gram_rate": sum(repeated_ngram_rate(c, 3) for c in continuations)
        / max(len(continuations), 1),
        "mean_length": sum(len(c) for c in continuations) / max(len(continuations), 1),
        "mean_log_likelihood": mean_log_likelihood(model, tokenizer, prompt, continuations),
    }
