"""yi_helpers.finetune: converter, assistant-only labels, config checks, memory planner,
LoRA share, the memory table, atomic adapter saving and reloading, and a real (tiny) training
run that resumes."""

from __future__ import annotations

import json

import pytest
import torch

from yi_helpers.finetune import memory
from yi_helpers.finetune.config import (ConfigError, FinetuneConfig, example_configs,
                                        example_path, from_dict, load_config)
from yi_helpers.finetune.data import (IGNORE_INDEX, ChatCollator, convert_yi_sft, learned_text,
                                      tokenize_chat)

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


def test_collator_pads_with_ignore_index(tok):
    short = tokenize_chat(tok, CONV[1:3])
    long = tokenize_chat(tok, CONV)
    batch = ChatCollator.for_tokenizer(tok)([short, long])
    n = len(short["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(long["input_ids"]))
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][0, n:] == 0).all() and batch["attention_mask"][1].all()


# --- config -----------------------------------------------------------------------------------

def test_example_configs_load():
    names = example_configs()
    assert {"embedded.yaml", "yi6b_lora.yaml", "yi34b_fsdp.yaml"} <= set(names)
    for name in names:
        cfg = load_config(example_path(name))
        assert set(cfg.target_modules) == set(memory.LLAMA_PROJECTIONS)
    assert example_path("accelerate_fsdp").is_file()


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: embedded\nlearning_rat: 0.001\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'.*'learning_rate'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="train_file"):
        from_dict({"train_file": str(tmp_path / "missing.jsonl")})
    with pytest.raises(ConfigError, match="quantization"):
        FinetuneConfig(quantization="8bit")


def test_cli_rejects_bad_config_before_loading(tmp_path, monkeypatch, capsys):
    import yi_helpers.loading as loading
    from yi_helpers.finetune.__main__ import main

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load", boom)
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_step: 3\n")
    assert main(["--config", str(bad)]) == 2
    assert "unknown key 'max_step'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_qlora_on_cpu_is_refused():
    from yi_helpers.finetune.train import resolve_runtime

    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_runtime(FinetuneConfig(device="cpu", quantization="4bit"))
    rt = resolve_runtime(FinetuneConfig(device="cpu"))
    assert (rt.quantization, rt.dtype, rt.gradient_checkpointing) == ("none", "float32", False)


def test_a_model_passed_in_is_trained_as_it_was_loaded():
    from yi_helpers.finetune.train import Runtime, runtime_for_model

    # what "auto" becomes on a GPU: QLoRA, for the model train() would load itself
    gpu = Runtime(device="cuda", load_device="cuda", dtype="bfloat16", quantization="4bit",
                  gradient_checkpointing=True, distributed="no")

    class Loaded:  # what transformers sets on a model from_pretrained loaded in 4-bit
        is_loaded_in_4bit = True

    assert runtime_for_model(gpu, torch.nn.Linear(2, 2)).quantization == "none"
    assert runtime_for_model(gpu, Loaded()).quantization == "4bit"
    assert runtime_for_model(gpu, torch.nn.Linear(2, 2)).dtype == "bfloat16"  # the rest kept


def test_qlora_base_loads_in_4bit(tiny_llama_dir):
    """load_base's QLoRA path (the CLI's default on a GPU) loads NF4 weights through
    bitsandbytes, whose CPU backend lets it run here; training on it stays GPU-only."""
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM

    from yi_helpers.finetune.train import Runtime, load_base, runtime_for_model

    rt = Runtime(device="cpu", load_device="cpu", dtype="bfloat16", quantization="4bit",
                 gradient_checkpointing=False, distributed="no")
    model, tok = load_base(FinetuneConfig(model=str(tiny_llama_dir)), rt)
    quantized = {n for n, m in model.named_modules() if isinstance(m, Linear4bit)}
    assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    assert runtime_for_model(rt, model).quantization == "4bit"
    eos = model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    ids = torch.tensor([[1, 2, 3, 4]])
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16)
    with torch.no_grad():
        got, want = model(ids).logits.float(), ref(ids).logits.float()
    error = ((got - want).norm() / want.norm()).item()
    assert 0 < error < 0.3, error  # quantized (not the same weights), yet close


# --- memory -----------------------------------------------------------------------------------

def test_lora_share_embedded_and_yi():
    assert memory.lora_parameters("embedded", 16) == 4_884_480  # what peft counts (below)
    assert 3 < memory.lora_share("embedded") < 4
    assert 0.3 < memory.lora_share("01-ai/Yi-6B-Chat") < 1
    with pytest.raises(ValueError, match="unknown target"):
        memory.lora_parameters("embedded", 16, ["qkv"])


def test_training_memory_orders_methods():
    six = {m: memory.training_memory("01-ai/Yi-6B-Chat", m).total_gb for m in memory.METHODS}
    assert six["qlora-4bit"] < six["lora-bf16"] < six["full-bf16"]
    assert 80 < six["full-bf16"] < 120  # why the original code needed 4 GPUs of 60 GB
    assert 5 < six["qlora-4bit"] < 10
    big = memory.training_memory("01-ai/Yi-34B-Chat", "lora-bf16")
    assert big.weights_gb > 60  # does not fit one 80 GB GPU with room to train: shard it
    with pytest.raises(ValueError, match="method"):
        memory.training_memory("01-ai/Yi-6B-Chat", "lora-fp8")


def test_memory_table_rows_are_the_planners_numbers():
    rows = memory.memory_table(batch_size=1)
    assert [(r["model"], r["method"]) for r in rows] == [
        (m, method) for m in ("01-ai/Yi-6B-Chat", "01-ai/Yi-34B-Chat") for method in memory.METHODS]
    for r in rows:
        planned = memory.training_memory(r["model"], r["method"], batch_size=1)
        assert (r["weights_gb"], r["state_gb"], r["activations_gb"], r["total_gb"]) == (
            planned.weights_gb, planned.trainable_state_gb, planned.activations_gb, planned.total_gb)
    default = memory.memory_table(["01-ai/Yi-6B-Chat"])  # batch 4: more activations, same weights
    assert [r["activations_gb"] > s["activations_gb"] for r, s in zip(default, rows)] == [True] * 3
    assert [r["weights_gb"] for r in default] == [r["weights_gb"] for r in rows[:3]]


# --- model-level (tiny Llama) -----------------------------------------------------------------

def test_peft_share_matches_planner(tiny_llama_dir):
    from yi_helpers import load
    from yi_helpers.finetune.train import add_lora, trainable_share
    from yi_helpers.models import spec_from_config

    model, _ = load(str(tiny_llama_dir), device="cpu")
    planned = memory.lora_parameters(spec_from_config(model.config), 4)
    peft_model = add_lora(model, FinetuneConfig(lora_r=4))
    trainable, total, percent = trainable_share(peft_model)
    assert trainable == planned
    assert total == sum(p.numel() for p in peft_model.parameters())
    assert 0 < percent < 100


def test_atomic_save_leaves_old_adapter_or_none(tiny_llama_dir, tmp_path):
    from yi_helpers import load
    from yi_helpers.finetune.train import add_lora, save_adapter_atomically

    model, tok = load(str(tiny_llama_dir), device="cpu")
    model = add_lora(model, FinetuneConfig(lora_r=2))
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
    from yi_helpers.finetune.train import add_lora, load_adapter, save_adapter_atomically

    model, tok = load(str(tiny_llama_dir), device="cpu", dtype="float32")
    ids = torch.tensor([tok.encode("Who made Yi? 谁开发了 Yi？")])
    with torch.no_grad():
        base_logits = model(ids).logits
    trained = add_lora(model, FinetuneConfig(lora_r=2))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA's B starts at zero (no effect): stand in for training
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
        trained_logits = trained(ids).logits
    assert not torch.allclose(trained_logits, base_logits, atol=1e-3)  # the adapter matters
    save_adapter_atomically(trained, tmp_path / "adapter", tok)

    fresh, _ = load(str(tiny_llama_dir), device="cpu", dtype="float32")
    reloaded = load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trained_logits, atol=1e-5)
        merged = reloaded.merge_and_unload()
        assert not any("lora" in name for name, _ in merged.named_parameters())
        assert torch.allclose(merged(ids).logits, trained_logits, atol=1e-4)


def test_plain_forward_undoes_the_trainers_bf16_autocast(tiny_llama_dir):
    """A GPU run trains with bf16 mixed precision: accelerate wraps model.forward in autocast and
    leaves it there. train() hands the model back computing in float32 again (the wrapper is
    put on here with the CPU's bf16 autocast, the same code path)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from yi_helpers import load
    from yi_helpers.finetune.train import plain_forward

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


def test_train_resumes_from_last_checkpoint(tiny_llama_dir, tmp_path):
    from yi_helpers.finetune.train import train

    base = dict(model=str(tiny_llama_dir), output_dir=str(tmp_path / "run"), batch_size=2,
                eval_steps=2, save_steps=2, logging_steps=1, max_eval_rows=4, lora_r=2,
                device="cpu", progress_bar=False)
    first = train(from_dict({**base, "max_steps": 2}))
    assert (first.started_at_step, first.global_step) == (0, 2)
    assert (first.adapter_dir / "adapter_model.safetensors").is_file()
    assert first.eval_losses and first.train_losses
    second = train(from_dict({**base, "max_steps": 4}))
    assert (second.started_at_step, second.global_step) == (2, 4)
    steps = [json.loads(line)["step"]
             for line in (tmp_path / "run" / "logs" / "rank0.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the second run did not start over
    assert second.adapter_dir == first.adapter_dir
    assert not [p for p in second.adapter_dir.parent.iterdir() if p.name.startswith(".")]


def test_learned_count_counts_only_newly_right_answers():
    from yi_helpers.finetune.evaluate import learned_count

    before = [{"ok": False}, {"ok": True}, {"ok": False}, {"ok": True}]
    after = [{"ok": True}, {"ok": True}, {"ok": False}, {"ok": False}]
    assert learned_count(before, after) == 1
    with pytest.raises(ValueError, match="same questions"):
        learned_count(before, after[:3])  # a missing row would otherwise be counted as not learned


def test_question_messages_put_the_system_prompt_first_or_leave_it_out():
    from yi_helpers.finetune.evaluate import question_messages
    from yi_helpers.finetune.hub_chat import SYSTEM_PROMPT

    user = {"role": "user", "content": "Who made Yi?"}
    assert question_messages("Who made Yi?") == [{"role": "system", "content": SYSTEM_PROMPT}, user]
    assert question_messages("Who made Yi?", "Be brief.")[0] == {"role": "system",
                                                                 "content": "Be brief."}
    assert question_messages("Who made Yi?", None) == [user]
    assert question_messages("Who made Yi?", "") == [user]
