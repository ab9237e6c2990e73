"""yi_helpers.bench: question data, prompts, scoring, perplexity, timing records, JSON schema."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from yi_helpers import bench
from yi_helpers.bench import evaluation, results, speed
from yi_helpers import measure
from yi_shape import random_model, tiny_yi_config


# ----------------------------------------------------------------------------- data and prompts

@pytest.mark.parametrize("lang", evaluation.LANGUAGES)
def test_question_sets_are_complete_and_clean(lang):
    test, dev = bench.load_questions(lang, "test"), bench.load_questions(lang, "dev")
    assert len(test) >= 60
    subjects = Counter(q["subject"] for q in dev)
    assert len(subjects) >= 4 and set(subjects.values()) == {5}  # 5 examples per subject
    assert {q["subject"] for q in test} == set(subjects)
    assert not {q["question"] for q in test} & {q["question"] for q in dev}, "dev leaks into test"
    ids = [q["id"] for q in test + dev]
    assert len(ids) == len(set(ids))
    for q in test + dev:
        assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4, q
        assert q["answer"] in bench.LETTERS
    letters = Counter(q["answer"] for q in test)
    assert max(letters.values()) <= 0.35 * len(test), f"answer letters unbalanced: {letters}"


def test_limit_takes_every_subject_first():
    few = bench.load_questions("en", limit=4)
    assert len({q["subject"] for q in few}) == 4
    with pytest.raises(ValueError, match="lang"):
        bench.load_questions("fr")


def test_prompts_follow_the_yi_formats():
    q = bench.load_questions("en")[0]
    p0 = bench.build_prompt(q, "en")
    assert p0.startswith("The following are multiple choice questions (with answers) about "
                         "elementary mathematics. Please select the correct answer and output the "
                         "corresponding option.\n\n")
    assert p0.endswith("\nD. " + q["choices"][3] + "\nThe correct answer is:")
    shots = bench.dev_shots("en", q["subject"], 5)
    p5 = bench.build_prompt(q, "en", shots)
    assert p5.count("The correct answer is:") == 6
    assert f"The correct answer is: {shots[0]['answer']}\n\n" in p5
    z = bench.load_questions("zh")[0]
    pz = bench.build_prompt(z, "zh")
    assert pz.startswith(f"以下是关于 {z['subject']} 的单项选择题，请选出其中的正确答案。\n\n")
    assert pz.endswith("正确答案是:")


@pytest.mark.parametrize("text,letter", [(" B", "B"), ("C. 6", "C"), ("\nA. 5", "A"),
                                          (" The answer is D", "D"), ("答案是Ｂ", "B"),
                                          ("Apple", None), ("", None), (" 12", None)])
def test_parse_choice(text, letter):
    assert evaluation.parse_choice(text) == letter


# ----------------------------------------------------------------------------- scoring

def test_shared_prefix_cache_gives_the_same_scores(embedded):
    model, tok = embedded
    qs = bench.load_questions("en", limit=3, subjects=["high_school_biology"])
    shots = bench.dev_shots("en", "high_school_biology", 2)
    shared = evaluation.PrefixCache(model)
    for q in qs:
        prompt = bench.build_prompt(q, "en", shots)
        a = evaluation.score_question(model, tok, prompt, prefix=shared)
        b = evaluation.score_question(model, tok, prompt)  # a fresh cache: the whole prompt
        assert a["pred_ll"] == b["pred_ll"] and a["generated"] == b["generated"]
        assert a["option_logprobs"] == pytest.approx(b["option_logprobs"], abs=1e-3)
        # the letter scores are the model's own next-token log-probabilities
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            lp = model(ids).logits[0, -1].log_softmax(-1)
        letter_ids = [tok.encode(prompt + " " + x)[-1] for x in bench.LETTERS]
        assert a["option_logprobs"] == pytest.approx([float(lp[i]) for i in letter_ids], abs=1e-3)


def test_evaluate_mc_record(embedded):
    model, tok = embedded
    r = bench.evaluate_mc(model, tok, "en", shots=0, limit=4, gen_tokens=2)
    assert r["n"] == 4 and 0 <= r["acc_ll"] <= 1 and 0 <= r["acc_gen"] <= 1
    assert r["unparsed"] == sum(i["pred_gen"] is None for i in r["items"])
    assert r["acc_ll"] == sum(i["pred_ll"] == i["answer"] for i in r["items"]) / 4
    assert len(r["per_subject"]) == 4


# ----------------------------------------------------------------------------- perplexity

def test_perplexity_window_covering_the_text_equals_the_plain_loss(embedded):
    model, tok = embedded
    text = "The harbour was quiet in the morning, and the boats came back before noon."
    r = bench.perplexity(model, tok, text, window=256, stride=256)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    assert r["windows"] == 1 and r["tokens"] == ids.shape[1] - 1
    assert r["ppl"] == pytest.approx(math.exp(float(loss)), rel=1e-4)


def test_sliding_window_scores_each_token_once():
    torch.manual_seed(0)
    model = random_model(tiny_yi_config(), dtype=torch.float32)

    class Tok:  # ids written as text: "5 17 3" → [5, 17, 3]
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [int(x) for x in text.split()]}

    text = " ".join(str(i % 900 + 3) for i in range(100))
    r = bench.perplexity(model, Tok(), text, window=32, stride=16)
    assert r["tokens"] == 99 and r["windows"] == 6
    short = bench.perplexity(model, Tok(), text, window=32, stride=16, max_tokens=40)
    assert short["tokens"] == 39
    assert bench.perplexity(model, Tok(), text, window=32)["windows"] == 6  # stride: window // 2
    with pytest.raises(ValueError):
        bench.perplexity(model, Tok(), text, window=16, stride=32)
    with pytest.raises(ValueError, match="too short"):
        bench.perplexity(model, Tok(), "5")


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 10)})

    class Tok:
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [int(c) for c in text]}

    r = bench.perplexity(Uniform(), Tok(), "0123456789" * 30, window=64, stride=32)
    assert r["ppl"] == pytest.approx(10, rel=1e-5) and r["tokens"] == 299


# ----------------------------------------------------------------------------- speed

@pytest.fixture(scope="module")
def tiny():
    from yi_shape import tiny_yi_config

    return random_model(tiny_yi_config(), dtype=torch.float32)


def test_measure_generation_record(tiny):
    r = bench.measure_generation(tiny, batch_size=2, prompt_len=8, new_tokens=4, repeats=3)
    for key in ("ttft_s", "prefill_tok_s", "decode_tok_s", "decode_tok_s_total"):
        assert r[key]["min"] <= r[key]["median"] <= r[key]["max"] and r[key]["min"] > 0
    assert r["decode_tok_s_total"]["median"] == pytest.approx(2 * r["decode_tok_s"]["median"])
    assert r["peak_mb"] > 0 and r["dtype"] == "float32"
    with pytest.raises(ValueError):
        bench.measure_generation(tiny, new_tokens=1)


def test_static_cache_and_compiled_decode_give_the_same_tokens(tiny):
    ids = torch.randint(3, tiny.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    dynamic = speed.timed_greedy(tiny, ids, 6)[2]
    assert dynamic.shape == (2, 6)
    with torch.no_grad():  # the same tokens as transformers' own greedy generate
        ref = tiny.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                            min_new_tokens=6, do_sample=False)[:, 8:]
    assert torch.equal(dynamic, ref)
    assert torch.equal(speed.timed_greedy(tiny, ids, 6, static_cache=True)[2], dynamic)
    # backend="eager": torch.compile's graph capture without code generation (seconds, not minutes)
    from gpu_check import compile_decode

    forward, seconds = compile_decode(tiny, batch_size=2, prompt_len=8, new_tokens=6,
                                            backend="eager")
    assert seconds > 0
    compiled = speed.timed_greedy(tiny, ids, 6, static_cache=True, decode_forward=forward)[2]
    assert torch.equal(compiled, dynamic)
    r = bench.measure_generation(tiny, batch_size=2, prompt_len=8, new_tokens=6, repeats=2,
                                 static_cache=True, decode_forward=forward, label="compiled")
    assert r["cache"] == "static" and r["compiled"] is True and r["decode_tok_s"]["median"] > 0
    plain = bench.measure_generation(tiny, prompt_len=8, new_tokens=3, repeats=1)
    assert plain["cache"] == "dynamic" and plain["compiled"] is False


def test_dtype_speedup_compares_the_same_batch1_setting():
    def rec(dtype, batch, prompt, prefill, decode):
        return {"dtype": dtype, "batch_size": batch, "prompt_len": prompt,
                "prefill_tok_s": {"median": prefill}, "decode_tok_s": {"median": decode}}

    speed = [rec("float32", 1, 512, 600.0, 17.0), rec("float32", 4, 32, 500.0, 10.0),
             rec("float32", 1, 32, 280.0, 18.0), rec("bfloat16", 1, 32, 84.0, 36.0),
             rec("bfloat16", 1, 1024, 1.0, 1.0)]  # no fp32 run at 1024: never compared
    got = bench.dtype_speedup(speed)
    assert got["prompt_len"] == 32
    assert got["prefill"] == pytest.approx(0.3) and got["decode"] == pytest.approx(2.0)
    assert bench.dtype_speedup(speed[:3]) is None  # no bf16 run at all
    assert bench.dtype_speedup([rec("bfloat16", 4, 32, 1.0, 1.0)] + speed[:3]) is None


def test_kv_bytes_and_roofline(tiny):
    c = tiny.config
    assert bench.kv_bytes_per_token(tiny) == 2 * c.num_hidden_layers * c.num_key_value_heads * 128 * 4
    rec = {"prompt_len": 100, "new_tokens": 20, "batch_size": 1, "decode_tok_s": {"median": 50.0}}
    out = bench.roofline(rec, weight_bytes=1e9, kv_per_token=0, bandwidth_gbs=10)
    assert out["roofline_tok_s"] == pytest.approx(10.0) and out["fraction"] == pytest.approx(5.0)


def test_peak_rss_reset():
    before = measure.peak_rss_mb()
    assert before >= measure.rss_mb() > 0
    if measure.reset_peak_rss():
        assert measure.peak_rss_mb() <= before


# ----------------------------------------------------------------------------- JSON

def _record():
    speed = {"label": "x", "dtype": "float32", "device": "cpu", "batch_size": 1, "prompt_len": 8,
             "new_tokens": 4, "repeats": 3, "cache": "dynamic", "compiled": False,
             "ttft_s": {}, "prefill_tok_s": {},
             "decode_tok_s": {}, "decode_tok_s_total": {}, "peak_mb": 1.0, "peak_extra_mb": 0.5}
    mc = {"label": "fp32", "lang": "en", "shots": 0, "n": 4, "acc_ll": 0.5, "acc_gen": 0.25,
          "unparsed": 0, "per_subject": {}, "items": []}
    return bench.results_record(machine="m", model="embedded", speed=[speed], roofline_gbs=10.0,
                                perplexity=[{"label": "fp32", "lang": "en", "ppl": 12.0,
                                             "tokens": 10, "windows": 1}],
                                mc=[mc], lm_eval=[{"lang": "en", "shots": 0, "n": 4, "acc": 0.5,
                                                   "preds": {}}],
                                comparison=[{"label": "fp32"}])


def test_results_validate_and_round_trip(tmp_path):
    record = _record()
    assert "items" not in record["mc"][0] and "preds" not in record["lm_eval"][0]
    path = bench.write_results(record, tmp_path / "r.json")
    back = json.loads(path.read_text(encoding="utf-8"))
    bench.validate(back)
    assert back["schema_version"] == results.SCHEMA_VERSION


@pytest.mark.parametrize("breaks", ["version", "missing", "type", "bool_for_int", "str_for_bool"])
def test_validate_rejects_bad_records(breaks, tmp_path):
    record = _record()
    if breaks == "version":
        record["schema_version"] = 99
    elif breaks == "missing":
        del record["speed"][0]["ttft_s"]
    elif breaks == "bool_for_int":
        record["mc"][0]["n"] = True
    elif breaks == "str_for_bool":
        record["speed"][0]["compiled"] = "no"
    else:
        record["mc"][0]["n"] = "four"
    with pytest.raises(ValueError):
        bench.write_results(record, tmp_path / "r.json")


def test_text_prediction_tells_a_trained_model_from_random_weights(embedded):
    from yi_helpers.bench import TextPrediction, text_prediction
    from yi_helpers.bench.perplexity import TRAINED_VS_CHANCE

    model, tokenizer = embedded
    trained = text_prediction(model, tokenizer)
    assert trained.trained and trained.vs_chance > TRAINED_VS_CHANCE
    assert "checks of what it learned apply" in str(trained)
    from yi_shape import standin_config  # vocabulary 64,000 > the tokenizer's

    noise = text_prediction(random_model(standin_config("tiny"), dtype=torch.float32), tokenizer)
    assert not noise.trained and noise.vs_chance < 2 and "skipped" in str(noise)
    # uniform guessing: perplexity = vocabulary size
    chance = TextPrediction(perplexity=len(tokenizer), vocab_size=len(tokenizer))
    assert chance.vs_chance == 1 and not chance.trained
    given = text_prediction(model, tokenizer, perplexity_value=49.152)
    assert given.vs_chance == pytest.approx(1000) and given.perplexity == 49.152
