"""yi_helpers.sampling: transform() equals transformers' logits processors; measurements."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from yi_helpers.sampling import (distinct_n, entropy_bits, kept, measure, next_token_distribution,
                                 repeated_ngram_rate, sample, transform)

SETTINGS = [
    dict(),
    dict(temperature=0.7),
    dict(temperature=1.5, top_k=40),
    dict(top_p=0.8),
    dict(temperature=0.6, top_p=0.8),
    dict(min_p=0.1),
    dict(temperature=0.7, top_k=40, top_p=0.8, repetition_penalty=1.3),
    dict(temperature=1.2, top_k=5, top_p=0.5, min_p=0.05, repetition_penalty=1.2),
    dict(repetition_penalty=0.8),
    dict(top_k=1),
    dict(top_p=0.01),
]


def hf_reference(logits, input_ids, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                 repetition_penalty=1.0):
    """The processors generate() builds for these settings, in generate()'s order."""
    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=float(repetition_penalty)))
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=top_p))
    if min_p:
        procs.append(MinPLogitsWarper(min_p=min_p))
    return procs(input_ids, logits.clone()).softmax(-1)


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_transform_matches_transformers_processors(settings):
    gen = torch.Generator().manual_seed(0)
    for scale in (0.5, 3.0, 10.0):
        logits = torch.randn(4, 1000, generator=gen) * scale
        input_ids = torch.randint(0, 1000, (4, 30), generator=gen)
        ours = transform(logits, input_ids=input_ids, **settings)["final"]
        theirs = hf_reference(logits, input_ids, **settings)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0), (settings, scale)


def test_stages_are_in_generate_order_and_each_is_a_distribution():
    logits = torch.randn(500, generator=torch.Generator().manual_seed(1)) * 3
    stages = transform(logits, temperature=0.5, top_k=50, top_p=0.9, min_p=0.05)
    assert list(stages) == ["logits", "repetition_penalty", "temperature", "top_k", "top_p",
                            "min_p", "final"]
    survivors = [int((p > 0).sum()) for p in stages.values()]
    assert survivors[:3] == [500, 500, 500] and survivors[3] == 50
    assert survivors[3] >= survivors[4] >= survivors[5] >= 1
    for p in stages.values():
        assert p.shape == (500,) and math.isclose(float(p.sum()), 1.0, abs_tol=1e-5)


def test_temperature_changes_entropy_monotonically():
    logits = torch.randn(2000, generator=torch.Generator().manual_seed(2)) * 4
    entropies = [entropy_bits(transform(logits, temperature=t)["final"]) for t in (0.3, 0.7, 1.0, 1.5)]
    assert entropies == sorted(entropies)
    assert entropy_bits(torch.full((8,), 1 / 8)) == pytest.approx(3.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0), "greedy"), (dict(temperature=-1), "temperature"),
    (dict(top_p=0), r"top_p must be in \(0, 1\]"), (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(min_p=1.0), "min_p"),
    (dict(repetition_penalty=0), "repetition_penalty"),
])
def test_argument_errors_are_clear(kwargs, match):
    with pytest.raises(ValueError, match=match):
        transform(torch.zeros(10), **kwargs)


def test_logits_that_give_no_distribution_are_refused():
    """NaN scores, or a row where every score is -inf, would give NaN probabilities."""
    good = torch.tensor([1.0, 2.0, float("-inf")])
    assert torch.allclose(transform(good)["final"].sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="NaN"):
        transform(torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="every logit is -inf in row"):
        transform(torch.full((3,), float("-inf")))
    batch = torch.stack([good, torch.full((3,), float("-inf"))])
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        transform(batch, temperature=0.7)


def test_repetition_penalty_needs_input_ids():
    with pytest.raises(ValueError, match="input_ids"):
        transform(torch.zeros(10), repetition_penalty=1.3)


def test_diversity_measures():
    assert distinct_n([[1, 2, 3], [1, 2, 3]], 1) == pytest.approx(0.5)
    assert distinct_n([[1, 2, 3], [4, 5, 6]], 2) == 1.0
    assert distinct_n([[1]], 2) == 0.0
    assert repeated_ngram_rate([1, 2, 3, 1, 2, 3, 1, 2, 3], 3) == pytest.approx(4 / 7)
    assert repeated_ngram_rate([1, 2, 3, 4, 5], 3) == 0.0


def test_next_token_distribution(embedded):
    model, tok = embedded
    dist = next_token_distribution(model, tok, [{"role": "user", "content": "What is the capital "
                                                 "of France?"}], top=5)
    assert len(dist.ids) == 5 and dist.probs == sorted(dist.probs, reverse=True)
    assert dist.logits.shape == (model.config.vocab_size,)
    assert dist.tokens[0] == tok.decode([dist.ids[0]]) and 0 < dist.probs[0] <= 1
    with pytest.raises(ValueError, match="top"):
        next_token_distribution(model, tok, "hi", top=0)


@pytest.mark.slow
def test_seeds_and_greedy_are_deterministic(embedded):
    model, tok = embedded
    prompt = [{"role": "user", "content": "Tell me a story."}]
    a = sample(model, tok, prompt, n=3, max_new_tokens=12, seed=7, temperature=1.0)
    b = sample(model, tok, prompt, n=3, max_new_tokens=12, seed=7, temperature=1.0)
    c = sample(model, tok, prompt, n=3, max_new_tokens=12, seed=8, temperature=1.0)
    assert a == b and a != c
    g1 = sample(model, tok, prompt, n=2, max_new_tokens=12, seed=1, do_sample=False)
    g2 = sample(model, tok, prompt, n=2, max_new_tokens=12, seed=2, do_sample=False)
    assert g1 == g2 and g1[0] == g1[1]


@pytest.mark.slow
def test_hotter_sampling_is_more_diverse_and_less_likely(embedded):
    model, tok = embedded
    prompt = [{"role": "user", "content": "Write a sentence about the sea."}]
    cold = sample(model, tok, prompt, n=6, max_new_tokens=16, seed=0, temperature=0.3)
    hot = sample(model, tok, prompt, n=6, max_new_tokens=16, seed=0, temperature=1.5)
    m_cold, m_hot = measure(model, tok, prompt, cold), measure(model, tok, prompt, hot)
    assert m_hot["distinct_2"] > m_cold["distinct_2"]
    assert m_hot["mean_log_likelihood"] < m_cold["mean_log_likelihood"]


def test_batched_log_likelihood_equals_one_by_one(embedded):
    from yi_helpers.sampling import mean_log_likelihood

    model, tok = embedded
    prompt = "The sea is"
    conts = [tok(" blue and deep.", add_special_tokens=False)["input_ids"],
             tok(" a place of storms, legends and ships", add_special_tokens=False)["input_ids"]]
    prefix = tok(prompt, add_special_tokens=False)["input_ids"]
    total = 0.0
    for cont in conts:
        ids = torch.tensor([prefix + cont])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0].log_softmax(-1)
        total += sum(float(logp[len(prefix) - 1 + i, t]) for i, t in enumerate(cont))
    expected = total / sum(len(c) for c in conts)
    assert mean_log_likelihood(model, tok, prompt, conts) == pytest.approx(expected, abs=1e-4)


def test_kept_counts_survivors_and_their_mass():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    probs = logits.softmax(-1)
    assert kept(logits, top_k=2) == (2, pytest.approx(float(probs[:2].sum())))
    n, mass = kept(logits, top_p=0.9)
    assert mass >= 0.9 and n == 3  # the smallest set of most likely tokens holding 90%
    assert kept(logits) == (5, pytest.approx(1.0))
