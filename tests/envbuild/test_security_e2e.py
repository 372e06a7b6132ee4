"""Nothing leaks out of the build and nobody else gets in.

- The build file reads host files only inside the build context: absolute paths, ``..`` and symlinks
  out are refused before anything is built (the corpus has one file per way), and a symlink *inside* a
  copied directory does not smuggle the file it points at into the image.
- The CA bundle given with ``--ca-cert`` is used by steps but never lands in a layer, the image config
  or a label: the built image is ``docker save``d and every byte is scanned.
- The spec label and the image carry no secrets from the build file (Jupyter token, index password,
  an apt source's login: apt gets it as a secret while its steps run).
- Ports publish on 127.0.0.1 by default; Jupyter refuses to start without a token.
- sshd takes only the user's key; the SSH config entry weakens nothing for other hosts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ENVBUILD = Path(sys.executable).with_name("envbuild")
BASE_IMAGE = "local/debian:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if k not in ("BUILDKIT_HOST", "ENVBUILD_CONTEXT")}
    e.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
             NO_COLOR="1", COLUMNS="200")
    return e


def envbuild(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENVBUILD), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def saved_image(tag: str) -> bytes:
    """``docker save`` of an image: manifest, config and every layer, uncompressed."""
    out = subprocess.run(["docker", "save", tag], capture_output=True, check=True)
    return out.stdout


def image_files(saved: bytes) -> dict[str, bytes]:
    """Every regular file of every layer (``layer/path``) plus the archive's own JSON files."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for m in outer.getmembers():
            if not m.isfile():
                continue
            data = outer.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith("layer.tar") or (m.name.startswith("blobs/") and _is_tar(data)):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer.getmembers():
                        if f.isfile():
                            files[f"{m.name}:{f.name}"] = layer.extractfile(f).read()  # type: ignore[union-attr]
            else:
                files[m.name] = data
    return files


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def leaks(tag: str, needles: list[bytes]) -> list[str]:
    saved = saved_image(tag)
    found = [f"raw archive contains {n!r}" for n in needles if n in saved]
    for name, data in image_files(saved).items():
        found += [f"{name} contains {n!r}" for n in needles if n in data]
    return found


def make_ca(tmp_path: Path) -> tuple[Path, bytes]:
    """A CA bundle (the system one plus a fresh self-signed certificate) and a needle unique to it."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test CA")
    key, cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN=envbuild-test-ca-{uuid.uuid4().hex[:8]}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    pem = cert.read_text()
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    needle = body[len(body) // 2].encode()
    bundle = tmp_path / "bundle.pem"
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle.write_text((system.read_text() if system.exists() else "") + pem)
    return bundle, needle


# ---- reading the host ----------------------------------------------------------------------------

@pytest.mark.engine
@pytest.mark.engine
def test_symlink_inside_a_copied_directory_does_not_copy_its_target(env: dict[str, str], tmp_path: Path) -> None:
    secret = f"host-secret-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(secret)
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "ok.txt").write_text("inside\n")
    (proj / "data" / "relative-leak").symlink_to("../../outside/secret.txt")
    (proj / "data" / "absolute-leak").symlink_to(outside / "secret.txt")
    (proj / "data" / "dir-leak").symlink_to(outside)
    (proj / "build.envd").write_text(
        "def build():\n"
        f'    base(image="{BASE_IMAGE}", dev=False)\n'
        '    io.copy(source="data", target="/data")\n'
    )
    tag = f"envbuild-sec-{uuid.uuid4().hex[:8]}:dev"
    try:
        r = envbuild(["build", "-p", str(proj), "-t", tag, "--progress", "plain"], env)
        if r.returncode == 2:
            assert "outside" in r.stderr or "symlink" in r.stderr, r.stderr
            return
        assert r.returncode == 0, r.stderr[-3000:]
        assert leaks(tag, [secret.encode()]) == []
        ls = subprocess.run(["docker", "run", "--rm", tag, "sh", "-c", "cat /data/ok.txt; ls -la /data"],
                            capture_output=True, text=True)
        assert "inside" in ls.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.engine
@pytest.mark.engine
@pytest.mark.parametrize("source", ["/etc/hostname", "../outside", "link-out"])
def test_copy_from_outside_the_context_is_refused_before_building(source: str, env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "link-out").symlink_to(tmp_path / "outside")
    (proj / "build.envd").write_text(
        f'def build():\n    base(image="{BASE_IMAGE}", dev=False)\n    io.copy(source="{source}", target="/x")\n'
    )
    r = envbuild(["build", "-p", str(proj)], env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "build.envd:3:5:" in r.stderr and "build context" in r.stderr, r.stderr


@pytest.mark.engine
def test_a_requirements_symlink_to_a_file_of_the_context_builds(env: dict[str, str], tmp_path: Path) -> None:
    """The build receives the file the symlink names (the link alone would dangle in the build)."""
    proj = tmp_path / "proj"
    (proj / "deps").mkdir(parents=True)
    (proj / "deps" / "requirements.txt").write_text("six\n")
    (proj / "requirements.txt").symlink_to("deps/requirements.txt")
    (proj / "build.envd").write_text(
        f'def build():\n    base(image="{BASE_IMAGE}", dev=False)\n    install.python()\n'
        '    install.python_packages(requirements="requirements.txt")\n'
    )
    tag = f"envbuild-sec-{uuid.uuid4().hex[:8]}:dev"
    try:
        r = envbuild(["build", "-p", str(proj), "-t", tag, "--ca-cert", CA_BUNDLE, "--progress", "plain"], env)
        assert r.returncode == 0, r.stderr[-3000:]
        six = subprocess.run(["docker", "run", "--rm", tag, "/opt/envbuild/venv/bin/python", "-c", "import six"],
                             capture_output=True, text=True)
        assert six.returncode == 0, six.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


# ---- secrets in the image ----------------------------------------------------------------------------

@pytest.mark.engine
@pytest.mark.engine
def test_ca_bundle_is_used_but_never_stored(env: dict[str, str], tmp_path: Path) -> None:
    bundle, needle = make_ca(tmp_path)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "build.envd").write_text(
        "def build():\n"
        f'    base(image="{BASE_IMAGE}", dev=False)\n'
        f'    run(commands=["grep -c {needle.decode()} \\"$SSL_CERT_FILE\\" > /ca-seen"])\n'
    )
    tag = f"envbuild-sec-{uuid.uuid4().hex[:8]}:dev"
    try:
        r = envbuild(["build", "-p", str(proj), "-t", tag, "--ca-cert", str(bundle), "--progress", "plain"], env)
        assert r.returncode == 0, r.stderr[-3000:]
        seen = subprocess.run(["docker", "run", "--rm", tag, "cat", "/ca-seen"], capture_output=True, text=True)
        assert seen.stdout.strip() == "1", f"the step did not see the CA: {seen}"
        # The build file itself holds the needle (it greps for it): scan for the certificate's other lines.
        pem = [ln.encode() for ln in (bundle.read_text().split("-----BEGIN CERTIFICATE-----")[-1]).splitlines()
               if len(ln) == 64 and ln.encode() != needle]
        assert pem, "no certificate body lines to look for"
        found = leaks(tag, pem)
        assert found == [], "the CA bundle landed in the image:\n" + "\n".join(found[:20])
        inspect = json.loads(subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True,
                                            check=True).stdout)[0]
        assert str(bundle) not in json.dumps(inspect), "the host path of the CA bundle is in the image config"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.engine
@pytest.mark.engine
@pytest.mark.slow
def test_jupyter_token_reaches_up_but_not_the_image(env: dict[str, str], tmp_path: Path) -> None:
    """`up` takes config.jupyter(token=...) from the build file; the image holds it nowhere, so
    `run --image` (no build file) makes and prints a random one."""
    token = f"tok{uuid.uuid4().hex}"
    proj = tmp_path / f"sec-tok-{uuid.uuid4().hex[:6]}"
    proj.mkdir()
    (proj / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=True)\n'
                                     f'    install.python()\n    config.jupyter(token="{token}")\n')
    other = f"{proj.name}-run"
    image = ""
    try:
        up = envbuild(["up", "-d", "-p", str(proj), "--format", "json",
                       "--ca-cert", "/etc/ssl/certs/ca-certificates.crt"], env, timeout=1500)
        assert up.returncode == 0, up.stderr[-3000:]
        info = json.loads(up.stdout)
        image = info["image"]
        assert info["jupyter"]["token"] == token
        found = leaks(image, [token.encode()])
        assert found == [], "the Jupyter token landed in the image:\n" + "\n".join(found[:20])
        run = envbuild(["run", "--image", image, "--name", other, "-d"], env, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        printed = re.search(r"token=([A-Za-z0-9_-]+)", run.stdout)
        assert printed and printed[1] != token and len(printed[1]) >= 30, run.stdout
    finally:
        envbuild(["destroy", "--name", other], env, timeout=120)
        envbuild(["destroy", "--name", proj.name, "--image"], env, timeout=120)


def _compile(tmp_path: Path, body: str):
    import frontend
    from envbuild.compiler.compile import compile as compile_spec

    (tmp_path / "build.envd").write_text(body)
    return compile_spec(frontend.evaluate(tmp_path, user_config=False))


def test_spec_label_carries_no_jupyter_token(tmp_path: Path) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    compiled = _compile(tmp_path, 'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
                                  f'    install.python()\n    config.jupyter(token="{token}")\n')
    assert token not in json.dumps(dict(compiled.image), default=str)
    assert token.encode() not in compiled.definition().to_bytes()


def test_index_credentials_stay_out_of_the_image(tmp_path: Path) -> None:
    password = f"pw{uuid.uuid4().hex}"
    compiled = _compile(tmp_path, 'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
                                  f'    install.python()\n'
                                  f'    config.pip_index(url="https://alice:{password}@pypi.example.com/simple")\n')
    assert password not in json.dumps(dict(compiled.image), default=str)
    assert password.encode() not in compiled.definition().to_bytes()


def test_index_credentials_reach_the_steps_as_a_netrc_secret(tmp_path: Path) -> None:
    """The steps that use the index mount the netrc (NETRC set); the image's pip.conf names the index
    without credentials; the label says credentials were given, not which."""
    from envbuild.compiler import credentials
    from frontend.spec import Spec

    compiled = _compile(tmp_path, 'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
                                  '    install.python()\n    install.python_packages(name=["six"])\n'
                                  '    config.pip_index(url="https://alice:p%40ss@pypi.example.com/simple", '
                                  'extra_url="https://extra.example.com/simple")\n')
    netrc = b"machine pypi.example.com login alice password p@ss\n"
    assert compiled.secret_values == {credentials.NETRC_SECRET_ID: netrc}
    assert credentials.NETRC_SECRET_ID in compiled.secrets
    definition = compiled.definition().to_bytes()
    assert b"https://pypi.example.com/simple" in definition and b"alice" not in definition
    assert credentials.NETRC_PATH.encode() in definition
    label = Spec.from_json(compiled.labels["ai.envbuild.spec"])
    assert label.pip_index is not None and label.pip_index.url == "https://***@pypi.example.com/simple"
    assert label.pip_index.extra_url == "https://extra.example.com/simple"
    assert (
        b"[global]\nindex-url = https://pypi.example.com/simple\nextra-index-url = https://extra.example.com/simple\n"
        in definition
    ), "the image's /etc/pip.conf should name the index without credentials"


def test_repo_credentials_stay_out_of_every_label(tmp_path: Path) -> None:
    password = f"pw{uuid.uuid4().hex}"
    compiled = _compile(
        tmp_path,
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
        f'    config.repo(url="https://alice:{password}@git.example.com/team/env", '
        'description="env")\n',
    )
    labels = dict(compiled.labels)
    assert password not in json.dumps(dict(compiled.image), default=str), "a label holds the repo's password"
    assert json.loads(labels["ai.envbuild.repo"]) == {
        "url": "https://***@git.example.com/team/env",
        "description": "env",
    }
    assert password.encode() not in compiled.definition().to_bytes()


@pytest.mark.parametrize("where", ["build file", "mirror setting"])
def test_cran_mirror_credentials_reach_the_steps_only_as_a_secret(tmp_path: Path, where: str) -> None:
    """Not in a step's command line (``docker history``), not in ``Rprofile.site``, not in a label."""
    import frontend
    from envbuild.compiler import CompileOptions
    from envbuild.compiler.compile import compile as compile_spec
    from envbuild.compiler.mirrors import Mirrors

    password = f"pw{uuid.uuid4().hex}"
    url = f"https://bob:{password}@cran.example.com/"
    mirror = f'    config.cran_mirror(url="{url}")\n' if where == "build file" else ""
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
        f'    install.r_packages(name=["data.table"])\n{mirror}'
    )
    spec = frontend.evaluate(tmp_path, user_config=False)
    mirrors = Mirrors.from_mapping({"cran": url}) if where == "mirror setting" else Mirrors()
    compiled = compile_spec(spec, CompileOptions(mirrors=mirrors))
    definition = compiled.definition().to_bytes()
    assert password.encode() not in definition, "the CRAN password is in the LLB (a step's command or a file)"
    assert password not in json.dumps(dict(compiled.image), default=str)
    assert b'options(repos = c(CRAN = "https://cran.example.com' in definition  # Rprofile.site, no password
    (secret_id,) = [k for k, v in compiled.secret_values.items() if password.encode() in v]
    assert secret_id in compiled.secrets and f"/run/secrets/{secret_id}".encode() in definition


def test_julia_pkg_server_credentials_reach_the_steps_only_as_a_secret(tmp_path: Path) -> None:
    password = f"pw{uuid.uuid4().hex}"
    compiled = _compile(
        tmp_path,
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
        '    install.julia()\n    install.julia_packages(name=["Example"])\n'
        f'    config.julia_pkg_server(url="https://carol:{password}@pkg.example.com")\n',
    )
    assert password.encode() not in compiled.definition().to_bytes()
    assert password not in json.dumps(dict(compiled.image), default=str)
    assert "JULIA_PKG_SERVER=https://pkg.example.com" in compiled.image["env"]
    assert any(password.encode() in v for v in compiled.secret_values.values())


@pytest.mark.parametrize(
    ("setting", "line"),
    [("go", "install.go()"), ("nodejs", "install.nodejs()"), ("rustup_update_root", "install.rust()")],
)
def test_download_mirror_credentials_reach_curl_only_as_a_secret(tmp_path: Path, setting: str, line: str) -> None:
    """A login in the user's own mirror setting: not in any step's command, not in the image env."""
    import frontend
    from envbuild.compiler import CompileOptions
    from envbuild.compiler.compile import compile as compile_spec
    from envbuild.compiler.mirrors import Mirrors

    password = f"pw{uuid.uuid4().hex}"
    (tmp_path / "build.envd").write_text(
        f'def build():\n    base(image="local/debian:bookworm", dev=False)\n    {line}\n'
    )
    spec = frontend.evaluate(tmp_path, user_config=False)
    mirrors = Mirrors.from_mapping({setting: f"https://dave:{password}@mirror.example.com/dl"})
    compiled = compile_spec(spec, CompileOptions(mirrors=mirrors))
    definition = compiled.definition().to_bytes()
    assert password.encode() not in definition
    assert password not in json.dumps(dict(compiled.image), default=str)
    assert b"https://mirror.example.com/dl/" in definition and b"--netrc-file /run/secrets/" in definition
    (secret,) = [v for v in compiled.secret_values.values() if password.encode() in v]
    assert secret == f"machine mirror.example.com login dave password {password}\n".encode()


@pytest.mark.parametrize("setting", ["apt", "pytorch", "conda_channel_alias", "rustup_dist_server"])
def test_mirror_settings_read_by_a_tool_from_its_environment_take_no_login(setting: str) -> None:
    from envbuild.compiler.mirrors import MirrorConfigError, Mirrors

    with pytest.raises(MirrorConfigError, match=f"mirror '{setting}' carries a login"):
        Mirrors.from_mapping({setting: "https://erin:secret@mirror.example.com/x"})
    assert getattr(Mirrors.from_mapping({setting: "https://mirror.example.com/x"}), setting)


def test_credentials_that_a_netrc_cannot_hold_are_refused(tmp_path: Path) -> None:
    from envbuild.errors import UsageError

    with pytest.raises(UsageError, match="netrc"):
        _compile(
            tmp_path,
            'def build():\n    base(image="local/debian:bookworm", dev=False)\n    install.python()\n'
            '    config.pip_index(url="https://alice:a%20b@pypi.example.com/simple")\n',
        )
    with pytest.raises(UsageError, match="different credentials"):
        _compile(
            tmp_path,
            'def build():\n    base(image="local/debian:bookworm", dev=False)\n    install.python()\n'
            '    config.pip_index(url="https://a:1@h.example.com/simple", extra_url="https://b:2@h.example.com/x")\n',
        )


def test_redaction_covers_every_url_the_label_shows() -> None:
    from envbuild.compiler import credentials as C
    from frontend import spec as S

    spec = S.Spec(
        pip_index=S.PipIndex("https://u:pw1@a.example/simple", "https://tok2@b.example/simple"),
        pixi=S.Pixi(pypi_index="https://u:pw3@c.example/simple"),
        apt_source=S.Text("deb https://u:pw4@deb.example/debian bookworm main\n"),
        conda_channel=S.Text("channels:\n  - https://u:pw5@conda.example/ch\n"),
        conda_packages=(S.CondaPackages(names=("x",), channels=("https://u:pw6@conda.example/c2",)),),
        http=(S.HttpDownload("https://u:pw7@files.example/f.tgz", checksum="sha256:" + "0" * 64),),
        jupyter=S.Jupyter(token="pw8"),
    )
    text = C.public_spec(spec).to_json()
    assert not any(f"pw{i}" in text for i in range(1, 9)) and "tok2" not in text, text
    assert S.Spec.from_json(text).pip_index.url == "https://***@a.example/simple"  # type: ignore[union-attr]
    assert C.strip_url("https://a:p@ss@host:81/x") == "https://host:81/x"
    assert C.without_credentials(spec).pip_index.url == "https://a.example/simple"  # type: ignore[union-attr]


def test_the_content_digest_hashes_no_secret(tmp_path: Path) -> None:
    """The digest label is public: a hash over a known spec plus a weak token could be guessed offline."""
    import frontend
    from envbuild.build import input_digest
    from envbuild.compiler.credentials import public_spec

    (tmp_path / "build.envd").write_text('def build():\n    base(dev=True)\n    config.jupyter(token="hunter2")\n')
    spec = frontend.evaluate(tmp_path, user_config=False)
    kw = {"owner": (1000, 1000), "base_id": "sha256:x"}
    assert input_digest(spec, tmp_path, **kw) == input_digest(public_spec(spec), tmp_path, **kw)  # type: ignore[arg-type]


def test_spec_label_round_trips_without_host_paths(tmp_path: Path) -> None:
    """The label says what the environment is, not where the builder's files live."""
    (tmp_path / "requirements.txt").write_text("six\n")
    compiled = _compile(
        tmp_path,
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
        '    install.python()\n    install.python_packages(requirements="requirements.txt")\n',
    )
    label = compiled.labels["ai.envbuild.spec"]
    assert str(tmp_path) not in label
    assert str(Path.home()) not in label or str(Path.home()) == "/"


# ---- who can connect ------------------------------------------------------------------------------


def test_ports_publish_on_loopback_by_default() -> None:
    from envbuild.runtime.options import RunOptions, plan_container

    labels = {
        "ai.envbuild.ports": json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888}]),
        "ai.envbuild.project": "p",
    }
    plan = plan_container(
        name="p",
        image="img",
        image_labels=labels,
        spec=None,
        project=None,
        options=RunOptions(),
        authorized_keys="ssh-ed25519 AAAA test",
        token="t",
    )
    assert plan.ports and all(p.host_ip == "127.0.0.1" for p in plan.ports)
    bindings = plan.create_kwargs()["ports"]
    assert all(b["HostIp"] == "127.0.0.1" for b in bindings.values())


def test_runtime_expose_defaults_to_loopback(tmp_path: Path) -> None:
    import frontend

    (tmp_path / "build.envd").write_text("def build():\n    base(dev=True)\n    runtime.expose(envd_port=8080)\n")
    spec = frontend.evaluate(tmp_path, user_config=False)
    assert [e.listen_addr for e in spec.runtime.exposes] == ["127.0.0.1"]


def test_jupyter_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    """Run the generated Jupyter config the way Jupyter would, with no token file: it must exit."""
    from envbuild.compiler import devfiles

    config = devfiles.jupyter_config("/home/envd/p")
    assert "token = ''" not in config and 'token = ""' not in config
    assert not Path(devfiles.JUPYTER_TOKEN).exists(), "this host has a Jupyter token file; cannot test"
    script = tmp_path / "cfg.py"
    script.write_text(
        "class _C:\n    def __getattr__(self, n):\n        return self\n    def __setattr__(self, n, v):\n"
        "        pass\nc = _C()\n" + config
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert r.returncode != 0 and "refusing to start" in r.stderr


def test_sshd_is_key_only() -> None:
    from envbuild.compiler import devfiles

    for uid in (1000, 0):
        conf = devfiles.sshd_config(uid, {})
        settings = {ln.split(None, 1)[0].lower(): ln.split(None, 1)[1] for ln in conf.splitlines() if ln.strip()}
        assert settings["passwordauthentication"] == "no"
        assert settings["kbdinteractiveauthentication"] == "no"
        assert settings["permitrootlogin"] in ("no", "prohibit-password")
        # the runtime's key (root's file), then envd's /var/envd/authorized_keys: empty in the image, envd's to add to
        assert settings["authorizedkeysfile"] == "/etc/envbuild/authorized_keys /var/envd/authorized_keys"
        assert settings.get("permitemptypasswords", "no") == "no"


def test_ssh_config_entry_weakens_nothing_for_other_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuild import ssh

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host work\n  HostName work.example.com\n  StrictHostKeyChecking yes\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    ssh.write_host(ssh.HostEntry("myenv", 43022, "127.0.0.1"))
    user = (home / ".ssh" / "config").read_text()
    included = ssh.ssh_config_path().read_text()
    assert user.endswith("Host work\n  HostName work.example.com\n  StrictHostKeyChecking yes\n"), user
    assert user.index("Include") < user.index("Host work"), "the Include must come before every Host block"
    for text in (user, included):
        preamble, blocks = _blocks(text)
        assert not re.search(
            r"(?im)^\s*(StrictHostKeyChecking|UserKnownHostsFile|ForwardAgent|IdentityFile)", preamble
        ), f"settings outside a Host block apply to every host:\n{preamble}"
        for pattern, block in blocks:
            assert "*" not in pattern.replace("*.envbuild", ""), block
            assert not re.search(r"(?im)^\s*StrictHostKeyChecking\s+no\b", block), block
            assert not re.search(r"(?im)^\s*UserKnownHostsFile\s+/dev/null\b", block), block
    assert "Host myenv.envbuild" in included
    check = subprocess.run(
        ["ssh", "-G", "-F", str(home / ".ssh" / "config"), "github.com"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )
    if check.returncode == 0:
        opts = dict(ln.split(None, 1) for ln in check.stdout.splitlines() if " " in ln)
        assert opts.get("stricthostkeychecking") not in ("false", "no")
        assert "/dev/null" not in opts.get("userknownhostsfile", "")
        assert opts.get("forwardagent") in (None, "no")


def _blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(lines before the first Host/Match, [(pattern, block text)]) of an ssh_config."""
    preamble: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"\s*(host|match)\s+(.*)$", line, re.I)
        if m:
            blocks.append((m[2].strip(), [line]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), [(p, "\n".join(b)) for p, b in blocks]


@pytest.mark.engine
@pytest.mark.engine
@pytest.mark.slow
def test_sshd_accepts_only_the_users_key(env: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("the OpenSSH client is not installed")
    proj = tmp_path / f"sec-ssh-{uuid.uuid4().hex[:6]}"
    proj.mkdir()
    (proj / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=True)\n')
    name = proj.name
    try:
        up = envbuild(
            ["up", "-d", "-p", str(proj), "--format", "json", "--ca-cert", "/etc/ssl/certs/ca-certificates.crt"],
            env,
            timeout=900,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        info = json.loads(up.stdout)
        port = info["ssh"]["port"]
        assert all(p["host_ip"] == "127.0.0.1" for p in info["ports"])
        ok = envbuild(["exec", name, "--", "true"], env, timeout=120)
        assert ok.returncode == 0, ok.stderr
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        common = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey,password,keyboard-interactive",
            "-F",
            "/dev/null",
            "-p",
            str(port),
        ]
        for user in ("envd", "root"):
            r = subprocess.run(
                ["ssh", *common, "-i", str(other), f"{user}@127.0.0.1", "true"],
                capture_output=True,
                text=True,
                timeout=60,
                env={**env, "SSH_AUTH_SOCK": ""},
            )
            assert r.returncode == 255 and "Permission denied" in r.stderr, (user, r.stderr)
        r = subprocess.run(
            ["ssh", *common, "-o", "PubkeyAuthentication=no", "envd@127.0.0.1", "true"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "SSH_AUTH_SOCK": ""},
        )
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr
    finally:
        envbuild(["destroy", "--name", name, "--image"], env, timeout=120)


# ---- what a build file or an image may do to the host (issue 15: items 1, 2, 10) -----------------


def _inspect(name: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


@pytest.mark.engine
@pytest.mark.slow
def test_mounts_and_addresses_a_spec_asks_for_stay_inside_what_the_user_allowed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A session: `up` with a build file that climbs out of the data directory, then `run --image` of
    the same image with an edited spec label, then `run --image` over the project's environment."""
    from frontend.spec import Expose, Mount, Pos, Spec

    home = Path(env["HOME"])
    proj = tmp_path / f"sec-mnt-{uuid.uuid4().hex[:6]}"
    proj.mkdir()
    (proj / "build.envd").write_text(
        "def build():\n"
        f'    base(image="{BASE_IMAGE}", dev=True)\n'
        '    runtime.mount(host_path="~/.cache/envbuild/data/../../../victim", envd_path="/victim")\n'
        '    runtime.mount(host_path=data.envd("kept"), envd_path="~/kept")\n'
        '    runtime.expose(envd_port=8080, listen_addr="0.0.0.0")\n'
    )
    name, evil, wide = proj.name, f"{proj.name}-evil", f"{proj.name}-wide"
    image = f"{name.lower()}:dev"
    try:
        up = envbuild(["up", "-d", "-p", str(proj), "--ca-cert", CA_BUNDLE], env, timeout=1500)
        assert up.returncode == 2, up.stderr[-3000:]
        assert "build.envd:3:5: runtime.mount(): the host path" in up.stderr and "does not exist" in up.stderr
        assert not (home / "victim").exists(), "a build file made a directory outside the data directory"

        (home / "victim").mkdir(mode=0o700)
        up = envbuild(["up", "-d", "-p", str(proj), "--format", "json", "--ca-cert", CA_BUNDLE], env, timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        assert (home / "victim").stat().st_mode & 0o777 == 0o700, "up changed the mode of a directory it did not make"
        kept = home / ".cache/envbuild/data/kept"
        assert kept.is_dir() and kept.stat().st_mode & 0o777 == 0o755 and kept.stat().st_uid == os.getuid()
        assert "refused: publishing port 8080 on 127.0.0.1, not 0.0.0.0" in up.stderr, up.stderr
        assert {p["host_ip"] for p in json.loads(up.stdout)["ports"]} == {"127.0.0.1"}
        project_container = _inspect(name)["Id"]

        label = Spec.from_json(_inspect(image)["Config"]["Labels"]["ai.envbuild.spec"])
        at = Pos("build.envd", 9, 5)
        edited = dataclasses.replace(
            label,
            runtime=dataclasses.replace(
                label.runtime,
                mounts=(
                    Mount("/", "/host", pos=at),
                    Mount("~/.cache/envbuild/data/../../.ssh", "/ssh", True, at),
                    Mount("~/.cache/envbuild/data/fresh", "/fresh", True, at),
                ),
                exposes=(Expose(8080, listen_addr="0.0.0.0", pos=at),),
            ),
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", f"{evil}:dev", "--label", f"ai.envbuild.spec={edited.to_json()}", "-"],
            input=f"FROM {image}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        run = envbuild(["run", "--image", f"{evil}:dev", "--name", evil, "-d"], env, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        refused = [ln for ln in run.stderr.splitlines() if ln.startswith("refused: ")]
        assert len(refused) == 3, run.stderr
        assert (
            "not mounting / at /host" in refused[0] and "not mounting ~/.cache/envbuild/data/../../.ssh" in refused[1]
        )
        assert "publishing port 8080 on 127.0.0.1, not 0.0.0.0" in refused[2]
        info = _inspect(evil)
        assert [m["Source"] for m in info["Mounts"]] == [str(home / ".cache/envbuild/data/fresh")]
        assert {b[0]["HostIp"] for b in info["HostConfig"]["PortBindings"].values()} == {"127.0.0.1"}
        assert not (home / ".ssh").exists() or (home / ".ssh").stat().st_mode & 0o777 != 0o777

        allowed = envbuild(
            [
                "run",
                "--image",
                f"{evil}:dev",
                "--name",
                wide,
                "-d",
                "--host",
                "0.0.0.0",
                "-v",
                f"{home / 'victim'}:/host:ro",
            ],
            env,
            timeout=600,
        )
        assert allowed.returncode == 0, allowed.stderr[-3000:]
        assert "not mounting / at /host" not in allowed.stderr and "publishing port" not in allowed.stderr
        info = _inspect(wide)
        assert str(home / "victim") in [m["Source"] for m in info["Mounts"]]
        assert info["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostIp"] == "0.0.0.0"

        broken = dataclasses.replace(
            label, runtime=dataclasses.replace(label.runtime, exposes=(Expose(8080, listen_addr="everywhere", pos=at),))
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", f"{evil}:bad", "--label", f"ai.envbuild.spec={broken.to_json()}", "-"],
            input=f"FROM {image}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        bad = envbuild(["run", "--image", f"{evil}:bad", "--name", f"{evil}-bad", "-d"], env, timeout=120)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.strip() == (
            f"envbuild: error: image '{evil}:bad': its ai.envbuild.spec label is refused: "
            "build.envd:9:5: runtime.expose(): 'listen_addr' must be an IP address, "
            "got 'everywhere'"
        )

        takeover = envbuild(["run", "--image", f"{evil}:dev", "--name", name, "-d"], env, timeout=120)
        assert takeover.returncode == 2 and f"already belongs to {proj}" in takeover.stderr, takeover.stderr
        assert _inspect(name)["Id"] == project_container and _inspect(name)["State"]["Running"]
    finally:
        for n in (evil, wide, f"{evil}-bad"):
            envbuild(["destroy", "--name", n], env, timeout=120)
        envbuild(["destroy", "--name", name, "--image"], env, timeout=120)
        subprocess.run(["docker", "rmi", "-f", f"{evil}:dev", f"{evil}:bad"], capture_output=True, check=False)


# ---- values from the build file reach the environment exactly, as data (issue 15, item 9) -------------


@pytest.mark.engine
@pytest.mark.slow
def test_environ_daemon_and_git_values_arrive_exactly_and_inject_nothing(env: dict[str, str], tmp_path: Path) -> None:
    proj = tmp_path / f"sec-esc-{uuid.uuid4().hex[:6]}"
    proj.mkdir()
    tricky = {"QUOTED": 'say "hi"', "SLASHED": "a\\\\b", "HASHED": "x #y", "SEMI": "a ; b", "DOLLAR": "$(id)"}
    environ = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in tricky.items())
    argv = [
        "python3",
        "-c",
        "import json, sys, time; json.dump(sys.argv[1:], open('/tmp/argv.json', 'w')); time.sleep(86400)",
        "x #y",
        "a ;b",
        "100%(ENV_HOME)s",
        'say "hi"',
        "it's",
        "back\\slash",
        "$(id)",
    ]
    (proj / "build.envd").write_text(
        "def build():\n"
        f'    base(image="{BASE_IMAGE}", dev=True)\n'
        f"    runtime.environ(env={{{environ}}})\n"
        f"    runtime.daemon(commands=[{json.dumps(argv)}])\n"
        '    git_config(name="Ada \\"the\\" Lovelace ; #1", email="e #1@example.com", editor="vim -u \\\\x")\n'
    )
    name = proj.name
    try:
        up = envbuild(["up", "-d", "-p", str(proj), "--ca-cert", CA_BUNDLE, "--timeout", "120"], env, timeout=1500)
        assert up.returncode == 0, up.stderr[-3000:]
        got = envbuild(
            [
                "exec",
                name,
                "--",
                "python3",
                "-c",
                f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {list(tricky)}}}))",
            ],
            env,
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout) == tricky
        deadline = time.monotonic() + 60
        while True:
            seen = subprocess.run(["docker", "exec", name, "cat", "/tmp/argv.json"], capture_output=True, text=True)
            if seen.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen.returncode == 0, seen.stderr
        assert json.loads(seen.stdout) == argv[3:]
        programs = subprocess.run(
            ["docker", "exec", name, "supervisorctl", "-c", "/etc/envbuild/supervisord.conf", "status"],
            capture_output=True,
            text=True,
        ).stdout
        assert "evil" not in programs and "daemon_0" in programs, programs
        gitconfig = ["docker", "exec", name, "git", "config", "-f", "/home/envd/.gitconfig"]
        keys = subprocess.run([*gitconfig, "--list", "--name-only"], capture_output=True, text=True)
        assert keys.stdout.split() == ["user.name", "user.email", "core.editor"], keys
        for key, value in (
            ("user.name", 'Ada "the" Lovelace ; #1'),
            ("user.email", "e #1@example.com"),
            ("core.editor", "vim -u \\x"),
        ):
            got = subprocess.run([*gitconfig, "--get", key], capture_output=True, text=True)
            assert got.stdout == value + "\n", (key, got)

        (proj / "build.envd").write_text(
            "def build():\n"
            f'    base(image="{BASE_IMAGE}", dev=True)\n'
            '    runtime.environ(env={"EVIL": "x\\nPasswordAuthentication yes"})\n'
        )
        bad = envbuild(["up", "-d", "-p", str(proj), "--ca-cert", CA_BUNDLE, "--timeout", "60"], env, timeout=600)
        assert bad.returncode == 2, bad.stderr[-3000:]
        assert "build.envd:3:5:" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    finally:
        envbuild(["destroy", "--name", name, "--image"], env, timeout=120)


def _apt_repo(root: Path, name: str) -> None:
    """A flat apt repository (``deb [trusted=yes] URL ./``) with one tiny package, ``name`` (new for
    each run: apt's download cache is a cache mount the engine keeps)."""
    pkg = root / "build"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/envbuild-authtest").mkdir(parents=True)
    (pkg / "usr/share/envbuild-authtest/ok").write_text("fetched with a login\n")
    (pkg / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: envbuild tests <t@example.com>\n"
        "Description: a package behind a login\n"
    )
    repo = root / "repo"
    repo.mkdir()
    deb = repo / f"{name}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True, capture_output=True)
    packages = subprocess.run(["dpkg-scanpackages", "-m", "."], cwd=repo, check=True, capture_output=True).stdout
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        "Origin: envbuild-tests\nSuite: ./\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )


@pytest.mark.engine
def test_apt_source_login_reaches_apt_but_not_the_image(env: dict[str, str], tmp_path: Path) -> None:
    """A repository behind HTTP basic auth (on the loopback, so the build runs with --network host):
    the build installs from it, and neither the login nor the password is in any layer, the config,
    ``docker history`` or the sources.list the image keeps; every request apt made carried the login."""
    if shutil.which("dpkg-deb") is None or shutil.which("dpkg-scanpackages") is None:
        pytest.skip("dpkg-deb and dpkg-scanpackages (dpkg-dev) are needed to make a test apt repository")
    password = f"pw{uuid.uuid4().hex}"
    login = f"user{uuid.uuid4().hex[:8]}"
    package = f"envbuild-authtest-{uuid.uuid4().hex[:8]}"
    _apt_repo(tmp_path / "apt", package)
    expected = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
    denied: list[str] = []
    served: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                denied.append(self.path)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="envbuild-test"')
                self.end_headers()
                return
            served.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path / "apt")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{login}:{password}@127.0.0.1:{server.server_address[1]}/repo"
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "build.envd").write_text(
        "def build():\n"
        f'    base(image="{BASE_IMAGE}", dev=False)\n'
        f'    config.apt_source(source="deb [trusted=yes] {url} ./\\n")\n'
        f'    install.apt_packages(name=["{package}"])\n'
    )
    tag = f"envbuild-sec-{uuid.uuid4().hex[:8]}:latest"
    try:
        r = envbuild(["build", "-p", str(proj), "-t", tag, "--network", "host", "--progress", "plain"], env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert any(p.endswith(".deb") for p in served), f"apt fetched no package: {served}, denied {denied}"
        assert not any(p.endswith(".deb") for p in denied), f"apt asked for a package without the login: {denied}"
        script = "cat /usr/share/envbuild-authtest/ok /etc/apt/sources.list; ls -A /etc/apt/auth.conf.d"
        sources = subprocess.run(["docker", "run", "--rm", tag, "sh", "-c", script], capture_output=True, text=True)
        assert sources.stdout.startswith("fetched with a login\n"), sources
        assert "envbuild.conf" not in sources.stdout, "the apt login's mount point stayed in the image"
        assert f"deb [trusted=yes] http://127.0.0.1:{server.server_address[1]}/repo ./" in sources.stdout
        history = subprocess.run(["docker", "history", "--no-trunc", tag], capture_output=True, text=True, check=True)
        assert password not in history.stdout and login not in history.stdout
        found = leaks(tag, [password.encode(), login.encode()])
        assert found == [], "the apt_source login landed in the image:\n" + "\n".join(found[:20])
    finally:
        server.shutdown()
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
