"""Shell text the compiler writes: every value from a build file is one shell word (``shlex.quote``)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_a_tool_version_is_shell_text_only_where_quoted(tmp_path: Path) -> None:
    """``install.go(version=...)`` lands in the download step's messages: never as shell code."""
    from envbuild.compiler.languages import Archive, fetch_script

    marker = tmp_path / "pwned"
    what = f'go 1.2"; touch {marker}; echo "$(touch {marker})'
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "dpkg").write_text("#!/bin/sh\necho sparc\n")
    (stub / "dpkg").chmod(0o755)
    archives = {"amd64": Archive("https://example.invalid/go.tgz", "https://example.invalid/s")}
    script = fetch_script(what, archives, "true")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 1 and not marker.exists(), out
    assert out.stderr.strip() == f"envbuild: {what} has no build for sparc"


def _fake_apt(tmp_path: Path, plan: str, status: int = 0) -> dict[str, str]:
    """An ``apt-get`` on PATH that prints ``plan`` for ``-s`` (exit ``status``) and records installs."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (tmp_path / "plan").write_text(plan)
    (stub / "apt-get").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -s "*) cat "$PLAN"; exit "$STATUS" ;; esac\n'
        'echo "$@" >> "$INSTALLED"\n'
    )
    (stub / "apt-get").chmod(0o755)
    return {
        "PATH": f"{stub}:/usr/bin:/bin",
        "PLAN": str(tmp_path / "plan"),
        "STATUS": str(status),
        "INSTALLED": str(tmp_path / "installed"),
        "APT_TLS": "",
    }


JQ_LOCK = ("jq=1.6-2.1+deb12u2", "libjq1=1.6-2.1+deb12u2")


def _locked_install(
    tmp_path: Path, plan: str, status: int = 0, *, words: tuple[str, ...] = JQ_LOCK, follow_lock: bool = False
) -> subprocess.CompletedProcess[str]:
    from envbuild.compiler import scripts as S

    req = S.AptRequest(words, pinned=JQ_LOCK, follow_lock=follow_lock)
    script = "set -eu\n" + S.apt_get_install(req).replace(S.APT_STEP_DIR, str(tmp_path / "apt"))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=_fake_apt(tmp_path, plan, status))


def test_a_locked_transaction_installs_when_apts_plan_is_the_lock(tmp_path: Path) -> None:
    plan = "Inst libjq1 (1.6-2.1+deb12u2 Debian:12 [amd64])\nInst jq (1.6-2.1+deb12u2 Debian:12 [amd64])\n"
    out = _locked_install(tmp_path, plan)
    assert out.returncode == 0, out.stderr
    assert "jq=1.6-2.1+deb12u2 libjq1=1.6-2.1+deb12u2" in (tmp_path / "installed").read_text()


def test_a_locked_transaction_refuses_a_package_the_lock_does_not_have(tmp_path: Path) -> None:
    plan = "Inst libonig5 (6.9.8-1 Debian:12 [amd64])\nInst jq (1.6-2.1+deb12u2 Debian:12 [amd64])\n"
    out = _locked_install(tmp_path, plan)
    assert out.returncode == 100 and not (tmp_path / "installed").exists()
    assert out.stderr.strip() == (
        "envbuild: error: apt would also install libonig5=6.9.8-1, which the lock does not have: run `envbuild lock`"
    )


def test_a_locked_transaction_refuses_another_version_of_a_locked_package(tmp_path: Path) -> None:
    """apt's plan must have the lock's versions too, not only its names (a dependency that the step
    does not pin itself, say): the error names the locked version the source no longer gives."""
    plan = "Inst libjq1 (1.6-2.1+deb12u3 Debian:12 [amd64])\nInst jq [1.6-2] (1.6-2.1+deb12u2 Debian:12 [amd64])\n"
    out = _locked_install(tmp_path, plan, words=("jq=1.6-2.1+deb12u2",))
    assert out.returncode == 100 and not (tmp_path / "installed").exists()
    line = out.stderr.strip()
    assert line.startswith(
        "envbuild: error: the apt source no longer has the locked libjq1=1.6-2.1+deb12u2: run `envbuild lock --upgrade`"
    ), line


def test_a_transaction_that_follows_the_lock_prefers_its_versions(tmp_path: Path) -> None:
    """A locked build's names-only transaction (the merged layout's package build environment): apt
    reads preferences that put every locked version first (the image's own preferences kept), for the
    plan and the install, and the plan is checked as for a locked closure."""
    plan = "Inst libjq1 (1.6-2.1+deb12u2 Debian:12 [amd64])\nInst jq (1.6-2.1+deb12u2 Debian:12 [amd64])\n"
    out = _locked_install(tmp_path, plan, words=("jq=1.6-2.1+deb12u2",), follow_lock=True)
    assert out.returncode == 0, out.stderr
    parts = tmp_path / "apt" / "preferences.d"
    installed = (tmp_path / "installed").read_text()
    assert f"-o Dir::Etc::PreferencesParts={parts} -y -q install" in installed and installed.endswith(
        " jq=1.6-2.1+deb12u2\n"
    )
    assert (parts / "zz-envbuild-lock.pref").read_text() == (
        "Package: jq\nPin: version 1.6-2.1+deb12u2\nPin-Priority: 1001\n\n"
        "Package: libjq1\nPin: version 1.6-2.1+deb12u2\nPin-Priority: 1001\n\n"
    )
    out = _locked_install(tmp_path, "Inst libonig5 (6.9.8-1 Debian:12 [amd64])\n", follow_lock=True)
    assert out.returncode == 100 and "apt would also install libonig5=6.9.8-1" in out.stderr


def test_a_locked_version_the_mirror_lost_is_named_with_the_way_out(tmp_path: Path) -> None:
    plan = "E: Version '1.6-2.1+deb12u2' for 'jq' was not found\nE: Unable to locate package libjq1\n"
    out = _locked_install(tmp_path, plan, status=100)
    assert out.returncode == 100 and not (tmp_path / "installed").exists()
    line = out.stderr.strip()
    assert line.startswith(
        "envbuild: error: the apt source no longer has the locked jq=1.6-2.1+deb12u2 libjq1: "
        "run `envbuild lock --upgrade`"
    )
    assert "ENVBUILD_MIRROR_APT" in line and "snapshot.debian.org" in line and "\n" not in line


def test_the_apt_mirror_replaces_every_source_uri_for_the_step_only(tmp_path: Path) -> None:
    from envbuild.compiler import scripts as S

    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] https://security.debian.org/debian-security/"
        " bookworm-security main\n"
    )
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    mirror = "http://snapshot.debian.org/archive/{archive}/20250101T000000Z"
    script = S._apt_mirror(mirror).replace(S.APT_STEP_DIR, str(tmp_path / "apt")).replace("/etc/apt/", f"{etc}/")
    out = subprocess.run(["sh", "-c", f"set -eu\n{script}echo $APT_CONFIG"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    step = tmp_path / "apt"
    assert (step / "sources.list").read_text() == (
        "deb http://snapshot.debian.org/archive/debian/20250101T000000Z bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://snapshot.debian.org/archive/debian-security/20250101T000000Z"
        " bookworm-security main\n"
    )
    assert "URIs: http://snapshot.debian.org/archive/debian/20250101T000000Z\n" in (
        step / "sources.list.d" / "debian.sources"
    ).read_text()
    conf = (step / "apt.conf").read_text()
    assert f'Dir::Etc::SourceList "{step}/sources.list";' in conf and 'Check-Valid-Until "false"' in conf
    assert out.stdout.strip() == f"{step}/apt.conf"
    assert (etc / "sources.list").read_text().startswith("deb http://deb.debian.org/debian")


def test_an_apt_mirror_that_could_break_its_script_is_refused() -> None:
    import pytest

    from envbuild.compiler import scripts as S
    from envbuild.compiler.mirrors import MirrorConfigError, Mirrors

    for bad in ("http://x/a b", "http://x/#frag", "http://x/&", "http://x/'q'", "ftp"):
        with pytest.raises(MirrorConfigError, match="mirror 'apt'"):
            Mirrors.from_mapping({"apt": bad})
        with pytest.raises(ValueError):
            S._apt_mirror(bad)


def test_requirements_rewrite_replaces_the_lines_in_place_and_runs_nothing_from_them(tmp_path: Path) -> None:
    """The rewritten lines come from the project's requirements file: awk values, never shell code."""
    from envbuild.compiler.scripts import requirements_rewrite
    from frontend.spec import LineEdit

    marker = tmp_path / "pwned"
    path = tmp_path / "requirements.txt"
    path.write_text("six\ntorch --extra-index-url U \\\n  --hash=sha256:x\nidna  # kept\nz\n")
    odd = f"x; python_version < '3.8' and \"$(touch {marker})\" == `touch {marker}`"
    edits = [LineEdit(2, 3, "--extra-index-url U\ntorch --hash=sha256:x"), LineEdit(5, 5, odd)]
    subprocess.run(["sh", "-c", "set -eu\n" + requirements_rewrite(str(path), edits)], check=True)
    assert path.read_text() == f"six\n--extra-index-url U\ntorch --hash=sha256:x\nidna  # kept\n{odd}\n"
    assert not marker.exists()


def _uv_wheel(tmp_path: Path, machine: str) -> tuple[Path, str]:
    """A stand-in uv wheel for ``machine`` (its scripts are text) and its sha256."""
    import hashlib
    import zipfile

    from envbuild.compiler import scripts as S

    wheels = tmp_path / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = wheels / f"uv-{S.UV_VERSION}-py3-none-manylinux_2_17_{machine}.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"uv-{S.UV_VERSION}.data/scripts/uv", "#!/bin/sh\necho uv\n")
        z.writestr(f"uv-{S.UV_VERSION}.data/scripts/uvx", "#!/bin/sh\necho uvx\n")
        z.writestr(f"uv-{S.UV_VERSION}.dist-info/WHEEL", f"Tag: py3-none-manylinux_2_17_{machine}\n")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def _unpack(tmp_path: Path, pinned: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """The step's unpacking program with ``pinned`` in place of uv's wheel hashes."""
    import sys

    from envbuild.compiler import scripts as S

    program = S._UV_UNPACK.replace(repr(S.UV_WHEEL_SHA256), repr(pinned))
    assert program != S._UV_UNPACK
    dest = tmp_path / "bin"
    cmd = [sys.executable, "-c", program, str(tmp_path / "wheels"), str(dest)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_the_cached_uv_wheel_gives_its_binaries_when_its_hash_is_pinned(tmp_path: Path) -> None:
    import platform

    _wheel, digest = _uv_wheel(tmp_path, platform.machine())
    out = _unpack(tmp_path, ("0" * 64, digest))
    assert out.returncode == 0, out.stderr
    for name in ("uv", "uvx"):
        exe = tmp_path / "bin" / name
        assert exe.read_text() == f"#!/bin/sh\necho {name}\n"
        assert exe.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["uv", "uvx"]


def test_a_cached_uv_wheel_with_another_hash_or_machine_is_not_used(tmp_path: Path) -> None:
    """A wheel in the cache whose sha256 is not pinned (changed, truncated, another version) or that is
    built for another machine: exit 1 (pip downloads it), nothing unpacked."""
    import platform

    _uv_wheel(tmp_path, platform.machine())
    assert _unpack(tmp_path, ("0" * 64,)).returncode == 1
    other = "s390x" if platform.machine() != "s390x" else "x86_64"
    wheel, digest = _uv_wheel(tmp_path / "other", other)
    wheel.rename(tmp_path / "wheels" / wheel.name)
    assert _unpack(tmp_path, (digest,)).returncode == 1
    assert not (tmp_path / "bin").exists()


def test_the_uv_steps_fall_back_to_a_hash_checked_pip_download() -> None:
    """Without a usable cached wheel, pip downloads the pinned one (every hash required) into a
    directory of its own that is moved in whole, then the same program unpacks it."""
    from envbuild.compiler import scripts as S

    for text in (S.uv_tool("https://mirror.example/simple"), S.script(S._uv_bootstrap(None, None))):
        subprocess.run(["sh", "-n", "-c", text], check=True)
        assert text.count("uv_unpack") == 3  # defined, tried, used after the download
        download = next(line for line in text.splitlines() if " download " in line)
        assert "--require-hashes" in download and "--no-deps" in download
        assert all(f"--hash=sha256:{h}" in text for h in S.UV_WHEEL_SHA256)
    assert "--index-url https://mirror.example/simple" in S.uv_tool("https://mirror.example/simple")
