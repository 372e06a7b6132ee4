"""`.envdignore` / `.dockerignore`: what a build context keeps to itself, and what that changes for
the up-to-date check and for a build file that reads an excluded file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import frontend
from envbuild import ignorefile, quickcheck
from envbuild.errors import UsageError
from llb.patterns import PatternMatcher, parse_ignore


def test_parse_ignore_reads_docker_s_format() -> None:
    text = "\ufeff# datasets\ndata/\n  /build/**  \n\n!data/keep.txt\n*.ckpt\n./x/../y\n"
    assert parse_ignore(text) == ["data", "build/**", "!data/keep.txt", "*.ckpt", "y"]
    matcher = PatternMatcher(parse_ignore(text))
    assert matcher.matches("data/big.bin") and matcher.matches("data")
    assert not matcher.matches("data/keep.txt")
    assert matcher.matches("models/a.ckpt") is False and matcher.matches("a.ckpt")
    assert not matcher.matches("src/a.py")


def test_envdignore_wins_over_dockerignore(tmp_path: Path) -> None:
    assert ignorefile.load(tmp_path) == ignorefile.Ignore()
    (tmp_path / ".dockerignore").write_text("a\n")
    assert ignorefile.load(tmp_path).patterns == ("a",)
    (tmp_path / ".envdignore").write_text("b\n")
    loaded = ignorefile.load(tmp_path)
    assert (loaded.file, loaded.patterns) == (".envdignore", ("b",))
    assert loaded.digest == hashlib.sha256(b"b\n").hexdigest()


@pytest.mark.parametrize(("content", "fragment"), [(b"!\n", "illegal exclusion"), (b"\xff\xfe", "utf-8")])
def test_an_unusable_ignore_file_is_a_usage_error(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / ".envdignore").write_bytes(content)
    with pytest.raises(UsageError, match=fragment):
        ignorefile.load(tmp_path)


def test_reading_an_excluded_file_is_refused_at_its_call(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text("x\n")
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
        '    io.copy(host_path="data/labels.csv", envd_path="/labels.csv")\n'
    )
    spec = frontend.evaluate(str(tmp_path / "build.envd"))
    ignorefile.check_inputs(spec, ignorefile.load(tmp_path))
    (tmp_path / ".envdignore").write_text("data\n")
    with pytest.raises(UsageError) as info:
        ignorefile.check_inputs(spec, ignorefile.load(tmp_path))
    assert str(info.value).startswith("build.envd:3:5: the build reads 'data/labels.csv', which .envdignore excludes")
    (tmp_path / ".envdignore").write_text("data\n!data/labels.csv\n")
    ignorefile.check_inputs(spec, ignorefile.load(tmp_path))


def _digest(context: Path, inputs: list[str]) -> str:
    h = hashlib.sha256()
    quickcheck.hash_inputs(h, str(context), inputs)
    return h.hexdigest()


def test_excluded_files_are_not_hashed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("1")
    big = tmp_path / "data" / "big.bin"
    big.write_bytes(b"\0" * 10)
    (tmp_path / ".envdignore").write_text("data/\n")
    first = _digest(tmp_path, ["."])
    big.write_bytes(b"\1" * 10)
    assert _digest(tmp_path, ["."]) == first  # the dataset is not an input
    (tmp_path / "src" / "a.py").write_text("2")
    second = _digest(tmp_path, ["."])
    assert second != first
    (tmp_path / ".envdignore").write_text("data/\n# now also\n*.log\n")
    assert _digest(tmp_path, ["."]) != second  # the rules themselves shape what the build sees
