"""The hand-written matchers of llb.source/fileop/platform accept exactly what the reference grammar's
regular expressions accept (they replaced them to save start-up time)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from llb import fileop, platform, source

ALPHABET = "abcz09AZ._-+=:/$_ \u00e9\u0663\u00b2"
text = st.text(alphabet=ALPHABET, max_size=40) | st.text(max_size=8)

CASES = [
    (source._is_path_component, r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"),
    (source._is_domain, r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"),
    (source._is_tag, r"[\w][\w.-]{0,127}"),
    (source._is_local_name, r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
    (fileop._is_user_name, r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?"),
    (platform._is_component, r"[a-z0-9_]+"),
]


@settings(max_examples=3000)
@given(text)
def test_matchers_agree_with_the_grammar(s: str) -> None:
    for matcher, pattern in CASES:
        assert matcher(s) == bool(re.fullmatch(pattern, s)), (matcher.__name__, s)


@settings(max_examples=2000)
@given(st.text(alphabet="az09.+_-", max_size=6), st.text(alphabet="aF09=_-:", min_size=28, max_size=40))
def test_digest_matcher_agrees(algorithm: str, encoded: str) -> None:
    pattern = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"
    for s in (f"{algorithm}:{encoded}", algorithm + encoded, f"sha256:{encoded}"):
        assert source._is_digest(s) == bool(re.fullmatch(pattern, s)), s


def test_edges() -> None:
    assert source._is_tag("a" * 128) and not source._is_tag("a" * 129) and not source._is_tag("")
    assert source._is_domain("127.0.0.1:5000") and not source._is_domain("host:") and not source._is_domain("host:５")
    assert source._is_path_component("a__b") and not source._is_path_component("a___b") and source._is_path_component("a---b")
    assert source.normalize_image_ref("local/debian:bookworm") == "docker.io/local/debian:bookworm"
