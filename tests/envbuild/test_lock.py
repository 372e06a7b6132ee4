"""Lock files without an engine: staleness reasons, what a lock pins, the resolution scripts, offline checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import frontend
from envbuild import lock as L
from envbuild import lockresolve as R

BASE_ID = "sha256:" + "a" * 64


def write(tmp: Path, body: str, **files: str) -> Path:
    (tmp / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()))
    for name, text in files.items():
        (tmp / name).write_text(text)
    return tmp / "build.envd"


def spec_of(tmp: Path) -> frontend.spec.Spec:  # type: ignore[name-defined]
    return frontend.evaluate(str(tmp / "build.envd"), user_config=False)


H = "sha256:" + "1" * 64
SIX = L.PythonPackage("six", "1.17.0", ("sha256:" + "1" * 64, "sha256:" + "2" * 64))
IDNA = L.PythonPackage("idna", "3.10", ("sha256:" + "3" * 64,))
JQ = (L.AptPackage("jq", "1.6-2.1", "amd64"), L.AptPackage("libjq1", "1.6-2.1", "amd64"))


def make_lock(spec, ctx: Path, **kw) -> L.Lock:  # type: ignore[no-untyped-def]
    defaults = dict(
        inputs=L.lock_inputs(spec, ctx),
        base=L.BaseImage(spec.image, BASE_ID),
        platform="linux/amd64",
        python="3.11.2 linux-x86_64",
        apt=tuple(L.AptStep(f"apt-{i + 1}", c.names, JQ) for i, c in enumerate(spec.apt_packages)),
        python_packages=(IDNA, SIX),
    )
    defaults.update(kw)
    return L.Lock(**defaults)  # type: ignore[arg-type]


BODY = """
base(image="local/debian:bookworm", dev=False)
install.apt_packages(name=["jq"])
install.python()
install.python_packages(name=["six", "idna"], requirements="req.txt")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, BODY, **{"req.txt": "idna\n"})
    return tmp_path


def test_dumps_is_deterministic_and_round_trips(project: Path) -> None:
    text = make_lock(spec_of(project), project).dumps()
    assert text == make_lock(spec_of(project), project).dumps()
    again = L.Lock.loads(text)
    assert again.dumps() == text and again.python_packages == (IDNA, SIX)


def test_reformatting_the_build_file_keeps_the_lock_fresh(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    (project / "build.envd").write_text("# a comment\n\n" + (project / "build.envd").read_text().replace("    ", "  "))
    assert L.check_lock(spec_of(project), lk, project, base_id=BASE_ID) == ()


def test_staleness_reasons_are_precise(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    write(project, BODY.replace('"six", "idna"', '"six", "attrs"').replace('["jq"]', '["jq", "curl"]'))
    (project / "req.txt").write_text("idna<3\n")
    reasons = L.check_lock(spec_of(project), lk, project, base_id="sha256:" + "b" * 64)
    text = "\n".join(reasons)
    assert "install.python_packages call 1 at build.envd:5:" in text
    assert "added attrs" in text and "removed idna" in text
    assert "content of req.txt changed" in text
    assert "install.apt_packages call 1 at build.envd:3:" in text and "added curl" in text
    assert "base image local/debian:bookworm changed in the engine store" in text


def test_added_and_removed_calls_and_base_ref(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    write(project, BODY.replace("local/debian:bookworm", "debian:12") + 'install.python_packages(name=["attrs"])\n')
    reasons = L.check_lock(spec_of(project), lk, project)
    assert "base image changed: local/debian:bookworm -> debian:12" in reasons
    assert any(r.startswith("install.python_packages call 2 at build.envd:6:") and r.endswith("added") for r in reasons)


def test_run_changes_do_not_stale_the_lock(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    write(project, BODY + 'run(commands=["echo hi"])\n', **{"req.txt": "idna\n"})
    assert L.check_lock(spec_of(project), lk, project, base_id=BASE_ID) == ()


def test_pip_options_and_environment_files_are_inputs(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    write(project, BODY.replace('["six", "idna"]', '["six", "idna", "--extra-index-url https://x.example/simple"]'))
    assert any("pip options changed" in r for r in L.check_lock(spec_of(project), lk, project, base_id=BASE_ID))


def test_apply_lock_pins_http_and_base(project: Path) -> None:
    write(project, BODY + 'io.http(url="https://example.com/x.bin")\n')
    spec = spec_of(project)
    lk = make_lock(
        spec,
        project,
        http=(L.Download("https://example.com/x.bin", "sha256:" + "c" * 64),),
        base=L.BaseImage(spec.image, BASE_ID, ("docker.io/local/debian@sha256:" + "d" * 64,)),
    )
    out = L.apply_lock(spec, lk)
    assert out.http[0].checksum == "sha256:" + "c" * 64
    assert out.image == "docker.io/local/debian@sha256:" + "d" * 64
    assert out.base.dev is False
    assert out.python_packages == spec.python_packages and out.apt_packages == spec.apt_packages


def test_a_download_with_a_login_is_locked_and_found_by_its_redacted_url(project: Path) -> None:
    write(project, BODY + 'io.http(url="https://ann:pw-9@example.com/x.bin")\n')
    spec = spec_of(project)
    records = R.downloads(spec, {"http-0": b"x"})
    assert [d.url for d in records] == ["https://***@example.com/x.bin"]
    out = L.apply_lock(spec, make_lock(spec, project, http=records))
    assert out.http[0].checksum == "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert out.http[0].url == "https://ann:pw-9@example.com/x.bin"  # the build still logs in
    st = L.LockStatus(project / "build.envd.lock", exists=True, lock=make_lock(spec, project, http=records))
    with pytest.raises(L.OfflineError) as exc:  # offline: what is missing is the base, not the download
        L.check_offline(spec, st, "")
    assert "io.http" not in str(exc.value) and "pw-9" not in str(exc.value)


def test_apply_lock_without_registry_digest_keeps_the_ref(project: Path) -> None:
    spec = spec_of(project)
    assert L.apply_lock(spec, make_lock(spec, project)).image == "local/debian:bookworm"


def test_pins_carry_every_version_for_the_compiler(project: Path) -> None:
    spec = spec_of(project)
    conda = (L.CondaPackage("greet", "2.1", "0", "noarch", "file:///c/noarch/greet-2.1-0.tar.bz2", "5" * 64),)
    pins = L.pins(spec, make_lock(spec, project, conda=conda), strict=True)
    assert pins.apt["apt-1"].names == ("jq",)
    assert pins.apt["apt-1"].packages == ("jq=1.6-2.1", "libjq1=1.6-2.1")
    assert pins.python is not None and "six==1.17.0 \\\n    --hash=sha256:" + "1" * 64 in pins.python
    assert pins.python_version == "3.11.2" and pins.strict and pins.platform == "linux/amd64"
    assert pins.conda == "@EXPLICIT\nfile:///c/noarch/greet-2.1-0.tar.bz2#sha256:" + "5" * 64 + "\n"
    assert pins.digest and pins.digest != L.pins(spec, make_lock(spec, project)).digest


def test_a_lock_cannot_name_a_local_wheel_the_build_file_does_not(project: Path) -> None:
    spec = spec_of(project)
    evil = L.PythonPackage("x", "1.0", (H,), "other/x-1.0-py3-none-any.whl")
    with pytest.raises(L.LockError, match=r"local wheel other/x-1\.0-py3-none-any\.whl"):
        L.pins(spec, make_lock(spec, project, python_packages=(IDNA, evil)))


@pytest.fixture
def engine_has_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's image id of the base is the one the locks here were made with."""
    monkeypatch.setattr(L, "engine_base_id", lambda ref: BASE_ID)


@pytest.mark.usefixtures("engine_has_base")
def test_use_lock_locked_missing_and_stale(project: Path) -> None:
    spec = spec_of(project)
    build_file = project / "build.envd"
    with pytest.raises(L.LockError, match=r"no lock file build\.envd\.lock"):
        L.use_lock(spec, project, build_file, locked=True)
    assert L.use_lock(spec, project, build_file).spec is spec
    (project / "build.envd.lock").write_text(make_lock(spec, project).dumps())
    used = L.use_lock(spec_of(project), project, build_file)
    assert used.pins is not None and not used.pins.strict
    (project / "req.txt").write_text("idna\nsix\n")
    notes: list[str] = []
    used = L.use_lock(spec_of(project), project, build_file, on_note=notes.append)
    assert used.spec == spec_of(project) and used.pins is None
    assert "stale" in notes[0] and "content of req.txt changed" in notes[0]
    with pytest.raises(L.LockError, match=r"content of req\.txt changed") as exc:
        L.use_lock(spec_of(project), project, build_file, locked=True)
    assert exc.value.exit_code == 2


@pytest.mark.usefixtures("engine_has_base")
def test_locked_refuses_a_lock_that_leaves_installs_unpinned(project: Path) -> None:
    spec = spec_of(project)
    lk = make_lock(spec, project, unlocked=("install.r_packages (build.envd:6:5): R packages come from CRAN",))
    (project / "build.envd.lock").write_text(lk.dumps())
    assert L.use_lock(spec, project, project / "build.envd").pins is not None
    with pytest.raises(L.LockError, match=r"does not cover everything this build installs:\n  - install\.r_packages"):
        L.use_lock(spec, project, project / "build.envd", locked=True)


def test_an_unreadable_lock_is_a_usage_error(project: Path) -> None:
    (project / "build.envd.lock").write_bytes(b"\xff\xfe")
    with pytest.raises(L.LockError) as exc:
        L.read_lock(project / "build.envd.lock")
    assert exc.value.exit_code == 2


def test_offline_says_which_input_is_missing(project: Path) -> None:
    write(project, BODY + 'io.http(url="https://example.com/x.bin")\n')
    spec = spec_of(project)
    st = L.status(spec, project, project / "build.envd")
    with pytest.raises(L.OfflineError) as exc:
        L.check_offline(spec, st, "")
    msg = str(exc.value)
    assert "base image local/debian:bookworm is not in the engine's image store" in msg
    assert "no lock file" in msg
    assert "https://example.com/x.bin" in msg


def test_parse_apt_simulation() -> None:
    text = (
        "NOTE: This is only a simulation!\n"
        "Inst libonig5 (6.9.8-1 Debian:12.12/stable [amd64])\n"
        "Inst jq (1.6-2.1+deb12u2 Debian:12.12/stable, Debian-Security:12/stable-security [amd64])\n"
        "Inst libc6 [2.36-9] (2.36-9+deb12u14 Debian:12.12/stable [amd64])\n"
        "Conf jq (1.6-2.1+deb12u2 Debian:12.12/stable [amd64])\n"
    )
    got = L.parse_apt_simulation(text)
    assert [(p.name, p.version, p.arch) for p in got] == [
        ("jq", "1.6-2.1+deb12u2", "amd64"),
        ("libc6", "2.36-9+deb12u14", "amd64"),
        ("libonig5", "6.9.8-1", "amd64"),
    ]


def test_offline_needs_a_hash_matching_wheel_for_each_package(project: Path) -> None:
    import hashlib

    spec = spec_of(project)
    wheels = project / ".envbuild" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"six wheel")
    (wheels / "idna-3.10-py3-none-any.whl").write_bytes(b"tampered")
    six = L.PythonPackage("six", "1.17.0", ("sha256:" + hashlib.sha256(b"six wheel").hexdigest(),))
    lk = make_lock(spec, project, python_packages=(IDNA, six))
    (project / "build.envd.lock").write_text(lk.dumps())
    st = L.status(spec, project, project / "build.envd", base_id=BASE_ID)
    with pytest.raises(L.OfflineError, match=r"wheels matching the lock in \.envbuild/wheels/: idna==3\.10"):
        L.check_offline(spec, st, BASE_ID, project)
    idna = L.PythonPackage("idna", "3.10", ("sha256:" + "0" * 64, "sha256:" + hashlib.sha256(b"tampered").hexdigest()))
    lk = make_lock(spec, project, python_packages=(idna, six))
    (project / "build.envd.lock").write_text(lk.dumps())
    st = L.status(spec, project, project / "build.envd", base_id=BASE_ID)
    L.check_offline(spec, st, BASE_ID, project)
    assert L.missing_wheels(lk, project) == []


def test_parse_pip_compile_keeps_local_wheels_by_path() -> None:
    text = (
        "Idna==3.10 \\\n    --hash=sha256:bbb \\\n    --hash=sha256:aaa\n"
        "typing_extensions==4.12.2 ; python_version < '3.13' \\\n    --hash=sha256:ccc\n"
        "/run/envbuild-context/wheels/My_Pkg-1.0-py3-none-any.whl \\\n    --hash=sha256:ddd\n"
    )
    assert L.parse_pip_compile(text, context_mount="/run/envbuild-context") == (
        L.PythonPackage("idna", "3.10", ("sha256:aaa", "sha256:bbb")),
        L.PythonPackage("my-pkg", "1.0", ("sha256:ddd",), "wheels/My_Pkg-1.0-py3-none-any.whl"),
        L.PythonPackage("typing-extensions", "4.12.2", ("sha256:ccc",)),
    )


def test_python_resolution_is_one_compile_with_the_seeds_as_the_owner() -> None:
    from envbuild.compiler.installs import PythonInstall

    request = PythonInstall(
        None,  # type: ignore[arg-type]
        "/opt/envbuild/venv/bin/python",
        ("jupyterlab>=4", "six"),
        ("--index-url", "https://idx.example/simple"),
        {},
        (),
        1000,
        1000,
        "/home/envd",
    )
    text = R.python_script(request, previous=True, upgrade=False, upgrade_packages=("six",), download=False)
    assert text.count("pip compile") == 1
    assert "venv --seed --python /opt/envbuild/venv/bin/python" in text
    assert "pip freeze --python /run/envbuild-lock-work/seed/bin/python" in text
    assert "--upgrade-package six --index-url https://idx.example/simple" in text
    assert "previous.txt /run/envbuild-lock-work/python.txt" in text
    assert "setpriv --reuid=1000" in text and "pip install" not in text and "pip download" not in text
    text = R.python_script(request, previous=False, upgrade=True, upgrade_packages=(), download=True)
    assert " --upgrade " in text and "previous.txt" not in text and "pip download" in text


def test_wheels_to_download_leave_out_local_wheels_with_their_hashes(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "python.txt").write_text(
        "idna==3.10 \\\n    --hash=sha256:aa\n"
        "/run/envbuild-context/w/mine-1.0-py3-none-any.whl \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\n"
        "six==1.17.0 \\\n    --hash=sha256:dd\n"
    )
    program = R.without_local_wheels("/run/envbuild-context")
    out = subprocess.run(["awk", program, str(tmp_path / "python.txt")], capture_output=True, text=True, check=True)
    assert out.stdout == "idna==3.10 \\\n    --hash=sha256:aa\nsix==1.17.0 \\\n    --hash=sha256:dd\n"


def test_apt_resolution_asks_for_the_locked_versions_first() -> None:
    from envbuild.compiler.installs import AptInstall

    fresh = AptInstall("apt-1", "apt: jq", ("jq",), ("jq",), None, ())  # type: ignore[arg-type]
    assert "install --no-install-recommends jq > /out/a.txt\n" in R.apt_script(fresh, "/out/a.txt")
    pinned = AptInstall("apt-1", "apt: jq", ("jq",), ("jq=1.6-2.1", "libjq1=1.6-2.1"), None, ())  # type: ignore[arg-type]
    text = R.apt_script(pinned, "/out/a.txt")
    assert "jq=1.6-2.1 libjq1=1.6-2.1 > /out/a.txt 2>/dev/null || apt-get" in text
    assert text.rstrip().endswith("--no-install-recommends jq > /out/a.txt")


def test_relocking_resolves_on_the_earlier_pins_but_not_its_interpreter_for_another_python(project: Path) -> None:
    spec = spec_of(project)
    lk = make_lock(spec, project)
    assert R.previous_pins(spec, project, None) is None
    pins = R.previous_pins(spec, project, lk)
    assert pins is not None and pins.python_version == "3.11.2" and pins.apt["apt-1"].packages
    write(project, BODY.replace("install.python()", 'install.python(version="3.12")'))
    pins = R.previous_pins(spec_of(project), project, lk)
    assert pins is not None and pins.python_version == "" and pins.apt["apt-1"].packages


def test_a_conflict_names_both_sides_with_their_positions(project: Path) -> None:
    write(project, BODY + "config.jupyter()\n", **{"req.txt": "idna\ntornado==5.0  # old\n"})
    spec = spec_of(project)
    error = (
        "  x No solution found when resolving dependencies:\n"
        "  Because only jupyterlab<=4.6.6 is available and jupyterlab>=4 depends on tornado>=6.2.0, we can\n"
        "      conclude that jupyterlab>=4 depends on tornado>=6.2.0.\n"
        "      And because you require jupyterlab>=4 and tornado==5.0, we can conclude that your requirements\n"
        "      are unsatisfiable.\n"
    )
    msg = R.conflict_message(spec, error, project)
    assert msg.splitlines()[0] == (
        "envbuild lock: config.jupyter() at build.envd:6:5 (jupyterlab>=4) conflicts with "
        "install.python_packages at build.envd:5:5 (tornado==5.0) (uv says:)"
    )
    assert "tornado>=6.2.0" in msg


def test_what_the_lock_cannot_pin_is_listed(tmp_path: Path) -> None:
    write(
        tmp_path,
        'base(image="local/debian:bookworm", dev=True)\ninstall.r_lang()\ninstall.r_packages(name=["x"])\n'
        "install.rust()\ninstall.python_packages(name=['six'])\ninstall.codex(version='rust-v0.99.0')",
    )
    listed = R.unlocked(spec_of(tmp_path))
    assert listed[0].startswith("install.r_packages (build.envd:4:5)")
    assert any(u.startswith("install.rust (build.envd:5:5)") for u in listed)
    assert any(u.startswith("install.codex (build.envd:7:5): the codex archive") for u in listed)
    assert not any("python" in u for u in listed)


def test_index_credentials_stay_out_of_the_lock(tmp_path: Path) -> None:
    write(
        tmp_path,
        'base(image="local/debian:bookworm")\nconfig.pip_index(url="https://bob:s3cret@pypi.example/simple")\n'
        'install.python_packages(name=["six"])',
    )
    spec = spec_of(tmp_path)
    text = make_lock(spec, tmp_path).dumps()
    assert "s3cret" not in text and "bob" not in text
    assert "https://***@pypi.example/simple" in text


def test_no_login_of_any_source_reaches_the_lock(tmp_path: Path) -> None:
    """The lock file is committed: apt sources, conda channels and download URLs show that a login
    was given, never which (a changed password or token makes no new lock)."""
    write(
        tmp_path,
        'base(image="local/debian:bookworm", dev=True)\n'
        'config.apt_source(source="deb https://alice:pw-apt-1@apt.example.com/debian bookworm main")\n'
        "install.python()\n"
        'install.python_packages(name=["six"])\n'
        "install.conda()\n"
        'config.conda_channel(channel="channels:\\n  - https://conda.anaconda.org/t/tk-conda-3/mychan\\n")\n'
        'install.conda_packages(name=["numpy"], channel=["https://carol:pw-conda-4@conda.example.com/ch"])\n'
        'io.http(url="https://dan:pw-http-5@files.example.com/a.bin", checksum="sha256:' + "a" * 64 + '")',
    )
    spec = spec_of(tmp_path)
    text = make_lock(spec, tmp_path).dumps()
    for secret in ("pw-apt-1", "tk-conda-3", "pw-conda-4", "pw-http-5", "alice", "carol", "dan"):
        assert secret not in text, secret
    assert "https://***@apt.example.com/debian" in text and "https://***@conda.example.com/ch" in text
    other = tmp_path / "other"
    other.mkdir()
    (other / "build.envd").write_text((tmp_path / "build.envd").read_text().replace("tk-conda-3", "tk-changed"))
    assert L.lock_inputs(spec_of(other), other) == L.lock_inputs(spec, tmp_path)


def test_registry_digest_matches_the_repository_of_the_ref() -> None:
    digest = "sha256:" + "e" * 64
    b = L.BaseImage("127.0.0.1:5000/team/debian:bookworm", "", (f"127.0.0.1:5000/team/debian@{digest}",))
    assert b.pinned_ref() == f"127.0.0.1:5000/team/debian@{digest}"
    other = L.BaseImage("127.0.0.1:5000/team/debian:bookworm", "", (f"127.0.0.1:5000/other/debian@{digest}",))
    assert other.pinned_ref() == "127.0.0.1:5000/team/debian:bookworm"


def test_unpinnable_requirements_are_named() -> None:
    text = (
        "idna==3.10 \\\n    --hash=sha256:aa\n"
        "foo @ file:///run/envbuild-context/w/foo-1.0-py3-none-any.whl \\\n    --hash=sha256:bb\n"
        "-e ./src/pkg\nbar @ git+https://x/y\n"
        "typing-extensions==4.1 ; python_version < '3.13' \\\n    --hash=sha256:cc\n--index-url https://x\n"
    )
    text += "/run/envbuild-context/w/bar-1.0-py3-none-any.whl \\\n    --hash=sha256:dd\n"
    assert L.unpinnable(text, context_mount="/run/envbuild-context") == [
        "foo @ file:///run/envbuild-context/w/foo-1.0-py3-none-any.whl",
        "-e ./src/pkg",
        "bar @ git+https://x/y",
    ]


def test_cli_package_names_need_upgrade(project: Path) -> None:
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("envbuild"))
    r = subprocess.run([exe, "lock", "-p", str(project), "six"], capture_output=True, text=True)
    assert r.returncode == 2 and "only accepted with --upgrade" in r.stderr
    r = subprocess.run([exe, "lock", "-p", str(project), "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "no lock file build.envd.lock" in r.stderr


def _vsix(publisher: str, name: str, version: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("extension/package.json", json.dumps({"publisher": publisher, "name": name, "version": version}))
        z.writestr("extension/extension.js", "exports.activate = () => {};\n")
    return buf.getvalue()


def test_vscode_extensions_are_pinned_and_cached_vsix_checked(tmp_path: Path) -> None:
    import hashlib

    write(tmp_path, 'base(image="local/debian:bookworm", dev=True)\ninstall.vscode_extensions(name=["pub.ext"])')
    spec = spec_of(tmp_path)
    blob = _vsix("pub", "ext", "1.2.3")
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        if url.endswith("/api/pub/ext/linux-x64/latest"):
            return json.dumps({"version": "1.2.3", "files": {"download": "http://mirror/ext.vsix"}}).encode()
        assert url == "http://mirror/ext.vsix"
        return blob

    root = tmp_path / "cache"
    locked = R.lock_extensions(spec, tmp_path, root=root, fetch=fetch)
    assert locked == ((L.LockedExtension("pub.ext", "1.2.3", "sha256:" + hashlib.sha256(blob).hexdigest()),),)
    lk = make_lock(spec, tmp_path, vscode=locked)
    assert L.Lock.loads(lk.dumps()) == lk
    assert L.apply_lock(spec, lk).vscode_extensions[0].names == ("pub.ext-1.2.3",)
    pins = L.pins(spec, lk)
    assert pins.vsix == {"pub.ext-1.2.3": locked[0][0].sha256}
    assert L.check_vsix(pins.vsix, root, downloaded=True) == []
    (root / "vsix" / "pub.ext-1.2.3.vsix").write_bytes(_vsix("pub", "ext", "1.2.3") + b"x")
    (bad,) = L.check_vsix(pins.vsix, root)
    assert "pub.ext-1.2.3" in bad and "does not match" in bad
    (root / "vsix" / "pub.ext-1.2.3.vsix").unlink()
    assert L.check_vsix(pins.vsix, root) == []
    assert "is missing" in L.check_vsix(pins.vsix, root, downloaded=True)[0]


def test_a_fresh_lock_that_misses_what_this_envbuild_installs_is_found(project: Path) -> None:
    """`envbuild lock --check`: a lock whose inputs are fresh but which another envbuild made (its own
    apt transactions asked for other names, or no Python resolution) does not cover this build."""
    from dataclasses import replace

    from envbuild.compiler.compile import compile

    spec = spec_of(project)
    records = compile(spec).installs.apt
    steps = tuple(L.AptStep(a.key, a.names, JQ if a.key == "apt-1" else ()) for a in records)
    assert [s.key for s in steps] == ["apt-1", "tools-python", "python3"]
    assert R.not_covered(spec, project, make_lock(spec, project, apt=steps)) == ()
    older = tuple(replace(s, names=s.names[:-1]) if s.key == "tools-python" else s for s in steps)
    (missing,) = R.not_covered(spec, project, make_lock(spec, project, apt=older))
    assert missing.startswith("the apt packages of step 'python 3.11 and uv") and "python3-venv" in missing
    assert R.not_covered(spec, project, make_lock(spec, project, apt=steps[:1] + steps[2:])) == (
        f"the apt packages of step {records[1].step!r} ({' '.join(records[1].names)})",
    )
    assert R.not_covered(spec, project, make_lock(spec, project, apt=steps, python_packages=None)) == (
        "the Python packages",
    )
