"""The shipped held-out texts are there, non-trivial and in the right language."""

from __future__ import annotations

import pytest

from yi_helpers.corpus import heldout_text


def test_heldout_texts_are_english_and_chinese():
    en, zh = heldout_text("en"), heldout_text("zh")
    assert len(en.split()) > 250 and en.isascii()
    cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in zh)
    assert cjk > 400


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="en"):
        heldout_text("fr")


def test_read_jsonl_numbers_lines_and_skips_blanks():
    from yi_helpers.corpus import read_jsonl

    rows = list(read_jsonl(['{"a": 1}', "", '  ', '[2]']))
    assert rows == [(1, {"a": 1}), (4, [2])]
    with pytest.raises(ValueError, match=r"data.jsonl line 2: not valid JSON"):
        list(read_jsonl(['{"a": 1}', "{oops"], where="data.jsonl "))


def test_calibration_set_is_bilingual_varied_and_apart_from_the_heldout_texts():
    from yi_helpers.corpus import calibration_conversations

    rows = calibration_conversations()
    en, zh = ([r for r in rows if r["lang"] == lang] for lang in ("en", "zh"))
    assert len(en) == len(zh) == 16 and len(rows) == 32
    assert len({r["topic"] for r in en}) == 16 and len({r["topic"] for r in zh}) == 16
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] and len(row["messages"][1]["content"]) > 150
    assert all(r["messages"][1]["content"].isascii() for r in en)
    assert all(sum("\u4e00" <= ch <= "\u9fff" for ch in r["messages"][1]["content"]) > 100 for r in zh)
    # calibrating on the evaluation text would flatter the quantized model: no shared sentences
    heldout = heldout_text("en") + heldout_text("zh")
    for row in rows:
        for sentence in row["messages"][1]["content"].replace("。", ".").split("."):
            assert len(sentence.strip()) < 20 or sentence.strip() not in heldout
