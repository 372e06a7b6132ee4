"""Two corpora of build files.

``tests/corpus/envd/<case>/``: build files written the way envd users write them (the case directory
is the build context, with the files the build reads), each with an ``expect.json`` saying what envd
does (``envd``) and what envbuild records: a partial spec (``spec``), remarks (``notes``/``warnings``)
or the error (``error``: position and message). ``git`` maps a repository path to a directory of the
case that a test turns into a repository served from a git mirror (as ``ENVBUILD_MIRROR_GIT`` would),
so ``include()`` of a library works without the network. What envd would build is compared where it
is decided, in the compiled build: ``llb`` (a list of ``{"step": customname, "op": partial op,
"script": fragments of its command, "unset": copy flags it must not set}`` for the step named
so), ``image`` (a partial image config), ``json_labels`` (image label -> a partial object of its JSON
value), ``files`` (path in the image -> text fragments of the file a file operation writes there),
``context_files`` (path in the build context -> the whole text the build's steps read there, after the
build's own rewrite of it, run here) and ``compile_notes`` (fragments of the notes the build prints).
Every case that is not an error has at least one of these.

``tests/corpus/bad``: every broken or hostile build file fails the same way: exit code 2 (1 for a
network failure, which is not the file's fault), one ``file:line:col: message`` on stderr, no
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

import base64
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import frontend

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus" / "bad"
ENVD_CORPUS = Path(__file__).resolve().parent / "corpus" / "envd"
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


# ---- envd-style build files ---------------------------------------------------------------------


def envd_cases() -> list[Path]:
    return sorted(p for p in ENVD_CORPUS.iterdir() if (p / "build.envd").is_file())


def _git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def git_mirror(case: Path, repos: dict[str, str], tmp: Path) -> Path:
    """A mirror directory holding each ``repos`` entry (host/path -> directory of the case) as a repository."""
    mirror = tmp / "mirror"
    for host_path, directory in repos.items():
        work = tmp / "work" / directory
        shutil.copytree(case / directory, work)
        _git("init", "-q", "-b", "main", cwd=work)
        _git("add", "-A", cwd=work)
        _git("commit", "-qm", "library", cwd=work)
        (mirror / host_path).parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", "--bare", str(work), str(mirror / host_path), cwd=tmp)
    return mirror


def matches(expected: object, actual: object, where: str = "spec") -> None:
    """``expected`` is a part of ``actual``: the keys it names, lists of the same length, equal values."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: no field {key!r}"
            matches(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (
            f"{where}: expected {len(expected)} entries, got {actual!r}"
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            matches(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


def test_envd_corpus_has_a_case_per_point() -> None:
    names = [p.name for p in envd_cases()]
    assert len(names) >= 30
    prefixes = ("include-", "pip-", "requirements-", "copy-", "dev-", "init-", "codex-", "cuda-", "serving-")
    for prefix in (*prefixes, "command-", "rstudio-"):
        assert any(n.startswith(prefix) for n in names), prefix
    for case in envd_cases():
        exp = json.loads((case / "expect.json").read_text())
        assert exp.get("envd"), f"{case.name}: say what envd does"
        assert ("spec" in exp) != ("error" in exp), f"{case.name}: a spec or an error"
        assert "error" in exp or any(k in exp for k in COMPILED), f"{case.name}: say what is built ({COMPILED})"


@pytest.mark.parametrize("case", envd_cases(), ids=lambda p: p.name)
def test_envd_style_file(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    exp = json.loads((case / "expect.json").read_text())
    mirror = git_mirror(case, exp["git"], tmp_path) if "git" in exp else None
    run = lambda: frontend.evaluate(  # noqa: E731
        case, user_config=False, git_mirror=str(mirror) if mirror else None, on_print=lambda _text: None
    )
    if "error" in exp:
        with pytest.raises(frontend.EnvdError) as info:
            run()
        assert not isinstance(info.value, frontend.NetworkError)
        assert str(info.value).startswith(exp["error"]["at"] + ": "), str(info.value)
        assert exp["error"]["message"] in info.value.message
        assert "\n" not in str(info.value)
        return
    spec = run()
    matches(exp["spec"], spec.to_dict())
    for kind in ("notes", "warnings"):
        texts = [remark.message for remark in getattr(spec, kind)]
        for fragment in exp.get(kind, []):
            assert any(fragment in t for t in texts), f"{kind}: {fragment!r} not in {texts}"
    assert frontend.Spec.from_json(spec.to_json()) == spec
    compiled_matches(exp, spec, case, tmp_path)


COMPILED = ("llb", "image", "json_labels", "files", "context_files", "compile_notes")
"""The keys of an ``expect.json`` that check the compiled build (`compiled_matches`)."""


def compiled_matches(exp: dict[str, Any], spec: frontend.Spec, case: Path, tmp: Path) -> None:
    """The build envbuild compiles (offline, a Debian base config) against the case's expectations."""
    from envbuild.compiler import BaseConfig, CompileOptions
    from envbuild.compiler.compile import compile as compile_spec

    base = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
    compiled = compile_spec(spec, CompileOptions(project=case.name, owner=(1000, 1000), base_config=base))
    ops = compiled.definition().to_json()
    by_name = {o.get("OpMetadata", {}).get("description", {}).get("llb.customname", ""): o["Op"] for o in ops}
    for check in exp.get("llb", []):
        assert check["step"] in by_name, f"no step {check['step']!r}: {sorted(by_name)}"
        op = by_name[check["step"]]
        matches(check.get("op", {}), op, f"llb[{check['step']}]")
        script = "\n".join(op.get("exec", {}).get("meta", {}).get("args", []))
        for fragment in check.get("script", []):
            assert fragment in script, f"llb[{check['step']}]: {fragment!r} not in:\n{script}"
        for action in op.get("file", {}).get("actions", []):
            for flag in check.get("unset", []):
                assert not action.get("copy", {}).get(flag), f"llb[{check['step']}]: {flag} is set"
    image = json.loads(json.dumps(dict(compiled.image), default=list))
    matches(exp.get("image", {}), image, "image")
    for label, expected in exp.get("json_labels", {}).items():
        assert label in image.get("labels", {}), f"no label {label!r}"
        matches(expected, json.loads(image["labels"][label]), f"label {label}")
    written = {
        action["mkfile"]["path"]: base64.b64decode(action["mkfile"].get("data", "")).decode()
        for o in ops
        for action in o["Op"].get("file", {}).get("actions", [])
        if "mkfile" in action
    }
    for path, fragments in exp.get("files", {}).items():
        assert path in written, f"no file operation writes {path}"
        for fragment in fragments:
            assert fragment in written[path], f"{path}: {fragment!r} not in:\n{written[path]}"
    if "context_files" in exp:
        context = rewritten_context(ops, case, tmp / "context")
        for path, text in exp["context_files"].items():
            got = (context / path).read_text()
            assert got == text, f"context {path}: expected {text!r}, got {got!r}"
    for fragment in exp.get("compile_notes", []):
        assert any(fragment in n for n in compiled.notes), f"{fragment!r} not in {compiled.notes}"


def rewritten_context(ops: list[dict[str, Any]], case: Path, work: Path) -> Path:
    """A copy of the case directory after the build's rewrite steps (`scripts.EDIT_DIR`: each binds the
    context there writable, without network, and runs awk on it), run here by /bin/sh on the copy: the
    files uv reads in the image's build, with no engine."""
    from envbuild.compiler.scripts import EDIT_DIR

    shutil.copytree(case, work)
    for op in ops:
        run = op["Op"].get("exec", {})
        if not any(m.get("dest") == EDIT_DIR for m in run.get("mounts", [])):
            continue
        assert run.get("network") == "NONE", f"a step writing {EDIT_DIR} has network: {run}"
        argv = run["meta"]["args"]
        assert argv[:2] == ["/bin/sh", "-c"], argv
        script = argv[2].replace(EDIT_DIR, str(work))
        subprocess.run(["/bin/sh", "-c", script], cwd=work, env={"PATH": "/usr/bin:/bin"}, check=True, timeout=30)
    return work


def test_rewritten_context_runs_the_edit_steps_on_a_copy(tmp_path: Path) -> None:
    """Only steps that bind the edit directory run, with it pointing at the copy; the case stays as it is."""
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "r.txt").write_text("a --pre\nb\n")
    edit = {
        "exec": {
            "meta": {"args": ["/bin/sh", "-c", "set -eu\nsed -i 's/ --pre//' /run/envbuild-edit/r.txt\n"]},
            "mounts": [{"dest": "/"}, {"dest": "/run/envbuild-edit", "input": "1"}],
            "network": "NONE",
        }
    }
    other = {"exec": {"meta": {"args": ["/bin/sh", "-c", "exit 1"]}, "mounts": [{"dest": "/"}]}}
    out = rewritten_context([{"Op": other}, {"Op": edit}], tmp_path / "case", tmp_path / "work")
    assert (out / "r.txt").read_text() == "a\nb\n"
    assert (tmp_path / "case" / "r.txt").read_text() == "a --pre\nb\n"
    online = {"exec": {**edit["exec"], "network": None}}
    with pytest.raises(AssertionError, match="network"):
        rewritten_context([{"Op": online}], tmp_path / "case", tmp_path / "again")


def _cli(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "NO_COLOR": "1",
        **env,
    }
    return subprocess.run(
        [str(ENVBUILD), *args], capture_output=True, text=True, env=environ, cwd=ROOT, timeout=KILL_AFTER_S, check=False
    )


def test_envbuild_prints_the_choice_it_made_for_a_cuda_file(tmp_path: Path) -> None:
    p = _cli(["debug", "spec", "-p", str(ENVD_CORPUS / "cuda-envd0-no-base-image")], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("note: build.envd:4:5: no base image is named"), p.stderr
    assert json.loads(p.stdout)["cuda"]["image"].endswith("11.3.1-cudnn8-devel-ubuntu20.04")


def test_envbuild_includes_a_library_through_the_git_mirror_setting(tmp_path: Path) -> None:
    """The mirror is the user's setting (here the environment variable), unlike a file:// URL in the file."""
    case = ENVD_CORPUS / "include-nested-library"
    mirror = git_mirror(case, {"github.com/example-team/envdlib": "envdlib"}, tmp_path)
    p = _cli(["debug", "spec", "-p", str(case)], tmp_path, ENVBUILD_MIRROR_GIT=f"file://{mirror}")
    assert p.returncode == 0, p.stderr
    assert [d["argv"][0] for d in json.loads(p.stdout)["runtime"]["daemons"]] == ["jupyter-lab", "tensorboard"]
    # a mirror without the library and no cached copy: not the file's fault, so exit 1, and how to fix it
    missing = _cli(
        ["debug", "spec", "-p", str(case)], tmp_path / "elsewhere", ENVBUILD_MIRROR_GIT=f"file://{tmp_path}/none"
    )
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.startswith(
        "envbuild: error: build.envd:2:11: cannot fetch https://github.com/example-team/envdlib (through the mirror"
    ), missing.stderr
    assert "ENVBUILD_MIRROR_GIT" in missing.stderr and len(missing.stderr.splitlines()) == 1
