"""The settings of one fine-tuning run, read from YAML and checked before any model loads."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .replay import REPLAY_QUESTIONS

__all__ = ["LLAMA_PROJECTIONS", "MAX_REPLAY", "ConfigError", "FinetuneConfig", "from_dict",
           "load_config", "example_path", "example_configs"]

#: The attention and MLP projections of a Llama-style block (Yi and the embedded model).
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

#: How many general questions ``yi_helpers.finetune.replay`` can replay.
MAX_REPLAY = len(REPLAY_QUESTIONS)


class ConfigError(ValueError):
    """A fine-tuning config that cannot run (unknown key, bad value, missing file)."""


@dataclass
class FinetuneConfig:
    """Everything a run needs; the YAML file uses the same names (see ``yi_helpers/configs``).

    ``"auto"`` values are decided on the machine that runs: bf16 and a 4-bit (QLoRA) base on a
    CUDA GPU, float32 and no quantization on a CPU.
    """

    model: str = "embedded"
    train_file: str | None = None  # None: the hub chat data set (train split)
    eval_file: str | None = None  # None: the hub chat data set (eval split)
    data_format: str = "auto"  # "messages", "yi" (Human:/Assistant: rows) or "auto"
    replay_questions: int = 0  # mix in the base model's own replies to N general questions (replay)
    output_dir: str = "runs/lesson04"  # checkpoints, logs, and the adapter (output_dir/adapter)
    adapter_dir: str | None = None  # where the final adapter goes (default output_dir/adapter)
    max_steps: int = 60
    batch_size: int = 4  # per process
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-4
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))
    max_length: int = 256
    template: str = "yi"  # "yi" (Yi-Chat's ChatML) or "model" (the tokenizer's own template)
    max_eval_rows: int | None = None  # evaluate on the first N eval rows only
    eval_steps: int = 20
    save_steps: int = 20
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    quantization: str = "auto"  # "auto", "none", "4bit" (QLoRA: CUDA and bitsandbytes)
    gradient_checkpointing: bool | str = "auto"  # "auto": on with a CUDA GPU
    progress_bar: bool = True

    def __post_init__(self) -> None:
        checks = {
            "max_steps": self.max_steps >= 1, "batch_size": self.batch_size >= 1,
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1,
            "learning_rate": self.learning_rate > 0, "lora_r": self.lora_r >= 1,
            "lora_alpha": self.lora_alpha > 0, "max_length": self.max_length >= 8,
            "eval_steps": self.eval_steps >= 1, "save_steps": self.save_steps >= 1,
            "logging_steps": self.logging_steps >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1,
        }
        if not 0 <= self.replay_questions <= MAX_REPLAY:
            raise ConfigError(f"replay_questions={self.replay_questions!r} is out of range: the "
                              f"package has {MAX_REPLAY} general questions to replay "
                              "(0 turns replay off)")
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is out of range")
        choices = {"data_format": ("auto", "messages", "yi"),
                   "quantization": ("auto", "none", "4bit"),
                   "dtype": ("auto", "float32", "bfloat16", "float16"),
                   "gradient_checkpointing": (True, False, "auto"),
                   "template": ("yi", "model")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.target_modules or not all(isinstance(m, str) for m in self.target_modules):
            raise ConfigError("target_modules must be a non-empty list of module names")
        for name in ("train_file", "eval_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name}: {path} does not exist (give a JSONL file, or leave "
                                  f"{name} out to use the hub chat data set)")

    @property
    def final_adapter_dir(self) -> Path:
        return Path(self.adapter_dir) if self.adapter_dir else Path(self.output_dir) / "adapter"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_dict(values: dict[str, Any], source: str = "config") -> FinetuneConfig:
    """A checked ``FinetuneConfig``; an unknown key is an error naming the closest known key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(values).__name__}")
    known = [f.name for f in fields(FinetuneConfig)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}.{hint} Known keys: "
                              f"{', '.join(known)}")
    try:
        return FinetuneConfig(**values)
    except TypeError as exc:  # wrong type compared with a number, for example
        raise ConfigError(f"{source}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path, **overrides: Any) -> FinetuneConfig:
    """Read a YAML config (``overrides`` win); relative data paths are taken from the current
    folder. Raises ``ConfigError`` for a missing file, bad YAML or an unknown key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        examples = ", ".join(example_configs())
        raise ConfigError(f"config file {path} does not exist. Examples shipped with the "
                          f"package: {examples} (yi_helpers.finetune.config.example_path(name))")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    values.pop("accelerate", None)  # notes for `accelerate launch`, not settings of the run
    return from_dict({**values, **overrides}, source=str(path))


def example_path(name: str) -> Path:
    """Path of an example config shipped in ``yi_helpers/configs`` (``"embedded"`` or
    ``"embedded.yaml"``)."""
    from importlib import resources

    file = name if name.endswith(".yaml") else f"{name}.yaml"
    path = Path(str(resources.files("yi_helpers") / "configs" / file))
    if not path.is_file():
        raise ConfigError(f"no example config {name!r}; examples: {', '.join(example_configs())}")
    return path


def example_configs() -> list[str]:
    """Names of the example training configs shipped with the package (``accelerate_*.yaml``
    are configs for ``accelerate launch --config_file``, not training configs)."""
    from importlib import resources

    folder = resources.files("yi_helpers") / "configs"
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("accelerate_"))
