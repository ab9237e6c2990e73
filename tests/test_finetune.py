"""yi_helpers.finetune: converter, assistant-only labels, memory planner, LoRA share (against
peft's count), the memory table, atomic adapter saving, and the Trainer's autocast undone.
Training itself is peft + transformers' Trainer (lesson 04's recipe, scripts/lora_sft.py:
tests/test_recipes.py)."""

from __future__ import annotations

import json

import pytest
import torch

from yi_helpers.finetune import memory
from yi_helpers.finetune.data import IGNORE_INDEX, convert_yi_sft, learned_text, tokenize_chat

CONV = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who made Yi?"},
        {"role": "assistant", "content": "01.AI made Yi."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！我是 Yi。"}]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from yi_helpers.embedded import prepare

    return AutoTokenizer.from_pretrained(prepare(verbose=False))


# --- converter --------------------------------------------------------------------------------

def test_convert_multi_turn_yi_rows():
    lines = [json.dumps({"prompt": "Human: hi Assistant: hello Human: who are you? Assistant:",
                         "chosen": " I am Yi. "}), "",
             json.dumps({"prompt": "Human: 1+1? Assistant:", "chosen": "2"})]
    rows = convert_yi_sft(lines)
    assert len(rows) == 2  # the blank line is not a row; no row dropped
    assert rows[0]["messages"] == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "who are you?"}, {"role": "assistant", "content": "I am Yi."}]


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"prompt": "Human: a Assistant:"}', "missing key 'chosen'"),
    ('{"prompt": 3, "chosen": "x"}', "'prompt' must be a string"),
    ('{"prompt": "Human: a Assistant:", "chosen": "  "}', "empty"),
    ('{"prompt": "Hello Assistant:", "chosen": "x"}', "start with 'Human:'"),
    ('{"prompt": "Human: a", "chosen": "x"}', "end with 'Assistant:'"),
    ('{"prompt": "Human: a Human: b Assistant:", "chosen": "x"}', "alternate"),
    ('{"prompt": "Human:  Assistant:", "chosen": "x"}', "empty"),
])
def test_convert_names_line_and_problem(line, problem):
    good = json.dumps({"prompt": "Human: a Assistant:", "chosen": "b"})
    with pytest.raises(ValueError, match=rf"line 3: .*{problem}"):
        convert_yi_sft([good, good, line, good])


def test_convert_file(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "Human: a Assistant:", "chosen": "b"}\n{"prompt": 1}\n')
    with pytest.raises(ValueError, match="sft.jsonl line 2"):
        convert_yi_sft(path)


# --- tokenization -----------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["yi", None])
def test_labels_are_exactly_the_replies(tok, template):
    features = tokenize_chat(tok, CONV, template=template)
    assert len(features["input_ids"]) == len(features["labels"])
    assert learned_text(tok, features) == "01.AI made Yi.<|im_end|>你好！我是 Yi。<|im_end|>"
    # every learned token equals its input token; the prompt part is masked
    pairs = list(zip(features["input_ids"], features["labels"]))
    assert all(label in (IGNORE_INDEX, token) for token, label in pairs)
    assert features["labels"][0] == IGNORE_INDEX
    # the whole sequence is the rendered conversation
    from yi_helpers.chat import render

    text = render(CONV, add_generation_prompt=False, template=template or tok)
    assert tok.decode(features["input_ids"]) == text


def test_lora_share_embedded_and_yi():
    assert memory.lora_parameters("embedded", 16) == 4_884_480  # what peft counts (below)
    assert 3 < memory.lora_share("embedded") < 4
    assert 0.3 < memory.lora_share("01-ai/Yi-6B-Chat") < 1
    with pytest.raises(ValueError, match="unknown target"):
        memory.lora_parameters("embedded", 16, ["qkv"])


def test_training_memory_orders_methods():
    six = {m: memory.training_memory("01-ai/Yi-6B-Chat", m)["total_gb"] for m in memory.METHODS}
    assert six["qlora-4bit"] < six["lora-bf16"] < six["full-bf16"]
    assert 80 < six["full-bf16"] < 120  # why the original code needed 4 GPUs of 60 GB
    assert 5 < six["qlora-4bit"] < 10
    big = memory.training_memory("01-ai/Yi-34B-Chat", "lora-bf16")
    assert big["weights_gb"] > 60  # does not fit one 80 GB GPU with room to train: shard it
    with pytest.raises(ValueError, match="method"):
        memory.training_memory("01-ai/Yi-6B-Chat", "lora-fp8")


def test_memory_table_rows_are_the_planners_numbers():
    rows = memory.memory_table(batch_size=1)
    assert [(r["model"], r["method"]) for r in rows] == [
        (m, method) for m in ("01-ai/Yi-6B-Chat", "01-ai/Yi-34B-Chat") for method in memory.METHODS]
    for r in rows:
        planned = memory.training_memory(r["model"], r["method"], batch_size=1)
        assert r == planned
    default = memory.memory_table(["01-ai/Yi-6B-Chat"])  # batch 4: more activations, same weights
    assert [r["activations_gb"] > s["activations_gb"] for r, s in zip(default, rows)] == [True] * 3
    assert [r["weights_gb"] for r in default] == [r["weights_gb"] for r in rows[:3]]


# --- model-level (tiny Llama) -----------------------------------------------------------------

def _with_lora(model, r):
    """peft's LoRA on the seven projections, as lesson 04's recipe adds it."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                            target_modules=memory.LLAMA_PROJECTIONS,
                                            task_type="CAUSAL_LM"))


def test_peft_share_matches_planner(tiny_llama_dir):
    from yi_helpers import load
    from yi_helpers.models import spec_from_config

    model, _ = load(str(tiny_llama_dir), device="cpu")
    planned = memory.lora_parameters(spec_from_config(model.config), 4)
    peft_model = _with_lora(model, 4)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert trainable == planned
    assert total == sum(p.numel() for p in peft_model.parameters())
    assert 0 < memory.lora_share(spec_from_config(model.config), 4) < 100


def test_atomic_save_leaves_old_adapter_or_none(tiny_llama_dir, tmp_path):
    from yi_helpers import load
    from yi_helpers.finetune.adapters import save_adapter_atomically

    model, tok = load(str(tiny_llama_dir), device="cpu")
    model = _with_lora(model, 2)
    target = tmp_path / "out" / "adapter"
    save_adapter_atomically(model, target, tok)
    assert (target / "adapter_model.safetensors").is_file()
    before = (target / "adapter_model.safetensors").read_bytes()

    def crash(folder, **kwargs):
        (folder / "adapter_model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    model.save_pretrained = crash
    with pytest.raises(KeyboardInterrupt):
        save_adapter_atomically(model, target, tok)
    assert (target / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["adapter"]


def test_saved_adapter_reloads_and_merges_to_the_same_logits(tiny_llama_dir, tmp_path):
    import torch

    from yi_helpers import load
    from peft import PeftModel

    from yi_helpers.finetune.adapters import save_adapter_atomically

    model, tok = load(str(tiny_llama_dir), device="cpu", dtype="float32")
    ids = torch.tensor([tok.encode("Who made Yi? 谁开发了 Yi？")])
    with torch.no_grad():
        base_logits = model(ids).logits
    trained = _with_lora(model, 2)
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA's B starts at zero (no effect): stand in for training
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
        trained_logits = trained(ids).logits
    assert not torch.allclose(trained_logits, base_logits, atol=1e-3)  # the adapter matters
    save_adapter_atomically(trained, tmp_path / "adapter", tok)

    fresh, _ = load(str(tiny_llama_dir), device="cpu", dtype="float32")
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trained_logits, atol=1e-5)
        merged = reloaded.merge_and_unload()
        assert not any("lora" in name for name, _ in merged.named_parameters())
        assert torch.allclose(merged(ids).logits, trained_logits, atol=1e-4)


def test_plain_forward_undoes_the_trainers_bf16_autocast(tiny_llama_dir):
    """A GPU run trains with bf16 mixed precision: accelerate wraps model.forward in autocast and
    leaves it there. plain_forward gives the model back computing in float32 again (the wrapper is
    put on here with the CPU's bf16 autocast, the same code path)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from yi_helpers import load
    from yi_helpers.finetune.adapters import plain_forward

    model, tok = load(str(tiny_llama_dir), device="cpu", dtype="float32")
    ids = torch.tensor([tok.encode("Who made Yi? 谁开发了 Yi？")])
    with torch.no_grad():
        fp32 = model(ids).logits
    # accelerate keeps one process-wide state: an earlier Trainer fixed it to no mixed precision
    # (accelerate's own tests reset it the same way); reset again after, for later Trainers
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        wrapped = Accelerator(cpu=True, mixed_precision="bf16").prepare_model(model)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    with torch.no_grad():
        autocast = wrapped(ids).logits
    assert "_original_forward" in wrapped.__dict__
    assert not torch.allclose(autocast, fp32, atol=1e-4)  # bf16 matmuls: what lesson 04 caught
    plain = plain_forward(wrapped)
    assert plain is model and "_original_forward" not in plain.__dict__
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, fp32)
    assert plain_forward(plain) is plain  # nothing to undo: unchanged


def test_learned_count_counts_only_newly_right_answers():
    from yi_helpers.finetune.evaluate import learned_count

    before = [{"ok": False}, {"ok": True}, {"ok": False}, {"ok": True}]
    after = [{"ok": True}, {"ok": True}, {"ok": False}, {"ok": False}]
    assert learned_count(before, after) == 1
    with pytest.raises(ValueError, match="same questions"):
        learned_count(before, after[:3])  # a missing row would otherwise be counted as not learned


def test_question_messages_put_the_system_prompt_first_or_leave_it_out():
    from yi_helpers.finetune.evaluate import SYSTEM_PROMPT, question_messages

    user = {"role": "user", "content": "Who made Yi?"}
    assert question_messages("Who made Yi?") == [{"role": "system", "content": SYSTEM_PROMPT}, user]
    assert question_messages("Who made Yi?", "Be brief.")[0] == {"role": "system",
                                                                 "content": "Be brief."}
    assert question_messages("Who made Yi?", None) == [user]
    assert question_messages("Who made Yi?", "") == [user]
