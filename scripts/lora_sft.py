"""LoRA (or QLoRA) fine-tuning of a chat model on your conversations: lesson 04 as one script.

Plain peft + transformers' Trainer; nothing from the Yi Learning Hub is imported, so you can copy
this file into your own project. The data is JSONL, one conversation per line:

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

Only the last reply of each conversation (and its <|im_end|>) is learned.

    # one GPU, Yi-6B-Chat in 4-bit (QLoRA, about 7 GB)
    python lora_sft.py --model 01-ai/Yi-6B-Chat --train-file train.jsonl --qlora
    # eight GPUs, one process each (DDP); each process holds a whole copy of the model
    accelerate launch --num_processes 8 lora_sft.py --model 01-ai/Yi-6B-Chat --train-file train.jsonl
    # the CPU (float32): a first look with a small model
    python lora_sft.py --model HuggingFaceTB/SmolLM2-135M-Instruct --train-file train.jsonl --max-steps 20

The adapter goes to OUTPUT_DIR/adapter. Run the same command again to resume from the last
checkpoint in OUTPUT_DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for number, row in enumerate(rows, 1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            raise SystemExit(f"{path}, conversation {number}: expected "
                             '{"messages": [..., {"role": "assistant", ...}]}')
    return rows


def tokenize(tokenizer, messages: list[dict], max_length: int) -> dict:
    """input_ids, and labels that are -100 (ignored by the loss) except on the last reply."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                           tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt) or "<|im_end|>" not in full[len(prompt):]:
        raise SystemExit("the chat template does not put the reply after the generation prompt, "
                         "ending with <|im_end|>: this script expects a ChatML template (Yi-Chat)")
    end = full.index("<|im_end|>", len(prompt)) + len("<|im_end|>")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(prompt):end], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + reply_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + reply_ids)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a hub id or a local folder")
    parser.add_argument("--train-file", required=True, help="JSONL of {'messages': [...]}")
    parser.add_argument("--eval-file", help="held-out conversations, same format")
    parser.add_argument("--output-dir", default="runs/lora_sft")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4, help="per process")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per conversation")
    parser.add_argument("--qlora", action="store_true", help="the base in 4-bit NF4 (CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig,
                              DataCollatorForSeq2Seq, Trainer, TrainingArguments)
    from transformers.trainer_utils import get_last_checkpoint

    cuda = torch.cuda.is_available()
    if args.qlora and not cuda:
        raise SystemExit("--qlora needs a CUDA GPU (bitsandbytes' 4-bit training); drop it on a CPU")
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set = [tokenize(tokenizer, r["messages"], args.max_length)
                 for r in read_jsonl(args.train_file)]
    eval_set = ([tokenize(tokenizer, r["messages"], args.max_length)
                 for r in read_jsonl(args.eval_file)] if args.eval_file else None)

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=dtype) if args.qlora else None
    # under accelerate launch each process loads its own copy; Trainer moves it to its GPU
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, quantization_config=bnb)
    if args.qlora:
        model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r,
                                             lora_dropout=0.0, target_modules=LLAMA_PROJECTIONS,
                                             task_type="CAUSAL_LM"))
    model.print_trainable_parameters()

    training = TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.learning_rate,
        lr_scheduler_type="linear", weight_decay=0.0, seed=args.seed, data_seed=args.seed,
        logging_steps=10, save_strategy="steps", save_steps=max(1, args.max_steps // 4),
        save_total_limit=2, eval_strategy="steps" if eval_set else "no",
        eval_steps=max(1, args.max_steps // 4), report_to="none",
        use_cpu=not cuda,  # without CUDA: the CPU, and gloo between accelerate's processes
        bf16=cuda, activation_checkpointing=cuda,
        activation_checkpointing_kwargs={"use_reentrant": False},
        ddp_find_unused_parameters=False,
    )
    trainer = Trainer(model=model, args=training, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=DataCollatorForSeq2Seq(tokenizer))
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        print(f"resuming from {last}")
    trainer.train(resume_from_checkpoint=last)
    print(f"process {trainer.args.process_index} of {trainer.args.world_size}: "
          f"{trainer.state.global_step} steps")
    if trainer.is_world_process_zero():
        adapter = Path(args.output_dir) / "adapter"
        trainer.model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        print(f"adapter saved to {adapter}")


if __name__ == "__main__":
    main()
