"""The one text rule: its shortcut for printable text never lets a refused character by."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from movecar_core.testing.strategies import forbidden_texts
from movecar_core.text import FORBIDDEN, text_problem


def test_every_refused_character_is_unprintable() -> None:
    """``text_problem`` answers "fine" for printable text without searching it, so no
    character the rule refuses may be printable (in this Python's Unicode database)."""
    refused = [chr(c) for c in range(sys.maxunicode + 1) if FORBIDDEN.match(chr(c))]
    assert len(refused) == 32 + 1 + 32 + 2 + 2048 + 66
    assert [c for c in refused if c.isprintable()] == []


@given(st.one_of(st.text(), forbidden_texts()))
def test_the_shortcut_is_the_search(value: str) -> None:
    assert (text_problem(value) is None) == (FORBIDDEN.search(value) is None)
