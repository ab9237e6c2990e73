"""Chat templates, multi-turn chat and stop tokens for Yi (and any ChatML model).

Yi chat models are trained on ChatML: ``<|im_start|>user\\nhi<|im_end|>\\n`` per message, then
``<|im_start|>assistant\\n``. A reply ends with ``<|im_end|>``; generation must stop there (the
"never stops" problem).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["IM_START", "IM_END", "YI_CHAT_TEMPLATE", "YI_CHAT_SAMPLING", "YI_DEMO_SAMPLING",
           "validate_messages", "render", "stop_token_ids", "chat", "chat_batch", "Conversation",
           "TokenView"]

logger = logging.getLogger(__name__)

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = ("system", "user", "assistant")

#: Yi chat's stop ids: ``<|im_end|>`` (7) ends a turn, ``<|endoftext|>`` (2) is the eos.
YI_CHAT_STOP_IDS = (7, 2)
#: Sampling of the Yi chat models' ``generation_config.json``, and of Yi's web demo.
YI_CHAT_SAMPLING = dict(temperature=0.6, top_p=0.8)
YI_DEMO_SAMPLING = YI_CHAT_SAMPLING | dict(repetition_penalty=1.2)

#: The Yi (1.0) chat models' template, ``tokenizer_config.json`` → ``chat_template``
#: (byte-identical to the one in yi-facts.md). No default system prompt is injected.
YI_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: The Yi-1.5 chat models' template: the system message raw (no ``<|im_start|>system``), the
#: assistant header after every user turn whatever ``add_generation_prompt`` says. Byte for byte
#: the text of Xinference's registry (``llm_family.json``, "Yi-1.5-chat"), OpenVINO GenAI's tests
#: (``tokenizer_configs.py``) and LocalAI (``core/config/guesser.go``); 01.AI's own
#: ``tokenizer_config.json`` could not be read here: very likely the official text, unverified.
YI15_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
    "{% endif %}{% if system_message is defined %}{{ system_message }}{% endif %}"
    "{% for message in messages %}{% set content = message['content'] %}"
    "{% if message['role'] == 'user' %}"
    "{{ '<|im_start|>user\\n' + content + '<|im_end|>\\n<|im_start|>assistant\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}"
)

TEMPLATES = {"yi": YI_CHAT_TEMPLATE, "yi-1.5": YI15_CHAT_TEMPLATE}

# transformers compiles chat templates in the same kind of sandbox, with these options.
_JINJA = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """The conversation as ``{"role", "content"}`` dicts, or a ``ValueError`` naming the message
    and the rule: a non-empty list; roles system, user, assistant; string contents; a system
    message only first."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            "messages must be a list of dicts like [{'role': 'user', 'content': 'Hi'}], "
            f"got {type(messages).__name__}"
        )
    if len(messages) == 0:
        raise ValueError("messages is empty: add at least one {'role': 'user', 'content': ...}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', "
                             f"got {type(message).__name__}: {message!r}")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"messages[{i}] has no {key!r} key: {dict(message)!r}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"messages[{i}]: role must be one of 'system', 'user', 'assistant', "
                             f"got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}] ({role}): content must be a string, "
                             f"got {type(content).__name__}")
        if role == "system" and i != 0:
            raise ValueError(f"messages[{i}]: a system message may only be the first message "
                             "(put the instructions in messages[0])")
        checked.append({"role": role, "content": content})
    return checked


def render(messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True,
           template: Any = "yi") -> str:
    """The prompt string for ``messages``.

    ``template``: ``"yi"``, ``"yi-1.5"``, a Jinja template string, or a tokenizer (its own
    template). ``add_generation_prompt`` ends it with ``<|im_start|>assistant\\n`` so the model
    writes the reply (without it the model may continue the user's turn).
    """
    checked = validate_messages(messages)
    if hasattr(template, "apply_chat_template"):
        if not getattr(template, "chat_template", None):
            raise ValueError("this tokenizer has no chat template: pass template='yi' or set "
                             "tokenizer.chat_template = YI_CHAT_TEMPLATE")
        return template.apply_chat_template(checked, tokenize=False,
                                            add_generation_prompt=add_generation_prompt)
    if isinstance(template, str) and template in TEMPLATES:
        source = TEMPLATES[template]
    elif isinstance(template, str) and ("{%" in template or "{{" in template):
        source = template
    else:
        raise ValueError(f"template must be 'yi', 'yi-1.5', a Jinja template or a tokenizer, "
                         f"got {template!r}")
    return _JINJA.from_string(source).render(messages=checked,
                                             add_generation_prompt=add_generation_prompt)


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Token ids generation must stop at: ``<|im_end|>`` first, then the eos ids."""
    ids: list[int] = []
    candidates = [tokenizer.get_vocab().get(IM_END), tokenizer.eos_token_id]
    if model is not None:
        candidates.append(model.generation_config.eos_token_id)
    for c in candidates:
        for token_id in (c if isinstance(c, (list, tuple)) else [c]):
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return ids


def ensure_pad_token(tokenizer: Any) -> int:
    """The pad id, setting ``unk`` (or eos) as pad first when the tokenizer has none."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer.pad_token_id


def default_template(tokenizer: Any) -> Any:
    """The tokenizer itself when it carries a chat template (the model's own), else ``"yi"``."""
    return tokenizer if getattr(tokenizer, "chat_template", None) else "yi"


SAMPLING_KNOBS = ("temperature", "top_p", "top_k", "min_p")


def generation_kwargs(tokenizer: Any, model: Any, max_new_tokens: int,
                      sampling: dict[str, Any]) -> dict[str, Any]:
    """``generate``'s keyword arguments: ``sampling``, greedy unless a sampling knob is given
    (same prompt, same reply), stopping at Yi's stop ids."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    kwargs = dict(sampling)
    if not kwargs.setdefault("do_sample", any(k in kwargs for k in SAMPLING_KNOBS)):
        # greedy: the knobs dropped, and the model's own sampling defaults (Yi chat: temperature
        # 0.6, top_p 0.8) cleared so generate() does not warn
        kwargs = {k: v for k, v in kwargs.items() if k not in SAMPLING_KNOBS}
        kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    # max_length=None: the reply length is max_new_tokens, not the model's own max_length (Yi
    # chat models ship 4096, and generate() warns when both are set)
    kwargs.update(max_new_tokens=max_new_tokens, max_length=None,
                  eos_token_id=stop_token_ids(tokenizer, model),
                  pad_token_id=ensure_pad_token(tokenizer))
    return kwargs


def cut_at_stop(token_ids: list[int], stops: list[int]) -> list[int]:
    """The ids before the first stop id."""
    return token_ids[:next((i for i, t in enumerate(token_ids) if t in stops), len(token_ids))]


def fit_window(model: Any, n: int, max_new_tokens: int) -> int:
    """``max_new_tokens`` cut (and logged) so that a reply after ``n`` prompt tokens stays in the
    model's window; a prompt with no room for a reply raises ``ContextTooLongError``."""
    from .long_context import check_window, context_window

    check_window(model.config, n + 1)  # at least one token of reply
    window = context_window(model.config)
    if n + max_new_tokens > window:
        logger.warning("max_new_tokens=%d would run past the %d-token window: %d new tokens",
                       max_new_tokens, window, window - n)
        max_new_tokens = window - n
    return max_new_tokens


def chat(model: Any, tokenizer: Any, messages: Sequence[Mapping[str, str]], *,
         max_new_tokens: int = 256, template: Any = None, **sampling: Any) -> str:
    """The assistant's reply to ``messages``, without special tokens.

    Stops at ``<|im_end|>`` and the eos ids. Greedy unless a sampling argument is given
    (``temperature=0.6, top_p=0.8``...). ``template`` defaults to the tokenizer's own (``"yi"``
    when it has none). A prompt longer than the model's window raises ``ContextTooLongError``
    before any work. (Lesson 10 streams a reply with transformers' ``TextIteratorStreamer``.)
    """
    return chat_batch(model, tokenizer, [messages], max_new_tokens=max_new_tokens,
                      template=template, **sampling)[0]


def chat_batch(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, str]]],
               *, max_new_tokens: int = 256, template: Any = None, **sampling: Any) -> list[str]:
    """Replies to several conversations in one batch (arguments: as :func:`chat`'s). The shorter
    prompts are padded on the *left* (a decoder-only model generates at the right end of each
    row) and the attention mask hides the padding: greedy replies equal one-by-one replies."""
    import torch

    inputs, kwargs = _prepare(model, tokenizer, conversations, template, max_new_tokens, sampling)
    with torch.no_grad():
        out = model.generate(**inputs, **kwargs)
    width = inputs["input_ids"].shape[1]
    return [tokenizer.decode(cut_at_stop(row[width:].tolist(), kwargs["eos_token_id"]),
                             skip_special_tokens=True).strip() for row in out]


def _prepare(model: Any, tokenizer: Any, conversations: Sequence[Any], template: Any,
             max_new_tokens: int, sampling: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The conversations' prompts, left-padded, and ``generate``'s keyword arguments."""
    if template is None:
        template = default_template(tokenizer)
    prompts = [render(c, add_generation_prompt=True, template=template) for c in conversations]
    ensure_pad_token(tokenizer)
    # The template already wrote every special token: add none (Yi adds no BOS either). Left
    # padding for this call only: the shared tokenizer is not changed (another thread may use it).
    inputs = tokenizer(prompts, add_special_tokens=False, padding=True, padding_side="left",
                       return_tensors="pt").to(model.device)
    max_new_tokens = fit_window(model, inputs["input_ids"].shape[1], max_new_tokens)
    return inputs, generation_kwargs(tokenizer, model, max_new_tokens, sampling)


class Conversation:
    """A chat history that keeps itself inside the model's context.

    >>> conv = Conversation(tokenizer, system="You are concise.", max_context=2048)
    >>> conv.add_user("Hi!"); reply = conv.reply(model)

    Before each reply, if the prompt plus ``max_new_tokens`` would not fit in ``max_context``,
    the oldest user/assistant turns are dropped (never the system message, never the newest
    user message), and what was dropped is logged.
    """

    def __init__(self, tokenizer: Any, system: str | None = None, *,
                 max_context: int | None = None, template: Any = None) -> None:
        self.tokenizer = tokenizer
        self.template = template if template is not None else default_template(tokenizer)
        limit = max_context or getattr(tokenizer, "model_max_length", None)
        if not limit or limit > 10**7:  # tokenizers without a real limit report 1e30
            raise ValueError("pass max_context=... (the model's context length, "
                             "e.g. model.config.max_position_embeddings)")
        self.max_context = int(limit)
        self.messages: list[dict[str, str]] = []
        if system is not None:
            self._add("system", system)

    def add_user(self, content: str) -> None:
        self._add("user", content)

    def add_assistant(self, content: str) -> None:
        self._add("assistant", content)

    def _add(self, role: str, content: str) -> None:
        validate_messages(self.messages + [{"role": role, "content": content}])
        self.messages.append({"role": role, "content": content})

    def count_tokens(self) -> int:
        prompt = render(self.messages, add_generation_prompt=True, template=self.template)
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def fit(self, reserve: int = 0) -> list[dict[str, str]]:
        """Drop the oldest turns until prompt + ``reserve`` tokens fit; return what was dropped
        (and log it as a warning)."""
        budget = self.max_context - reserve
        if budget <= 0:
            raise ValueError(f"reserve={reserve} leaves no room in a {self.max_context}-token "
                             "context: lower max_new_tokens")
        dropped: list[dict[str, str]] = []
        start = 1 if self.messages and self.messages[0]["role"] == "system" else 0
        while self.count_tokens() > budget:
            turns = self.messages[start:]
            if len(turns) <= 1:
                raise ValueError(
                    f"the prompt needs {self.count_tokens()} tokens even with only the system "
                    f"message and the newest user message, but {budget} are available "
                    f"({self.max_context} context - {reserve} reserved for the reply): shorten "
                    "the message or the system prompt, or lower max_new_tokens")
            # drop the oldest turn, and its answer with it, so roles keep alternating
            n = 2 if len(turns) > 2 and turns[0]["role"] == "user" and \
                turns[1]["role"] == "assistant" else 1
            dropped.extend(self.messages[start:start + n])
            del self.messages[start:start + n]
        if dropped:
            summary = "; ".join(f"{m['role']}: {m['content'][:40]!r}" for m in dropped)
            logger.warning("Conversation: dropped %d oldest message(s) to fit %d tokens: %s",
                           len(dropped), self.max_context, summary)
        return dropped

    def reply(self, model: Any, *, max_new_tokens: int = 128, **sampling: Any) -> str:
        """Fit the history, generate the assistant's reply, add it to the history, return it."""
        if not self.messages or self.messages[-1]["role"] != "user":
            raise ValueError("add a user message before asking for a reply")
        self.fit(reserve=max_new_tokens)
        answer = chat(model, self.tokenizer, self.messages, max_new_tokens=max_new_tokens,
                      template=self.template, **sampling)
        self.add_assistant(answer)
        return answer


class TokenView:
    """Tokens of a text as coloured boxes with their ids (HTML, for notebooks), or as plain text
    (``repr``, for GitHub and terminals)."""

    PALETTE = ("#fde2e4", "#e2ece9", "#dfe7fd", "#fff1c1", "#e8dff5", "#d8f3dc")

    def __init__(self, tokenizer: Any, text: str) -> None:
        self.ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.tokens: list[str] = [tokenizer.decode([i]) for i in self.ids]
        vocab = tokenizer.get_vocab()
        self.special = set(getattr(tokenizer, "all_special_ids", []))
        self.special |= {vocab[t] for t in (IM_START, IM_END) if t in vocab}

    def __repr__(self) -> str:
        lines, line = [], []
        for token_id, token in zip(self.ids, self.tokens):
            line.append(f"{token!r}:{token_id}")
            if token == "\n" or token_id in self.special and token == IM_END:
                lines.append(" ".join(line))
                line = []
        return "\n".join(lines + [" ".join(line)] if line else lines)

    def _repr_html_(self) -> str:
        import html

        spans = []
        for n, (token_id, token) in enumerate(zip(self.ids, self.tokens)):
            special = token_id in self.special
            colour = "#ffd6a5" if special else self.PALETTE[n % len(self.PALETTE)]
            shown = html.escape(token).replace("\n", "\\n").replace(" ", "&nbsp;")
            spans.append(
                f'<span style="background:{colour};font-weight:{"bold" if special else "normal"};'
                'border:1px solid #999;border-radius:3px;padding:1px 3px;margin:1px;'
                f'display:inline-block;font-family:monospace">{shown}'
                f'<sub style="color:#555">{token_id}</sub></span>'
            )
            if token == "\n":
                spans.append("<br>")
        return "<div style='line-height:2'>" + "".join(spans) + "</div>"
