"""Every broken or hostile build file in ``tests/corpus/bad`` fails the same way: exit code 2 (1 for
a network failure, which is not the file's fault), one ``file:line:col: message`` on stderr, no
traceback, within a bounded time.

Each file's first line says what to expect::

    # expect: [LABEL:]LINE:COL: message fragment  [exit: 1]  [xfail: why this is still broken]

``LABEL`` (default: the file itself) names the file the error points into, e.g. a loaded
``lib/x.envd``; ``COL`` may be ``*``. A zero-byte file cannot carry the line, so ``EMPTY`` holds it.

The files run through the real CLI (``envbuild debug spec -f FILE``); each file gets its own process
with a 4 GiB address-space limit: some files are memory bombs or crash the interpreter, and that must
fail the test, not the machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus" / "bad"
ENVBUILD = Path(sys.executable).with_name("envbuild")
TIME_BOUND_S = 10.0
KILL_AFTER_S = 30.0
MEMORY_LIMIT = 4 << 30
EMPTY = {"empty.envd": "1:1: no function build() defined"}

_HEADER = re.compile(
    r"#\s*expect:\s*(?:(?P<label>[\w./-]+\.envd):)?(?P<line>\d+):(?P<col>\d+|\*):\s*(?P<fragment>.*?)"
    r"\s*(?:\[exit:\s*(?P<exit>\d+)\])?\s*(?:\[xfail:\s*(?P<xfail>[^\]]+)\])?\s*$"
)


@dataclass(frozen=True)
class Expectation:
    file: Path
    label: str
    line: int
    col: int | None
    fragment: str
    xfail: str | None
    exit: int = 2


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def expectation(path: Path) -> Expectation:
    data = path.read_bytes()
    header = EMPTY.get(path.name, "") if not data else data.split(b"\n", 1)[0].decode("ascii")
    if path.name in EMPTY:
        header = "# expect: " + header
    m = _HEADER.fullmatch(header)
    if m is None:
        raise AssertionError(f"{path.name}: first line must be `# expect: LINE:COL: fragment`, got {header!r}")
    col = None if m["col"] == "*" else int(m["col"])
    exit_code = int(m["exit"]) if m["exit"] else 2
    return Expectation(path, m["label"] or path.name, int(m["line"]), col, m["fragment"], m["xfail"], exit_code)


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.envd"))


def command_for(path: Path) -> list[str]:
    return [str(ENVBUILD), "debug", "spec", "-f", str(path)]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_isolated(cmd: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            env=env,
            cwd=cwd,
            timeout=KILL_AFTER_S,
            preexec_fn=_limit_memory,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        return Outcome(
            -9,
            (e.stdout or b"").decode(errors="replace"),
            (e.stderr or b"").decode(errors="replace"),
            time.monotonic() - t0,
        )
    return Outcome(
        p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), time.monotonic() - t0
    )


@pytest.fixture(scope="session")
def corpus_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run the selected files once, a few at a time (most of the cost is process start-up)."""
    home = tmp_path_factory.mktemp("corpus-home")
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "RUST_BACKTRACE": "0",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    selected = {
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "callspec", None) is not None and isinstance(item.callspec.params.get("path"), Path)
    }
    files = [f for f in corpus_files() if f in selected]
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(lambda f: run_isolated(command_for(f), env, CORPUS), files))
    return {f.name: o for f, o in zip(files, outcomes, strict=True)}


def test_corpus_is_large_enough() -> None:
    files = corpus_files()
    assert len(files) >= 60
    for f in files:
        expectation(f)


def test_corpus_helpers_escape_the_context() -> None:
    """The symlink cases only mean something if the links really point outside the corpus."""
    for name in ("escape.txt", "escape.envd"):
        link = CORPUS / "lib" / name
        assert link.is_symlink(), f"{link} must be a symlink (was it checked out without symlink support?)"
        assert not link.resolve().is_relative_to(CORPUS.resolve())
        assert link.resolve().exists()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_bad_file_fails_cleanly(path: Path, corpus_results: dict[str, Outcome]) -> None:
    exp = expectation(path)
    out = corpus_results[path.name]
    if exp.xfail:
        if _fails(exp, out):
            pytest.xfail(exp.xfail)
        pytest.fail(f"{path.name} now passes: drop its [xfail: ...] marker")
    _check(exp, out)


def _fails(exp: Expectation, out: Outcome) -> bool:
    try:
        _check(exp, out)
    except AssertionError:
        return True
    return False


def _check(exp: Expectation, out: Outcome) -> None:
    name = exp.file.name
    both = out.stdout + out.stderr
    assert out.returncode == exp.exit, (
        f"{name}: exit code {out.returncode}, expected {exp.exit}\nstderr: {out.stderr[-2000:]}"
    )
    assert "Traceback" not in both, f"{name}: a traceback was printed:\n{both[-3000:]}"
    assert "panicked" not in both, f"{name}: a Rust panic was printed:\n{both[-3000:]}"
    assert out.elapsed < TIME_BOUND_S, f"{name}: took {out.elapsed:.1f}s (bound {TIME_BOUND_S:g}s)"
    assert not _CONTROL.search(out.stderr), f"{name}: control characters on stderr: {out.stderr!r}"
    col = r"\d+" if exp.col is None else str(exp.col)
    loc = re.compile(r"(?:^|[\s/'\"(])" + re.escape(exp.label) + rf":{exp.line}:{col}: (?P<msg>.*)$", re.MULTILINE)
    m = loc.search(out.stderr)
    assert m is not None, (
        f"{name}: expected `{exp.label}:{exp.line}:{exp.col or '*'}: ...` on stderr, got:\n{out.stderr[-2000:]}"
    )
    assert exp.fragment in out.stderr[m.start("msg") :], (
        f"{name}: expected {exp.fragment!r} in the message, got:\n{out.stderr[-2000:]}"
    )
