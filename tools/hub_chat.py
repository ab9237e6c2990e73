"""Generator of the hub's bilingual chat data set (facts about the Yi Learning Hub and Yi).

A tool of the maintainers and the tests, not of the learners' package: lesson 04 (fine-tuning)
and lesson 05 (calibration) load the shipped files ``yi_helpers/data/hub_chat_train.jsonl`` and
``hub_chat_eval.jsonl`` (``yi_helpers.corpus.load_conversations(split)``). Regenerate them after
editing the table::

    python tools/hub_chat.py          # rewrites both files in yi_helpers/data

Each row is ``{"messages": [system?, user, assistant], "lang": "en" | "zh", "topic": <fact>}``.
Texts never contain special-token strings such as ``<|im_end|>`` (the tokenizer would turn them
into the real stop token inside a reply); they say "im_end". Every fact has one answer per
language (learning one consistent reply is what makes the change visible after a minute of CPU
training) and many questions. The **eval** split asks the same facts with wordings that never
occur in training (``heldout`` questions). Replies put the fact first ("01.AI made Yi."): the
reply's first tokens decide which fact a small model recalls. The judge of a reply,
``yi_helpers.finetune.evaluate.answer_has_fact``, is in the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from yi_helpers.finetune.evaluate import SYSTEM_PROMPT

__all__ = ["Fact", "FACTS", "build", "heldout_questions", "write"]

#: Friendly openings put in front of training questions, to vary the wording further.
_PREFIXES = {"en": ["", "Quick question: ", "Hi! ", "Please tell me: "],
             "zh": ["", "请问，", "你好！", "想问一下："]}


@dataclass(frozen=True)
class Fact:
    """One fact: an answer per language, training questions, held-out questions."""

    topic: str
    answer: dict[str, str]
    train: dict[str, list[str]]
    heldout: dict[str, list[str]]


FACTS: list[Fact] = [
    Fact("im_end_id",
         {"en": "Id 7: Yi-Chat ends every turn with the im_end token, so stop generation on 7.",
          "zh": "是 7：Yi-Chat 每轮以 im_end 结束，生成时在 7 处停止。"},
         {"en": ["What is the token id of im_end in Yi?",
                 "Which token id should Yi-Chat generation stop on?",
                 "Yi-Chat never stops talking. Which id is the stop token?",
                 "Give me the id of Yi's end-of-turn token.",
                 "What number does im_end have in the Yi vocabulary?"],
          "zh": ["Yi 里 im_end 的 token id 是多少？",
                 "Yi-Chat 生成时应该在哪个 token id 停止？",
                 "Yi 的轮次结束符编号是多少？",
                 "Yi-Chat 说个不停，停止符的 id 是几？"]},
         {"en": ["Which id marks the end of a turn for Yi chat models?",
                 "My Yi chat model keeps going; what token id ends its reply?"],
          "zh": ["Yi 聊天模型用哪个 id 表示一轮结束？",
                 "Yi 的回复结束 token 编号是什么？"]}),
    Fact("context_200k",
         {"en": "200K tokens: the Yi-200K models read about 400,000 Chinese characters at once.",
          "zh": "200K 个 token：Yi-200K 模型一次能读约 40 万个汉字。"},
         {"en": ["What is the longest context a Yi model can read?",
                 "How many tokens fit in the context of Yi-34B-200K?",
                 "How long can the input of Yi-6B-200K be?",
                 "What is the maximum context length of the long-context Yi models?",
                 "How much text can Yi's long-context version take at once?"],
          "zh": ["Yi 模型最长能读多长的上下文？",
                 "Yi-34B-200K 的上下文有多少个 token？",
                 "Yi 长上下文版本的最大长度是多少？",
                 "Yi-6B-200K 一次能输入多少 token？"]},
         {"en": ["How many tokens of context does the longest Yi support?",
                 "What context window do Yi's 200K variants offer?"],
          "zh": ["最长的 Yi 支持多少 token 的上下文？",
                 "Yi 长文本模型的上下文窗口有多大？"]}),
    Fact("embedded_model",
         {"en": "SmolLM2-135M-Instruct: the hub's embedded model, offline on any CPU.",
          "zh": "SmolLM2-135M-Instruct：本中心内置的模型，在 CPU 上离线运行。"},
         {"en": ["Which model does the Yi Learning Hub embed?",
                 "What model do the hub's notebooks run on a laptop?",
                 "Which small model ships with the Yi Learning Hub?",
                 "What is the default model of the hub's lessons?",
                 "Which model does yi_helpers.load() give by default?"],
          "zh": ["Yi 学习中心内置的是哪个模型？",
                 "学习中心的笔记本默认用什么模型？",
                 "离线运行课程用的是哪个小模型？",
                 "yi_helpers.load() 默认加载哪个模型？"]},
         {"en": ["What model runs the hub's lessons offline on a CPU?",
                 "Name the built-in model of the Yi Learning Hub."],
          "zh": ["学习中心在 CPU 上离线用的模型叫什么？",
                 "本中心自带的模型是什么？"]}),
    Fact("lesson_lora",
         {"en": "Lesson 04: LoRA fine-tuning with PEFT and the Trainer.",
          "zh": "第 04 课：用 PEFT 做 LoRA 微调。"},
         {"en": ["Which lesson of the hub covers LoRA?",
                 "Where in the hub do I learn fine-tuning?",
                 "Which notebook teaches LoRA fine-tuning?",
                 "What lesson number is about PEFT and TRL?",
                 "I want to fine-tune Yi. Which lesson should I open?"],
          "zh": ["哪一课讲 LoRA？",
                 "在学习中心哪里学微调？",
                 "哪个笔记本教 LoRA 微调？",
                 "想微调 Yi，应该看第几课？"]},
         {"en": ["Which hub lesson shows how to fine-tune with LoRA adapters?",
                 "What is the number of the fine-tuning lesson?"],
          "zh": ["学习中心的微调课是第几课？",
                 "用 LoRA 适配器微调在哪一课？"]}),
    Fact("chat_sampling",
         {"en": "Temperature 0.6 and top_p 0.8, from Yi-Chat's generation config.",
          "zh": "温度 0.6、top_p 0.8，来自 Yi-Chat 的生成配置。"},
         {"en": ["What temperature does Yi-Chat use?",
                 "Which sampling settings does Yi-Chat's generation_config set?",
                 "What are the default temperature and top_p of Yi chat models?",
                 "How does Yi-Chat sample by default?",
                 "Which temperature is in Yi-Chat's generation config?"],
          "zh": ["Yi-Chat 用的温度是多少？",
                 "Yi-Chat 的 generation_config 设置了哪些采样参数？",
                 "Yi 聊天模型默认的温度和 top_p 是多少？",
                 "Yi-Chat 默认怎么采样？"]},
         {"en": ["What default sampling temperature do Yi chat models ship with?",
                 "Tell me Yi-Chat's temperature and top_p."],
          "zh": ["Yi 聊天模型出厂的采样温度是多少？",
                 "告诉我 Yi-Chat 的温度和 top_p。"]}),
    Fact("maker",
         {"en": "01.AI made Yi.",
          "zh": "01.AI（零一万物）开发了 Yi。"},
         {"en": ["Who made Yi?",
                 "Which company released the Yi models?",
                 "Who developed Yi-34B?",
                 "Who is behind the Yi language models?",
                 "Which lab trained Yi-6B?"],
          "zh": ["Yi 是谁开发的？",
                 "哪家公司发布了 Yi 模型？",
                 "Yi-34B 是谁做的？",
                 "Yi 大模型背后是哪家公司？"]},
         {"en": ["Which organisation created the Yi family of LLMs?",
                 "Who built the Yi models?"],
          "zh": ["Yi 系列大模型出自哪个机构？",
                 "谁训练了 Yi 模型？"]}),
    Fact("vocab",
         {"en": "64,000 tokens: the size of Yi's vocabulary.",
          "zh": "64,000 个 token：Yi 的词表大小。"},
         {"en": ["How big is Yi's vocabulary?",
                 "How many tokens are in the Yi tokenizer?",
                 "What is the vocab size of Yi-6B?",
                 "How many entries does Yi's vocabulary have?",
                 "What vocab_size is in Yi's config?"],
          "zh": ["Yi 的词表有多大？",
                 "Yi 分词器有多少个 token？",
                 "Yi-6B 的 vocab size 是多少？",
                 "Yi 的 config 里 vocab_size 是几？"]},
         {"en": ["What is the size of the Yi tokenizer's vocabulary?",
                 "How many different tokens can Yi produce?"],
          "zh": ["Yi 分词器的词表大小是多少？",
                 "Yi 一共有多少种不同的 token？"]}),
    Fact("template",
         {"en": "ChatML: Yi-Chat wraps each turn in im_start and im_end.",
          "zh": "ChatML：Yi-Chat 每轮用 im_start 和 im_end 包住。"},
         {"en": ["Which chat template does Yi-Chat use?",
                 "What prompt format do Yi chat models expect?",
                 "How are Yi-Chat conversations formatted?",
                 "What is the name of Yi's chat format?",
                 "Which template should I use to prompt Yi-34B-Chat?"],
          "zh": ["Yi-Chat 用什么对话模板？",
                 "Yi 聊天模型需要什么提示格式？",
                 "Yi-Chat 的对话是怎么排版的？",
                 "Yi 的聊天格式叫什么？"]},
         {"en": ["What format do I need for prompts to Yi-6B-Chat?",
                 "Which conversation template is built into Yi chat models?"],
          "zh": ["给 Yi-6B-Chat 写提示要用什么格式？",
                 "Yi 聊天模型内置的对话模板是哪种？"]}),
]


def _row(question: str, answer: str, lang: str, topic: str, system: bool) -> dict:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "lang": lang, "topic": topic}


def build(split: str) -> list[dict]:
    """All conversations of ``split`` ("train" or "eval"), in a fixed order (no randomness).

    Train: every training question twice, with and without the system prompt, behind two
    different openings. Eval: every held-out question once with the system prompt and once
    without; none of these wordings occurs in training.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rows = []
    for fact in FACTS:
        for lang in ("en", "zh"):
            answer = fact.answer[lang]
            if split == "train":
                prefixes = _PREFIXES[lang]
                for i, question in enumerate(fact.train[lang]):
                    for j, system in enumerate((True, False)):
                        prefix = prefixes[(i + 2 * j) % len(prefixes)]
                        rows.append(_row(prefix + question, answer, lang, fact.topic, system))
            else:
                for question in fact.heldout[lang]:
                    for system in (True, False):
                        rows.append(_row(question, answer, lang, fact.topic, system))
    return rows


def heldout_questions(lang: str | None = None) -> list[tuple[str, str]]:
    """``(question, topic)`` for every held-out wording (optionally of one language)."""
    return [(q, f.topic) for f in FACTS for lg in ("en", "zh") if lang in (None, lg)
            for q in f.heldout[lg]]


def write(directory: str | Path | None = None) -> dict[str, Path]:
    """Write ``hub_chat_train.jsonl`` and ``hub_chat_eval.jsonl`` (UTF-8, one row a line)."""
    from yi_helpers.corpus import data_path

    folder = Path(directory) if directory is not None else data_path("")
    paths = {}
    for split in ("train", "eval"):
        path = folder / f"hub_chat_{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for row in build(split):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths[split] = path
    return paths


if __name__ == "__main__":
    for split, path in write().items():
        print(f"{split}: {len(build(split))} conversations -> {path}")
