"""The lock file's text: stable and diff-friendly, versioned, and every value checked when read."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from envbuild import lockfile as F

H1, H2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def sample() -> F.Lock:
    return F.Lock(
        inputs={"image": "local/debian:bookworm", "apt": [["jq"]], "pip": [{"names": ["six"]}]},
        base=F.BaseImage("local/debian:bookworm", "sha256:" + "a" * 64),
        platform="linux/amd64",
        python="3.11.2 linux-x86_64",
        apt=(
            F.AptStep(
                "apt-1",
                ("jq",),
                (F.AptPackage("jq", "1.6-2.1+deb12u2", "amd64"), F.AptPackage("libjq1", "1.6-2.1+deb12u2", "amd64")),
            ),
            F.AptStep("python3", ("python3",), ()),
        ),
        python_packages=(
            F.PythonPackage("idna", "3.10", (H1,)),
            F.PythonPackage("six", "1.17.0", (H1, H2)),
            F.PythonPackage("mine", "1.0", (H2,), "wheels/mine-1.0-py3-none-any.whl"),
        ),
        conda=(
            F.CondaPackage(
                "greet",
                "2.1",
                "0",
                "noarch",
                "file:///run/envbuild-conda-channels/chan/noarch/greet-2.1-0.tar.bz2",
                "5" * 64,
                "6" * 32,
            ),
        ),
        http=(F.Download("https://example.com/x.bin", H1),),
        unlocked=("install.r_packages (build.envd:4:5): R packages come from CRAN as it is at build time",),
    )


def test_one_package_per_line_sorted_keys_and_a_round_trip() -> None:
    text = sample().dumps()
    assert text.endswith("\n") and text == sample().dumps()
    data = json.loads(text)
    assert list(data) == sorted(data) and data["envbuild_lock"] == F.LOCK_VERSION
    lines = text.splitlines()
    assert '    {"hashes": ["' + H1 + '", "' + H2 + '"], "name": "six", "version": "1.17.0"},' in lines
    assert sum('"name": "libjq1"' in line for line in lines) == 1
    assert '    {"names": ["python3"], "packages": [], "step": "python3"}' in lines
    assert F.Lock.loads(text) == sample()


def test_a_changed_version_is_a_one_line_diff() -> None:
    a = sample()
    b = replace(
        a, python_packages=(a.python_packages[0], replace(a.python_packages[1], version="1.16.0"), a.python_packages[2])
    )  # type: ignore[index]
    diff = [(x, y) for x, y in zip(a.dumps().splitlines(), b.dumps().splitlines(), strict=True) if x != y]
    assert len(diff) == 1 and '"1.16.0"' in diff[0][1]


def test_newer_and_older_formats_are_refused_in_one_line() -> None:
    newer = sample().dumps().replace(f'"envbuild_lock": {F.LOCK_VERSION}', '"envbuild_lock": 99')
    with pytest.raises(F.LockError) as exc:
        F.Lock.loads(newer, where="build.envd.lock")
    assert str(exc.value).count("\n") == 0
    assert "lock format 99 was written by a newer envbuild" in str(exc.value) and exc.value.exit_code == 2
    with pytest.raises(F.LockError, match="format 1 is from an older envbuild"):
        F.Lock.loads('{"envbuild_lock": 1}')


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"version": "1.17.0"', '"version": "1.17.0 --index-url http://evil"', "Python package version"),
        ('"name": "six"', '"name": "-e six"', "Python package name"),
        ('"name": "jq"', '"name": "jq; rm -rf /"', "apt package name"),
        (
            "sha256:" + "1" * 64 + '"], "name": "idna"',
            "sha256:" + "1" * 63 + 'Z"], "name": "idna"',
            "Python package hash",
        ),
        ('"subdir": "noarch", "url": "file:///run', '"subdir": "noarch", "url": "file:///run\\n', "conda package URL"),
        ('"https://example.com/x.bin"', '"https://example.com/x bin"', "download"),
        ('"path": "wheels/', '"path": "../../etc/', "local wheel path"),
        ('"step": "python3"', '"step": "Python 3"', "apt step"),
    ],
)
def test_every_value_is_checked_with_its_line(old: str, new: str, message: str) -> None:
    """The lock is untrusted: a value that could become a shell word, an option of apt or uv, or a
    path outside the project is refused, naming the line it is on."""
    text = sample().dumps()
    assert old in text, old
    bad = text.replace(old, new, 1)
    line = next(i + 1 for i, t in enumerate(bad.splitlines()) if new.split("\\n")[0] in t)
    with pytest.raises(F.LockError) as exc:
        F.Lock.loads(bad, where="build.envd.lock")
    assert str(exc.value).startswith(f"build.envd.lock:{line}: {message}"), str(exc.value)
    assert "\n" not in str(exc.value)


def test_apt_version_with_an_option_is_refused() -> None:
    text = sample().dumps().replace('"version": "1.6-2.1+deb12u2"', '"version": "-o APT::x"', 1)
    with pytest.raises(F.LockError, match=r"build\.envd\.lock:\d+: apt package version '-o APT::x' is not valid"):
        F.Lock.loads(text, where="build.envd.lock")


def test_conda_url_must_name_its_package() -> None:
    text = sample().dumps().replace("greet-2.1-0.tar.bz2", "other-9-0.tar.bz2")
    with pytest.raises(F.LockError, match=r"does not name noarch/greet-2\.1-0"):
        F.Lock.loads(text)


def test_syntax_errors_name_line_and_column_and_edits_are_noticed() -> None:
    with pytest.raises(F.LockError, match=r"^x\.lock:2:2: not a valid lock file"):
        F.Lock.loads("{\n}}", where="x.lock")
    with pytest.raises(F.LockError, match="expected a JSON object"):
        F.Lock.loads("[]")
    edited = sample().dumps().replace('"image": "local/debian:bookworm"', '"image": "debian:12"')
    with pytest.raises(F.LockError, match="inputs_sha256 does not match"):
        F.Lock.loads(edited)
    escaped = replace(sample(), inputs={**sample().inputs, "image": "\x1b[31m"}).dumps()
    with pytest.raises(F.LockError, match="control characters in the inputs"):
        F.Lock.loads(escaped)


def test_python_packages_without_hashes_cannot_be_locked() -> None:
    text = sample().dumps().replace(f'{{"hashes": ["{H1}"], "name": "idna"', '{"hashes": [], "name": "idna"')
    with pytest.raises(F.LockError, match="without hashes"):
        F.Lock.loads(text)


def test_requirements_and_explicit_files_from_the_lock() -> None:
    lk = sample()
    assert lk.python_packages is not None and lk.conda is not None
    text = F.python_requirements(lk.python_packages, "/run/envbuild-context")
    assert f"six==1.17.0 \\\n    --hash={H1} \\\n    --hash={H2}\n" in text
    assert f"/run/envbuild-context/wheels/mine-1.0-py3-none-any.whl \\\n    --hash={H2}\n" in text
    assert F.conda_explicit(lk.conda) == (
        "@EXPLICIT\nfile:///run/envbuild-conda-channels/chan/noarch/greet-2.1-0.tar.bz2#sha256:" + "5" * 64 + "\n"
    )
