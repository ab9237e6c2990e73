"""Perplexity, the hub's one definition (lessons 04, 05, 06 and 08 use its defaults on the
packaged held-out texts, so their numbers compare), and :func:`text_prediction`: whether a model
has learned language at all, which lessons check before claims only a trained model supports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["perplexity", "TextPrediction", "text_prediction"]

#: How many times better than a uniform guess over the vocabulary a model must predict held-out
#: text to count as trained: a random model scores about 1; SmolLM2-135M about 1,500 on the
#: hub's English text, a real Yi far more.
TRAINED_VS_CHANCE = 100.0


@torch.no_grad()
def perplexity(model, tokenizer, text: str, *, window: int = 512, stride: int | None = None,
               max_tokens: int | None = None, label: str = "", lang: str = "") -> dict:
    """Perplexity of ``text``: exp of the mean next-token loss (nats), with a sliding window.

    The text is tokenized as it is (no special tokens). Windows of ``window`` tokens start every
    ``stride`` tokens (default ``window // 2``); each token is scored once, in the first window
    where it is new, so it has at least ``window - stride`` tokens of context; the very first
    token is never scored. ``max_tokens`` keeps only the text's first tokens (a faster check).
    Returns ``ppl``, ``nll`` (mean, nats), ``tokens`` (scored), ``windows``, ``window``,
    ``stride``, ``label``, ``lang``.
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
        chunk = torch.tensor([ids[begin:end]], device=device)
        logprobs = model(input_ids=chunk).logits[0, :-1].float().log_softmax(-1)
        token_lp = logprobs.gather(-1, chunk[0, 1:, None])[:, 0]
        first = max(len(token_lp) - (end - prev_end), 0)  # only the tokens not scored yet
        total -= float(token_lp[first:].sum())
        counted += len(token_lp) - first
        windows, prev_end = windows + 1, end
        if end == len(ids):
            break
    nll = total / counted
    return {"label": label, "lang": lang, "ppl": math.exp(nll), "nll": nll, "tokens": counted,
            "windows": windows, "window": window, "stride": stride}


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
        """At least ``TRAINED_VS_CHANCE`` times better than chance."""
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
    """Has the model learned language? Its :func:`perplexity` on ``text`` (default: the hub's
    held-out English prose) against its vocabulary size. Lessons condition the claims only a
    trained model supports on ``.trained``, measured, never on the model's name.
    ``perplexity_value``: one measured already on that text."""
    if perplexity_value is None:
        from ..corpus import heldout_text

        perplexity_value = perplexity(model, tokenizer, text or heldout_text("en"))["ppl"]
    return TextPrediction(float(perplexity_value), len(tokenizer))
