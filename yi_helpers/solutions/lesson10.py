"""Notebook 10 (a chat app in the browser): solutions to its exercises, answers to its questions."""

import time
from typing import Any, Callable, Iterator, Mapping, Sequence

__all__ = ["to_markdown", "add_markdown_export", "with_speed", "token_counter",
           "QUESTIONS", "ANSWERS"]


def _text(content: Any) -> str:  # Gradio 6 hands a message's content back as a list of parts
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def to_markdown(history: Sequence[Mapping[str, Any]], system: str = "") -> str:
    """Exercise 1: the conversation as Markdown, one paragraph per message (the system prompt
    first, when there is one)."""
    parts = [f"**System:** {system.strip()}"] if system.strip() else []
    for message in history:
        who = "You" if message["role"] == "user" else "Assistant"
        parts.append(f"**{who}:** {_text(message['content']).strip()}")
    return "\n\n".join(parts) + "\n"


def add_markdown_export(chatbot: Any, system: Any) -> Any:
    """Exercise 1, the button: call it inside the app's ``Blocks``, after the ``ChatInterface``
    (``add_markdown_export(chat.chatbot, chat.additional_inputs[0])``). It fills a code box
    (with its own copy button) and is also the ``/markdown`` endpoint; returns the box."""
    import gradio as gr

    box = gr.Code(language="markdown", label="Conversation as Markdown")
    gr.Button("Copy as Markdown").click(to_markdown, [chatbot, system], box, api_name="markdown")
    return box


def with_speed(stream: Callable[..., Iterator[str]], tokenizer: Any) -> Callable[..., Iterator[str]]:
    """Exercise 2: the same stream, with the reply's tokens and tokens/s written under it once
    it is whole (``chat_app(with_speed(stream_reply, tokenizer))``)."""

    def timed(*args: Any, **kwargs: Any) -> Iterator[str]:
        start, reply = time.perf_counter(), ""
        for reply in stream(*args, **kwargs):
            yield reply
        tokens = len(tokenizer(reply, add_special_tokens=False)["input_ids"])
        seconds = max(time.perf_counter() - start, 1e-9)
        yield f"{reply}\n\n*{tokens} tokens · {tokens / seconds:.1f} tokens/s*"

    return timed


def token_counter(tokenizer: Any, message: str, system: str = "", window: int = 4096) -> str:
    """Exercise 3: the line under the message box as you type (``textbox.change`` calls it):
    the message's tokens, and the prompt's (system prompt, message, the reply's header)."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages.append({"role": "user", "content": message or ""})
    prompt = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])
    own = len(tokenizer(message or "", add_special_tokens=False)["input_ids"])
    return f"this message: {own} tokens · the prompt: {prompt} of {window}"


QUESTIONS = [
    "Why must stop reach the generation itself, not only the page, and how does each back end "
    "make it stop?",
    "The chat on screen keeps every turn, yet the model may not see them all: what decides "
    "which turns it sees, and where does the app tell you?",
    "Why does the app bind to 127.0.0.1 with `share=False`, and what would you do instead for a "
    "workshop room of 20 people?",
]
ANSWERS = [
    "The page only shows what the server streams: if only the page stopped listening, the "
    "model would go on generating unseen tokens and keep the CPU or GPU busy for the next "
    "request. In process, Stop cancels Gradio's event, Gradio closes the chat function's "
    "generator, and the stream's `finally` sets the event that a stopping criterion checks "
    "after every token (generate ends within one token; the thread is joined). Through a "
    "server, closing the generator closes the HTTP stream, and the server (vLLM, llama.cpp) "
    "cancels the request when it sees the closed connection.",
    "The context window: before each reply `fit` keeps the system prompt and the newest turns "
    "whose tokens, plus max new tokens for the reply, fit the window, dropping the oldest "
    "first. The line under the chat says how many messages the model sees and how many were "
    "left out.",
    "127.0.0.1 is reachable from this machine only, and share=True opens a public link through "
    "a tunnel (downloaded at run time) that anyone with the URL can use, on your hardware. For a "
    "room: run one vLLM server on a GPU, bind the app to the room's network (server_name="
    "\"0.0.0.0\" on a trusted network) with auth=(user, password), and let every participant "
    "open the same URL; or each participant runs the app locally against that vLLM endpoint.",
]
