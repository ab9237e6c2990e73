"""LoRA fine-tuning with peft and transformers' ``Trainer`` (no home-made training loop).

``train(config)`` loads the base model (a 4-bit QLoRA base on a CUDA GPU by default), wraps it
with LoRA adapters on the attention and MLP projections, trains on assistant-only labels, resumes
from the last checkpoint when one exists, and writes the final adapter atomically. The same
function runs alone, in a notebook, or in every process of ``accelerate launch``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..system import quiet_gptqmodel_banner
from ..units import GB, MB
from .config import ConfigError, FinetuneConfig

__all__ = ["Runtime", "resolve_runtime", "runtime_for_model", "load_base", "lora_config",
           "add_lora", "load_adapter", "trainable_share", "read_rows", "PeakMemory",
           "save_adapter_atomically", "TrainResult", "template_for", "training_arguments",
           "plain_forward", "train"]


@dataclass(frozen=True)
class Runtime:
    """What ``"auto"`` settings became on this machine."""

    device: str  # where training runs: "cpu" or "cuda[:N]"
    load_device: str  # where weights are loaded ("cpu" under FSDP: accelerate shards them)
    dtype: str
    quantization: str  # "none" or "4bit"
    gradient_checkpointing: bool
    distributed: str  # "no", "ddp" or "fsdp"


def resolve_runtime(cfg: FinetuneConfig) -> Runtime:
    """Decide device, dtype, quantization and checkpointing for ``cfg`` on this machine."""
    from ..devices import dtype_name, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    cuda = device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    distributed = "fsdp" if fsdp else ("ddp" if world > 1 else "no")
    if cuda and distributed == "ddp":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dtype = dtype_name(resolve_dtype(cfg.dtype, device))  # "auto": yi_helpers.devices' rule
    quant = cfg.quantization if cfg.quantization != "auto" else (
        "4bit" if cuda and not fsdp else "none")
    if quant == "4bit" and not cuda:
        raise RuntimeError(
            "quantization: 4bit (QLoRA) needs a CUDA GPU. On a CPU, bitsandbytes' 4-bit weights "
            "stop passing gradients after the first generate() call; use quantization: none.")
    checkpointing = cfg.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = cuda
    return Runtime(device=device, load_device="cpu" if fsdp else device, dtype=dtype,
                   quantization=quant, gradient_checkpointing=bool(checkpointing),
                   distributed=distributed)


def runtime_for_model(rt: Runtime, model: Any) -> Runtime:
    """The runtime for a model handed to :func:`train`: it is trained as it was loaded, so QLoRA
    only if it holds 4-bit weights (``"auto"`` chooses 4-bit on a GPU for models ``train``
    loads itself; preparing a 16/32-bit model for k-bit training would upcast it all)."""
    quantized = bool(getattr(model, "is_loaded_in_4bit", False))
    return replace(rt, quantization="4bit" if quantized else "none")


def load_base(cfg: FinetuneConfig, rt: Runtime):
    """``(model, tokenizer)`` to put adapters on, through ``yi_helpers.load``: 16/32-bit, or
    bitsandbytes' NF4 (``quantization="nf4"``) for QLoRA."""
    from ..loading import load

    qlora = rt.quantization == "4bit"
    # bitsandbytes quantizes while loading onto the training device; a 16/32-bit base loads
    # where the runtime says (the CPU under FSDP, which shards it)
    return load(cfg.model, device=rt.device if qlora else rt.load_device, dtype=rt.dtype,
                quantization="nf4" if qlora else None, check_memory=rt.distributed != "fsdp")


def lora_config(cfg: FinetuneConfig | None = None, **overrides: Any):
    """peft ``LoraConfig`` for causal LM on ``cfg.target_modules`` (all projections)."""
    from peft import LoraConfig

    cfg = cfg or FinetuneConfig()
    values = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                  target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    return LoraConfig(**{**values, **overrides})


def _peft_without_broken_gptqmodel() -> None:
    """Compatibility shim: with gptqmodel installed but optimum missing (this hub's dev
    environment, for lesson 05), peft 0.21's check ``is_gptqmodel_available()`` *raises*
    ImportError while dispatching every LoRA layer, so no adapter can be added at all. When the
    check raises, peft cannot use gptqmodel anyway: make its two LoRA dispatchers see it as
    absent. Nothing changes where the check works. The check imports gptqmodel: its import
    banner is kept out of lesson outputs first."""
    quiet_gptqmodel_banner()
    try:
        from peft.import_utils import is_gptqmodel_available

        is_gptqmodel_available()
    except ImportError:
        from peft.tuners.lora import awq, gptq

        for module in (awq, gptq):
            if hasattr(module, "is_gptqmodel_available"):
                module.is_gptqmodel_available = lambda: False


def add_lora(model, cfg: FinetuneConfig | None = None, *, quantized: bool = False,
             gradient_checkpointing: bool = False):
    """The model wrapped with LoRA adapters (only the adapters are trainable)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    _peft_without_broken_gptqmodel()
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(cfg))


def load_adapter(base_model, adapter_dir: str | Path):
    """A saved LoRA adapter put on ``base_model`` (peft ``PeftModel``, inference mode)."""
    from peft import PeftModel

    _peft_without_broken_gptqmodel()
    return PeftModel.from_pretrained(base_model, str(adapter_dir))


def trainable_share(model) -> tuple[int, int, float]:
    """``(trainable, total, percent)`` parameters (peft's count for a peft model: it counts
    4-bit packed weights as the parameters they hold; shared tensors once)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        params = list(model.parameters())  # named/shared parameters appear once
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
    return int(trainable), int(total), 100.0 * trainable / total


# --------------------------------------------------------------------------------------------
# Data


def read_rows(path: str | None, split: str, data_format: str = "auto") -> list[dict]:
    """``{"messages": ...}`` rows from a JSONL file (``messages`` or original-Yi format), or the
    hub chat data set's ``split`` when ``path`` is None."""
    from ..corpus import load_conversations, read_jsonl
    from .data import convert_yi_sft

    if path is None:
        return load_conversations(split)
    parsed = list(read_jsonl(Path(path).read_text(encoding="utf-8").splitlines(), f"{path} "))
    if not parsed:
        raise ValueError(f"{path} has no rows")
    fmt = data_format
    if fmt == "auto":
        first = parsed[0][1]
        fmt = "yi" if isinstance(first, dict) and "prompt" in first else "messages"
    if fmt == "yi":
        return convert_yi_sft(path)
    for number, row in parsed:
        if not isinstance(row, dict) or "messages" not in row:
            raise ValueError(f"{path} line {number}: expected an object with a 'messages' list")
    return [row for _, row in parsed]


# --------------------------------------------------------------------------------------------
# Callbacks: progress bar, per-rank log, peak memory


def _callbacks():
    from transformers import TrainerCallback

    class TextProgress(TrainerCallback):
        """A text progress bar (``yi_helpers.system.progress``) with the last loss, rank 0."""

        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                from ..system import progress

                self.bar = progress(total=state.max_steps, initial=state.global_step,
                                    desc="training", unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    class RankLog(TrainerCallback):
        """Every process appends its steps to ``<output_dir>/logs/rank<N>.jsonl``."""

        def __init__(self, folder: Path):
            self.folder = folder

        def on_step_end(self, args, state, control, **kwargs):
            rank = int(os.environ.get("RANK", "0"))
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / f"rank{rank}.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps({"rank": rank, "step": state.global_step,
                                    "time": round(time.time(), 3)}) + "\n")

    return TextProgress, RankLog


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or on a CPU this process's resident-memory
    high-water mark (``yi_helpers.measure``: VmHWM, restarted when the block starts; sampled
    every 20 ms where it cannot be restarted). ``peak_gb`` after the ``with`` block."""

    def __init__(self, device: str = "cpu"):
        self.device, self.peak_bytes, self._stop = device, 0, threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        from ..measure import rss_mb

        while not self._stop.wait(0.02):
            self.peak_bytes = max(self.peak_bytes, int(rss_mb() * MB))

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            from ..measure import reset_peak_rss, rss_mb

            self.peak_bytes = int(rss_mb() * MB)
            if not reset_peak_rss():
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.peak_bytes = torch.cuda.max_memory_allocated()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            from ..measure import peak_rss_mb

            self.peak_bytes = max(self.peak_bytes, int(peak_rss_mb() * MB))

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / GB


# --------------------------------------------------------------------------------------------
# Saving


def save_adapter_atomically(model, target: str | Path, tokenizer=None) -> Path:
    """Write the adapter (safetensors) to a temporary folder next to ``target``, then rename it
    into place: a crash leaves the previous adapter or none, never a half-written one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    """What a run did: the log (train and eval losses by step), timings, memory, the adapter."""

    log_history: list[dict]
    adapter_dir: Path | None
    started_at_step: int
    global_step: int
    train_seconds: float
    peak_memory_gb: float
    trainable: int
    total: int
    runtime: Runtime
    extra: dict = field(default_factory=dict)

    @property
    def train_losses(self) -> list[tuple[int, float]]:
        return [(e["step"], e["loss"]) for e in self.log_history if "loss" in e]

    @property
    def eval_losses(self) -> list[tuple[int, float]]:
        return [(e["step"], e["eval_loss"]) for e in self.log_history if "eval_loss" in e]


def template_for(cfg: FinetuneConfig, tokenizer) -> object:
    """The chat template to train with: Yi-Chat's ChatML (``"yi"``, default: the same turns as
    the embedded model's own template, without its injected default system prompt), or the
    tokenizer's own. Ask the trained model with the same one (``evaluate.ask(template=...)``)."""
    from ..chat import default_template

    return "yi" if cfg.template == "yi" else default_template(tokenizer)


def training_arguments(cfg: FinetuneConfig, rt: Runtime, checkpoint_dir: Path):
    """transformers ``TrainingArguments`` for ``cfg`` (no reporting services, no tqdm)."""
    from transformers import TrainingArguments

    cuda = rt.device.startswith("cuda")
    return TrainingArguments(
        output_dir=str(checkpoint_dir), max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=2 * cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps, weight_decay=0.0,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy="steps", eval_steps=cfg.eval_steps, eval_on_start=True,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, data_seed=cfg.seed, report_to="none", disable_tqdm=True,
        use_cpu=not cuda, bf16=cuda and rt.dtype == "bfloat16",
        fp16=cuda and rt.dtype == "float16",
        activation_checkpointing=rt.gradient_checkpointing,  # transformers 5 name
        activation_checkpointing_kwargs={"use_reentrant": False},
        remove_unused_columns=False, dataloader_num_workers=0,
        ddp_find_unused_parameters=False, save_only_model=False,
    )


def plain_forward(model: Any) -> Any:
    """``model`` with the autocast wrapper taken off its ``forward``.

    With ``bf16``/``fp16`` mixed precision (a GPU run), the Trainer's accelerate replaces
    ``model.forward`` by one that runs under autocast, and leaves it there after training: the
    model handed back would then compute in bfloat16 while a reloaded adapter computes in its
    own dtype (lesson 04's logits check failed on an H200 that way). A model without the
    wrapper is returned unchanged."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


def train(cfg: FinetuneConfig, *, model=None, tokenizer=None, resume: bool = True,
          callbacks: Sequence[Any] = (), save: bool = True) -> TrainResult:
    """Fine-tune with LoRA as ``cfg`` says and return a ``TrainResult``.

    - ``model`` / ``tokenizer``: an already loaded base (the notebook passes its own; it gets
      the adapters in place); by default ``cfg.model`` is loaded.
    - ``resume``: continue from the last checkpoint in ``<output_dir>/checkpoints`` if any.
    - ``save``: write the final adapter (rank 0) atomically to ``cfg.final_adapter_dir``.
    """
    from transformers import Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    from .data import ChatCollator, tokenize_rows

    rt = resolve_runtime(cfg)
    if cfg.replay_questions and rt.distributed == "fsdp":
        raise ConfigError(
            "replay_questions under FSDP would generate on the unsharded CPU copy of the model: "
            "write the rows once on one GPU (yi_helpers.finetune.replay.replay_rows), add them "
            "to a JSONL train_file, and set replay_questions: 0")
    set_seed(cfg.seed)
    train_rows = read_rows(cfg.train_file, "train", cfg.data_format)
    eval_rows = read_rows(cfg.eval_file, "eval", cfg.data_format)[:cfg.max_eval_rows]
    if model is None:
        model, tokenizer = load_base(cfg, rt)
    elif tokenizer is None:
        raise ValueError("pass the tokenizer together with the model")
    else:
        rt = runtime_for_model(rt, model)
    template = template_for(cfg, tokenizer)
    replayed: list[dict] = []
    if cfg.replay_questions:  # the base model's own replies, asked before any adapter exists
        from .replay import REPLAY_QUESTIONS, replay_rows

        replayed = replay_rows(model, tokenizer, REPLAY_QUESTIONS[:cfg.replay_questions],
                               template=template)
        train_rows = train_rows + replayed
    train_ds = tokenize_rows(tokenizer, train_rows, max_length=cfg.max_length, template=template)
    eval_ds = tokenize_rows(tokenizer, eval_rows, max_length=cfg.max_length, template=template)
    model = add_lora(model, cfg, quantized=rt.quantization == "4bit",
                     gradient_checkpointing=rt.gradient_checkpointing)
    trainable, total, _ = trainable_share(model)

    out = Path(cfg.output_dir)
    checkpoint_dir = out / "checkpoints"
    TextProgress, RankLog = _callbacks()
    trainer = Trainer(model=model, args=training_arguments(cfg, rt, checkpoint_dir),
                      train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=ChatCollator.for_tokenizer(tokenizer))
    for cb in list(trainer.callback_handler.callbacks):
        if isinstance(cb, PrinterCallback) or type(cb).__name__.endswith("ProgressCallback"):
            trainer.remove_callback(cb)
    trainer.add_callback(RankLog(out / "logs"))
    if cfg.progress_bar:
        trainer.add_callback(TextProgress())
    for cb in callbacks:
        trainer.add_callback(cb)

    last = get_last_checkpoint(str(checkpoint_dir)) if resume and checkpoint_dir.is_dir() else None
    started = int(Path(last).name.split("-")[-1]) if last else 0
    start = time.perf_counter()
    with PeakMemory(rt.device) as peak:
        trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    model = plain_forward(model)
    model.eval()
    adapter = None
    if save and trainer.is_world_process_zero():
        adapter = save_adapter_atomically(trainer.model, cfg.final_adapter_dir, tokenizer)
    return TrainResult(log_history=list(trainer.state.log_history),
                       adapter_dir=adapter, started_at_step=started,
                       global_step=trainer.state.global_step, train_seconds=seconds,
                       peak_memory_gb=peak.peak_gb, trainable=trainable, total=total,
                       runtime=rt, extra={"model": model, "tokenizer": tokenizer,
                                         "replay_rows": replayed, "train_rows": len(train_ds)})
