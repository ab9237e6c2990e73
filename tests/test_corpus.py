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
