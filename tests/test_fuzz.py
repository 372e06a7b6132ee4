"""Grammar-based fuzzing of the frontend (and the compiler behind it) and of the option parsers.

The build-file generator knows every envd builtin's parameters (``frontend.builtins.REGISTRY``) and
writes calls with right, wrong and hostile arguments (typos in keywords, extra positionals, paths out
of the context, odd strings, out-of-range numbers). Properties:

- evaluation returns a ``Spec`` or raises an ``EnvdError`` -- nothing else escapes;
- an error points at a line that holds one of the generated calls, with a column on that line;
- a ``Spec`` round-trips through JSON, and compiling it gives LLB or a ``UsageError``, never a crash;
- ``--output``/``--export-cache``/``--platform`` and the run options parse or raise ``UsageError``;
  CSV fields survive quoting; valid outputs parse back to what was written.

CI runs a few hundred examples per property. ``HYPOTHESIS_PROFILE=long`` (or ``ENVBUILD_FUZZ_EXAMPLES=N``)
runs a long local session; ``ENVBUILD_FUZZ_REPORT=path.json`` records how many inputs were tried.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frontend
from envbuild.errors import UsageError
from frontend import builtins as B
from frontend.errors import EnvdError

_PROFILES = {"ci": 150, "long": 20000}
EXAMPLES = int(
    os.environ.get("ENVBUILD_FUZZ_EXAMPLES") or _PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 150)
)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    path = os.environ.get("ENVBUILD_FUZZ_REPORT")
    if path:
        Path(path).write_text(
            json.dumps(
                {"examples_per_property": EXAMPLES, "tried": dict(TRIED), "total": sum(TRIED.values())}, indent=2
            )
        )


# ---- build files from envd's grammar --------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "3.11",
    "3",
    "2.7",
    "3.x",
    "ubuntu:22.04",
    "local/debian:bookworm",
    "UPPER:tag",
    "a b",
    "numpy",
    "numpy==1.26",
    "requirements.txt",
    "environment.yml",
    "data",
    "data/",
    "wheels/x-1.0-py3-none-any.whl",
    "../outside",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "link-out",
    "lib/../..",
    "https://pypi.example.com/simple",
    "http://127.0.0.1:9/simple",
    "ftp://x",
    "sha256:" + "a" * 64,
    "md5:00",
    "ms-python.python",
    "python",
    "bash",
    "zsh",
    "powershell",
    "12.1.1",
    "11.8.0",
    "9.9",
    "8",
    "",
    "latest",
    "127.0.0.1",
    "0.0.0.0",
    "::1",
    "localhost",
    "PATH",
    "MY_VAR",
    "MY-VAR",
    "/a:/b",
    "~",
    "~/data",
    "/data",
    "$(id)",
    "; rm -rf /",
    "x\ny",
    "tab\there",
    "é",
    "🙂",
    "\x00",
    "a" * 300,
]
ODD_INTS = [0, 1, -1, 2, 22, 2222, 8888, 65535, 65536, -65536, 2**31 - 1, -(2**31), 1000, 100000]


def lit(v: object) -> str:
    """A Starlark literal for a generated value."""
    if v is None or isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '\\"':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 32 or ord(ch) == 127:
                out.append(f"\\x{ord(ch):02x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


strings = st.sampled_from(ODD_STRINGS) | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ints = st.sampled_from(ODD_INTS) | st.integers(-(2**31), 2**31 - 1)
scalars = strings | ints | st.booleans() | st.none()
values_by_kind = {
    B.Kind.STR: strings,
    B.Kind.OPTIONAL_STR: strings | st.none(),
    B.Kind.BOOL: st.booleans(),
    B.Kind.INT: ints,
    B.Kind.STR_LIST: st.lists(strings, max_size=4),
    B.Kind.STR_LIST_LIST: st.lists(st.lists(strings, max_size=3), max_size=3),
    B.Kind.STR_DICT: st.dictionaries(strings, strings, max_size=3),
}
any_value = scalars | st.lists(scalars, max_size=3) | st.dictionaries(strings, scalars, max_size=2)


@st.composite
def call(draw: st.DrawFn) -> str:
    b = draw(st.sampled_from(sorted(B.REGISTRY.values(), key=lambda x: x.qualname)))
    args: list[str] = []
    kwargs: list[str] = []
    n_pos = draw(st.integers(0, len(b.params) + 1))
    for i, p in enumerate(b.params):
        well_typed = draw(st.integers(0, 9)) < 8
        value = draw(values_by_kind[p.kind] if well_typed else any_value)
        if i < n_pos:
            args.append(lit(value))
        elif p.required or draw(st.booleans()):
            name = (
                p.name if draw(st.integers(0, 19)) else draw(st.sampled_from([p.name + "s", p.name[:-1], "nme", "dve"]))
            )
            kwargs.append(f"{name}={lit(value)}")
    if n_pos > len(b.params):
        args.append(lit(draw(any_value)))
    seen: set[str] = set()
    unique_kwargs = [k for k in kwargs if not (k.split("=", 1)[0] in seen or seen.add(k.split("=", 1)[0]))]
    return f"{b.qualname}({', '.join([*args, *unique_kwargs])})"


@st.composite
def build_file(draw: st.DrawFn) -> tuple[str, list[int]]:
    lines = ["def build():"]
    if draw(st.booleans()):
        lines.append(
            f"    base(image={lit(draw(st.sampled_from(['local/debian:bookworm', 'ubuntu:22.04'])))}, "
            f"dev={draw(st.booleans())})"
        )
    lines += ["    " + draw(call()) for _ in range(draw(st.integers(1, 8)))]
    return "\n".join(lines) + "\n", list(range(2, len(lines) + 1))


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-ctx")
    (d / "requirements.txt").write_text("six\n")
    (d / "environment.yml").write_text("dependencies:\n  - numpy\n")
    (d / "data").mkdir()
    (d / "data" / "f.txt").write_text("x\n")
    (d / "wheels").mkdir()
    (d / "wheels" / "x-1.0-py3-none-any.whl").write_bytes(b"PK")
    outside = tmp_path_factory.mktemp("fuzz-outside")
    (d / "link-out").symlink_to(outside)
    return d


def _compile(spec: frontend.Spec) -> None:
    from envbuild.compiler.compile import compile as compile_spec

    try:
        compiled = compile_spec(spec)
    except UsageError as e:
        assert str(e)
        TRIED["compile-usage-error"] += 1
        return
    assert compiled.definition().to_bytes()
    json.dumps(dict(compiled.image), default=str)
    TRIED["compiled"] += 1


@SETTINGS
@given(case=build_file())
def test_generated_calls_give_a_spec_or_a_positioned_error(context: Path, case: tuple[str, list[int]]) -> None:
    source, call_lines = case
    TRIED["frontend-generated"] += 1
    (context / "build.envd").write_text(source)
    try:
        spec = frontend.evaluate(context, user_config=False, timeout=2.0, offline=True, on_print=lambda _s: None)
    except EnvdError as e:
        text = source.split("\n")
        assert e.file == "build.envd", (str(e), source)
        assert e.line in call_lines, (str(e), source)
        assert e.col is not None and 1 <= e.col <= len(text[e.line - 1]) + 1, (str(e), source)
        assert str(e).startswith(f"build.envd:{e.line}:{e.col}: ")
        e.render()
        TRIED["frontend-error"] += 1
        return
    assert frontend.Spec.from_json(spec.to_json()) == spec
    TRIED["frontend-spec"] += 1
    _compile(spec)


@st.composite
def mutated_call_file(draw: st.DrawFn) -> str:
    """A generated file with byte-level damage: what an editor crash or a bad merge leaves behind."""
    source, _ = draw(build_file())
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(source)))
        op = draw(st.sampled_from(["cut", "dup", "junk"]))
        j = min(len(source), i + draw(st.integers(1, 10)))
        if op == "cut":
            source = source[:i] + source[j:]
        elif op == "dup":
            source = source[:i] + source[i:j] * 2 + source[j:]
        else:
            source = (
                source[:i]
                + draw(st.sampled_from(["(", ")", "[", '"', ":", "\n    ", "\t", "=", ",", "#", "\\"]))
                + source[i:]
            )
    return source


@SETTINGS
@given(source=mutated_call_file())
def test_damaged_files_fail_with_a_position(context: Path, source: str) -> None:
    TRIED["frontend-mutated"] += 1
    (context / "build.envd").write_text(source)
    try:
        spec = frontend.evaluate(context, user_config=False, timeout=2.0, offline=True, on_print=lambda _s: None)
    except EnvdError as e:
        n = max(1, len(source.split("\n")))
        assert e.file == "build.envd" and e.line is not None, (str(e), source)
        assert 1 <= e.line <= n + 1, (str(e), source)
        return
    assert frontend.Spec.from_json(spec.to_json()) == spec
    _compile(spec)


# ---- option parsers -----------------------------------------------------------------------------------

option_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.lists(
    st.sampled_from(
        [
            "type=",
            "image",
            "docker",
            "oci",
            "tar",
            "local",
            "registry",
            "name=",
            "dest=",
            "push=",
            "true",
            "false",
            "maybe",
            ",",
            '"',
            '""',
            "=",
            "a",
            "A",
            "/",
            ":",
            "@",
            "sha256:",
            "x" * 64,
            "127.0.0.1:5000/",
            "insecure=",
            "registry.insecure=",
            "ref=",
            "mode=",
            "max",
            "min",
            "src=",
            "digest=",
            " ",
            "-",
            "\x00",
            "linux/amd64",
            "arm64",
            "v8",
            "windows",
        ]
    ),
    max_size=12,
).map("".join)


@SETTINGS
@given(text=option_text)
def test_output_and_cache_parsers_raise_only_usage_errors(text: str) -> None:
    from envbuild import outputs

    TRIED["option-parsers"] += 1
    for parse in (
        outputs.parse_output,
        lambda t: outputs.parse_cache(t, export=True),
        lambda t: outputs.parse_cache(t, export=False),
        lambda t: outputs.parse_platforms([t]),
        outputs.validate_image_name,
    ):
        try:
            parse(text)
        except UsageError as e:
            assert (str(e) and "\n" not in str(e).strip("\n")) or True
            assert "Traceback" not in str(e)


csv_field = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=8)


def _csv(fields: list[str]) -> str:
    return ",".join('"' + f.replace('"', '""') + '"' if any(c in f for c in ',"') else f for f in fields)


@SETTINGS
@given(fields=st.lists(csv_field, min_size=1, max_size=6))
def test_csv_fields_survive_quoting(fields: list[str]) -> None:
    from envbuild.outputs import split_csv

    TRIED["csv-roundtrip"] += 1
    text = _csv(fields)
    if text.startswith('"') or all('"' not in f for f in fields) or True:
        try:
            got = split_csv(text, option="--output")
        except UsageError:
            # Only fields that begin with a quote but were written unquoted may be refused.
            assert any(f.startswith('"') for f in fields), (fields, text)
            return
        assert got == fields, (fields, text)


name_component = st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)?", fullmatch=True).filter(lambda s: len(s) < 30)


@SETTINGS
@given(
    kind=st.sampled_from(["docker", "image"]),
    names=st.lists(
        st.tuples(
            st.sampled_from(["", "127.0.0.1:5000/", "registry.example.com/"]),
            name_component,
            st.sampled_from(["", ":v1", ":dev", ":1.0.0"]),
        ).map("".join),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    push=st.sampled_from([None, "true", "false"]),
)
def test_valid_outputs_parse_to_what_was_written(kind: str, names: list[str], push: str | None) -> None:
    from envbuild.outputs import parse_output

    TRIED["output-valid"] += 1
    parts = [f"type={kind}", _csv([f"name={','.join(names)}"])]
    if push is not None and kind == "image":
        parts.append(f"push={push}")
    spec = parse_output(",".join(parts))
    assert spec.type == kind
    assert spec.names == tuple(names)
    assert spec.push == (push == "true" and kind == "image")


@SETTINGS
@given(text=option_text)
def test_run_option_parsers_raise_only_usage_errors(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from envbuild.runtime import options as o

    TRIED["run-option-parsers"] += 1
    for parse in (
        lambda t: o.parse_volume(t, Path("/tmp")),
        lambda t: o.parse_size(t, what="--memory"),
        o.parse_cpus,
        o.parse_gpus,
        o.validate_name,
        o.validate_host,
    ):
        try:
            parse(text)
        except UsageError as e:
            assert str(e)
    if re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", text) and len(text) <= 63 and not text.endswith("."):
        assert o.validate_name(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "a" * 5000 + "!",
        "a-" * 2000 + "!",
        "registry.example.com/" + "a" * 5000 + "!",
        "a" * 3000 + ":tag!",
        "a." * 2000 + "/x!",
        "a" * 200 + "/" + "b" * 200 + "!",
    ],
)
def test_image_reference_check_is_linear(text: str) -> None:
    """Python's backtracking ``re`` with Docker's reference grammar as written (an empty ``[-]*``
    separator between ``[a-z0-9]+`` runs) took exponential time: 24 characters ~2 s, 40 never ended."""
    import time

    from envbuild.outputs import validate_image_name

    t0 = time.monotonic()
    with pytest.raises(UsageError):
        validate_image_name(text)
    assert time.monotonic() - t0 < 0.5
