"""``scripts.q`` replaced ``shlex.quote`` (start-up time): it must quote exactly alike."""

from __future__ import annotations

import shlex

from hypothesis import example, given, settings
from hypothesis import strategies as st

from envbuild.compiler.scripts import q


@settings(max_examples=2000)
@given(st.text(alphabet="az_@%+=:,./-' \"$\\\u00e9\n\t*", max_size=12) | st.text(max_size=6))
@example("")
@example("'")
def test_q_is_shlex_quote(word: str) -> None:
    assert q(word) == shlex.quote(word)
