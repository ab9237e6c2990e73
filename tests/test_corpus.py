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
