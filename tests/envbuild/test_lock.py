"""Lock files without an engine: format determinism, staleness reasons, apply_lock, offline checks."""

from __future__ import annotations

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


SIX = L.PipPackage("six", "1.17.0", ("sha256:" + "1" * 64, "sha256:" + "2" * 64))
IDNA = L.PipPackage("idna", "3.10", ("sha256:" + "3" * 64,))


def make_lock(spec, ctx: Path, **kw) -> L.Lock:  # type: ignore[no-untyped-def]
    defaults = dict(
        inputs=L.lock_inputs(spec, ctx),
        base=L.BaseImage(spec.image, BASE_ID),
        platform="linux/amd64",
        python="3.11.2 linux-x86_64",
        apt=tuple(
            L.AptGroup(c.names, (L.AptPackage("jq", "1.6-2.1", "amd64"), L.AptPackage("libjq1", "1.6-2.1", "amd64")))
            for c in spec.apt_packages
        ),
        pip=tuple(L.PipGroup((IDNA, SIX)) for _ in spec.python_packages),
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


def test_dumps_is_deterministic_sorted_and_round_trips(project: Path) -> None:
    spec = spec_of(project)
    lk = make_lock(spec, project)
    text = lk.dumps()
    assert text == make_lock(spec_of(project), project).dumps()
    assert text.endswith("\n") and json.loads(text)["envbuild_lock"] == L.LOCK_VERSION
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert all(len(line) < 120 for line in text.splitlines()), "one item per line"
    again = L.Lock.loads(text)
    assert again.dumps() == text
    assert again.pip[0].packages == (IDNA, SIX)


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


def test_apply_lock_pins_pip_apt_http_and_base(project: Path) -> None:
    write(project, BODY + 'io.http(url="https://example.com/x.bin")\n')
    spec = spec_of(project)
    lk = make_lock(
        spec,
        project,
        http=(L.Download("https://example.com/x.bin", "sha256:" + "c" * 64),),
        base=L.BaseImage(spec.image, BASE_ID, ("docker.io/local/debian@sha256:" + "d" * 64,)),
    )
    out = L.apply_lock(spec, lk)
    (call,) = out.python_packages
    assert call.names == () and call.requirements == ".envbuild/lock/python-packages-1.txt"
    assert call.pos == spec.python_packages[0].pos
    assert call.requirements in out.inputs
    assert out.apt_packages[0].names == ("jq=1.6-2.1", "libjq1=1.6-2.1")
    assert out.http[0].checksum == "sha256:" + "c" * 64
    assert out.image == "docker.io/local/debian@sha256:" + "d" * 64
    assert out.base.dev is False


def test_apply_lock_without_registry_digest_keeps_the_ref(project: Path) -> None:
    spec = spec_of(project)
    assert L.apply_lock(spec, make_lock(spec, project)).image == "local/debian:bookworm"


def test_materialise_writes_hashed_requirements_once(project: Path) -> None:
    lk = make_lock(spec_of(project), project)
    (p,) = L.materialise(lk, project)
    text = p.read_text()
    assert "idna==3.10 \\\n    --hash=sha256:" + "3" * 64 in text
    assert text.count("--hash=") == 3
    assert L.materialise(lk, project) == []
    assert (project / ".envbuild" / ".gitignore").is_file()


def test_use_lock_locked_missing_and_stale(project: Path) -> None:
    spec = spec_of(project)
    build_file = project / "build.envd"
    with pytest.raises(L.LockError, match=r"no lock file build\.envd\.lock"):
        L.use_lock(spec, project, build_file, locked=True)
    assert L.use_lock(spec, project, build_file) is spec
    lk = make_lock(spec, project)
    (project / "build.envd.lock").write_text(lk.dumps())
    (project / "req.txt").write_text("idna\nsix\n")
    notes: list[str] = []
    assert L.use_lock(spec_of(project), project, build_file, on_note=notes.append) == spec_of(project)
    assert "stale" in notes[0] and "content of req.txt changed" in notes[0]
    with pytest.raises(L.LockError, match=r"content of req\.txt changed") as exc:
        L.use_lock(spec_of(project), project, build_file, locked=True)
    assert exc.value.exit_code == 2


def test_unreadable_or_newer_lock_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(L.LockError, match="not a valid envbuild lock"):
        L.Lock.loads("[]")
    with pytest.raises(L.LockError, match="lock format 99"):
        L.Lock.loads('{"envbuild_lock": 99}')


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


def test_parse_pip_compile() -> None:
    text = (
        "Idna==3.10 \\\n    --hash=sha256:bbb \\\n    --hash=sha256:aaa\n"
        "typing_extensions==4.12.2 ; python_version < '3.13' \\\n    --hash=sha256:ccc\n"
        "./wheels/local-1.0-py3-none-any.whl\n"
    )
    got = L.parse_pip_compile(text)
    assert got == (
        L.PipPackage("idna", "3.10", ("sha256:aaa", "sha256:bbb")),
        L.PipPackage("typing-extensions", "4.12.2", ("sha256:ccc",)),
    )


def test_resolution_graph_reuses_the_build_steps(project: Path) -> None:
    """The reduced spec compiles to the same base/apt/Python steps as the real build."""
    from envbuild.compiler import CompileOptions
    from envbuild.compiler.compile import compile as compile_spec

    spec = spec_of(project)
    opts = CompileOptions(project="p", owner=(1000, 1000))
    full = compile_spec(spec, opts)
    part = compile_spec(R.reduced(spec), opts)
    names_full = [s.name for s in full.steps]
    names_part = [s.name for s in part.steps]
    assert names_part == [n for n in names_full if not n.startswith("python packages")]
    part_ops = set(part.definition().digests[:-1])
    assert part_ops and part_ops <= set(full.definition().digests)


def test_pip_script_resolves_then_installs_each_call_as_the_owner() -> None:
    text = R.pip_script(
        [(True, []), (False, ["/run/envbuild-context/w.whl"])],
        1000,
        1000,
        home="/home/envd",
        upgrade=False,
        upgrade_packages=("six",),
    )
    assert text.count("pip compile --quiet --generate-hashes") == 2
    assert "--upgrade-package six" in text
    assert "prev-0.txt /tmp/envbuild-lock/pip-0.txt" in text and "prev-1.txt" not in text
    assert "setpriv --reuid=1000" in text
    assert text.index("in-0.txt -o /tmp/envbuild-lock/pip-0.txt") < text.index(
        "install --quiet -r /tmp/envbuild-lock/pip-0.txt"
    )


def test_offline_uses_hash_matching_wheels(project: Path) -> None:
    import hashlib

    spec = spec_of(project)
    wheels = project / ".envbuild" / "wheels"
    wheels.mkdir(parents=True)
    six_whl = wheels / "six-1.17.0-py2.py3-none-any.whl"
    six_whl.write_bytes(b"six wheel")
    (wheels / "idna-3.10-py3-none-any.whl").write_bytes(b"tampered")
    six = L.PipPackage("six", "1.17.0", ("sha256:" + hashlib.sha256(b"six wheel").hexdigest(),))
    lk = make_lock(spec, project, pip=(L.PipGroup((IDNA, six)),))
    (project / "build.envd.lock").write_text(lk.dumps())
    st = L.status(spec, project, project / "build.envd", base_id=BASE_ID)
    with pytest.raises(L.OfflineError, match=r"wheels matching the lock in \.envbuild/wheels/: idna==3\.10"):
        L.check_offline(spec, st, BASE_ID, project)
    idna_bytes = b"idna wheel"
    (wheels / "idna-3.10-py3-none-any.whl").write_bytes(idna_bytes)
    idna = L.PipPackage("idna", "3.10", ("sha256:" + "0" * 64, "sha256:" + hashlib.sha256(idna_bytes).hexdigest()))
    lk = make_lock(spec, project, pip=(L.PipGroup((idna, six)),))
    (project / "build.envd.lock").write_text(lk.dumps())
    st = L.status(spec, project, project / "build.envd", base_id=BASE_ID)
    found = L.check_offline(spec, st, BASE_ID, project)
    assert found == [
        {
            "idna": ".envbuild/wheels/idna-3.10-py3-none-any.whl",
            "six": ".envbuild/wheels/six-1.17.0-py2.py3-none-any.whl",
        }
    ]
    out = L.apply_lock(spec, lk, found)
    (call,) = out.python_packages
    assert call.requirements is None and call.names == ()
    assert call.local_wheels == (
        ".envbuild/wheels/idna-3.10-py3-none-any.whl",
        ".envbuild/wheels/six-1.17.0-py2.py3-none-any.whl",
    )
    assert set(call.local_wheels) <= set(out.inputs)


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
    assert L.unpinnable(text) == [
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
    assert L.check_vsix_cache(lk, root) == []
    (root / "vsix" / "pub.ext-1.2.3.vsix").write_bytes(_vsix("pub", "ext", "1.2.3") + b"x")
    (bad,) = L.check_vsix_cache(lk, root)
    assert "pub.ext-1.2.3" in bad and "does not match" in bad
