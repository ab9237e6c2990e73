"""Notebook 10 (a chat app in the browser): solutions to its exercises, answers to its questions."""

from typing import Any, Iterator, Mapping, Sequence

from ..webchat import ChatApp, Update, text_of

__all__ = ["to_markdown", "add_markdown_export", "SpeedChatApp", "token_counter",
           "QUESTIONS", "ANSWERS"]


def to_markdown(history: Sequence[Mapping[str, Any]], system: str = "") -> str:
    """Exercise 1: the conversation as Markdown, one paragraph per message (the system prompt
    first, when there is one)."""
    parts = [f"**System:** {system.strip()}"] if system.strip() else []
    for message in history:
        who = "You" if message["role"] == "user" else "Assistant"
        parts.append(f"**{who}:** {text_of(message).strip()}")
    return "\n\n".join(parts) + "\n"


def add_markdown_export(parts: dict[str, Any]) -> None:
    """Exercise 1, the button: ``launch(app, extend=add_markdown_export)``. It fills a code box
    (with its own copy button) and is also the ``/markdown`` endpoint."""
    import gradio as gr

    box = gr.Code(language="markdown", label="Conversation as Markdown", elem_id="markdown")
    button = gr.Button("Copy as Markdown", elem_id="export")
    button.click(to_markdown, [parts["chatbot"], parts["system"]], box, api_name="markdown")


class SpeedChatApp(ChatApp):
    """Exercise 2: the reply's speed written under each reply, in the chat itself."""

    def _respond(self, history: list[dict[str, str]], system: str | None, knobs: Sequence[Any],
                 restore: str) -> Iterator[Update]:
        for chat, box, status, context in super()._respond(history, system, knobs, restore):
            if self.last.total_s and not self.last.error:  # the finished reply
                note = f"\n\n*{self.last.tokens} tokens · {self.last.tokens_per_s:.1f} tokens/s*"
                chat[-1] = {"role": "assistant", "content": chat[-1]["content"] + note}
            yield chat, box, status, context


def token_counter(app: ChatApp, message: str, history: Sequence[Mapping[str, Any]],
                  system: str | None = None) -> str:
    """Exercise 3: the line under the message box as you type (``message.change(...)`` calls
    it): the message's tokens and the whole prompt's, against the window."""
    own = len(app.backend.tokenizer(message or "", add_special_tokens=False)["input_ids"])
    conv = app.conversation(list(history or []) + [{"role": "user", "content": message or ""}],
                            app.system if system is None else system)
    return f"this message: {own} tokens · the prompt: {conv.count_tokens()} of {conv.max_context}"


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
    "request. The in-process back end sets an event that a stopping criterion checks after every "
    "token (generate ends within one token, and the thread is joined); the OpenAI back end "
    "closes the HTTP stream, and the server (vLLM, llama.cpp) cancels the request when it sees "
    "the closed connection.",
    "The context window: before each reply a Conversation keeps the system prompt and the newest "
    "turns whose tokens, plus max new tokens for the reply, fit the window, dropping the oldest "
    "first. The context line under the chat says how many messages and tokens the model sees and "
    "quotes the ones left out.",
    "127.0.0.1 is reachable from this machine only, and share=True opens a public link through "
    "a tunnel (downloaded at run time) that anyone with the URL can use, on your hardware. For a "
    "room: run one vLLM server on a GPU, bind the app to the room's network (server_name="
    "\"0.0.0.0\" on a trusted network) with auth=(user, password), and let every participant "
    "open the same URL; or each participant runs the app locally against that vLLM endpoint.",
]
