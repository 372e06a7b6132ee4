"""Contexts: validation, storage, precedence and the `envbuild context` commands."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from envbuild.contexts import (
    DEFAULT_CONTEXT,
    ContextStore,
    KubernetesSettings,
    TLSPaths,
    contexts_path,
    make_context,
    normalize_address,
    resolve_builder,
)
from envbuild.errors import EngineUnreachable, UsageError


@pytest.fixture()
def store(tmp_path: Path) -> ContextStore:
    return ContextStore(tmp_path / "cfg" / "envbuild" / "contexts.json")


@pytest.mark.parametrize(
    ("builder", "typed", "expected"),
    [
        ("docker", None, "docker://"),
        ("docker", "unix:///var/run/docker.sock", "docker:///var/run/docker.sock"),
        ("docker", "/run/user/1000/docker.sock", "docker:///run/user/1000/docker.sock"),
        ("docker", "tcp://10.0.0.5:2375", "docker://tcp://10.0.0.5:2375"),
        ("docker", "ssh://me@gpu-box", "docker://ssh://me@gpu-box"),
        ("docker", "ssh://me@10.0.0.7:2222/", "docker://ssh://me@10.0.0.7:2222"),
        ("docker", "ssh://[fd00::7]:22/run/user/1000/docker.sock", "docker://ssh://[fd00::7]:22/run/user/1000/docker.sock"),
        ("unix", "/run/buildkit/buildkitd.sock", "unix:///run/buildkit/buildkitd.sock"),
        ("unix", "unix:///run/buildkit/buildkitd.sock", "unix:///run/buildkit/buildkitd.sock"),
        ("tcp", "buildkit.example.com:1234", "tcp://buildkit.example.com:1234"),
        ("tcp", "tcp://10.1.2.3:01234", "tcp://10.1.2.3:1234"),
        ("tcp", "[::1]:1234", "tcp://[::1]:1234"),
        ("docker-container", None, "docker-container://buildkitd"),
        ("docker-container", "my_bk", "docker-container://my_bk"),
        ("kube-pod", "buildkitd-0", "kube-pod://buildkitd-0"),
        ("kube-pod", "buildkitd-0?namespace=ci&context=prod", "kube-pod://buildkitd-0?context=prod&namespace=ci"),
    ],
)
def test_normalize_address(builder: str, typed: str | None, expected: str) -> None:
    assert normalize_address(builder, typed) == expected


@pytest.mark.parametrize(
    ("builder", "typed", "fragment"),
    [
        ("podman", None, "unknown builder 'podman'"),
        ("tcp", None, "needs --address HOST:PORT"),
        ("tcp", "host", "expected HOST:PORT"),
        ("tcp", "host:0", "expected HOST:PORT"),
        ("tcp", "host:70000", "expected HOST:PORT"),
        ("tcp", "bad host:1", "whitespace"),
        ("tcp", "unix:///x.sock", "is a unix address but --builder is tcp"),
        ("unix", "relative.sock", "absolute path"),
        ("unix", None, "needs --address"),
        ("unix", "/" + "x" * 120, "107 bytes"),
        ("docker", "ftp://host", "invalid Docker engine address"),
        ("docker", "ssh://-oProxyCommand=x", "is not a host name"),
        ("docker", "ssh://-l@host", "is not a user name"),
        ("docker", "ssh://me:secret@host", "password"),
        ("docker", "ssh://host?x=1", "query parameters"),
        ("docker", "ssh://host:99999", "port"),
        ("docker", "ssh://host/run/docker sock", "whitespace"),
        ("docker-container", "-bad", "invalid container name"),
        ("kube-pod", "Bad_Pod", "invalid pod name"),
        ("kube-pod", "bk?zone=a", "unknown kube-pod address parameter"),
        ("kube-pod", "bk?namespace=", "needs exactly one"),
        ("kube-pod", "bk?namespace=Bad", "invalid namespace"),
    ],
)
def test_normalize_address_rejects(builder: str, typed: str | None, fragment: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        normalize_address(builder, typed)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 64, "a/b", "ä"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid context name"):
        make_context(name)


def test_default_is_reserved() -> None:
    with pytest.raises(UsageError, match="reserved"):
        make_context("default")


def test_tls_only_for_tcp_and_files_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(UsageError, match="tcp only"):
        make_context("a", builder="unix", address="/x.sock", tls=TLSPaths(ca=str(ca)))
    with pytest.raises(UsageError, match=r"--tls-cert .*no such file"):
        make_context("a", builder="tcp", address="h:1", tls=TLSPaths(ca=str(ca), cert="/nope", key=str(ca)))
    with pytest.raises(UsageError, match="go together"):
        TLSPaths(cert=str(ca))
    ctx = make_context("a", builder="tcp", address="h:1", tls=TLSPaths(ca=str(ca)))
    assert ctx.tls == TLSPaths(ca=str(ca.resolve()))
    cfg = ctx.tls_config()
    assert str(cfg.ca_cert) == str(ca.resolve()) and cfg.cert is None


def test_kubernetes_settings_need_the_kubernetes_runner() -> None:
    with pytest.raises(UsageError, match="need --runner kubernetes"):
        make_context("a", kubernetes=KubernetesSettings(namespace="x"))
    with pytest.raises(UsageError, match="namespace"):
        KubernetesSettings(namespace="Not_OK")
    with pytest.raises(UsageError, match="no scheme"):
        KubernetesSettings(registry="https://reg.example.com")
    ctx = make_context("k", runner="kubernetes")
    assert ctx.kubernetes == KubernetesSettings()
    assert KubernetesSettings(registry="reg:5000/team/").registry == "reg:5000/team"


def test_store_round_trip_and_permissions(store: ContextStore, tmp_path: Path) -> None:
    assert [c.name for c in store.list()] == [DEFAULT_CONTEXT]
    assert store.current_name() == DEFAULT_CONTEXT
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    a = make_context("ci", builder="tcp", address="bk:1234", tls=TLSPaths(ca=str(ca), server_name="bk"))
    b = make_context(
        "gpu",
        builder="kube-pod",
        address="buildkitd-0?namespace=build",
        runner="kubernetes",
        kubernetes=KubernetesSettings(namespace="ml", kube_context="prod", registry="reg:5000/team"),
        description="cluster GPUs",
    )
    store.create(a, use=True)
    store.create(b)
    assert store.current_name() == "ci"
    assert store.get("ci") == a and store.get("gpu") == b
    assert [c.name for c in store.list()] == ["default", "ci", "gpu"]
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    data = json.loads(store.path.read_text())
    assert data["version"] == 1 and data["current"] == "ci"
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".contexts.")]
    with pytest.raises(UsageError, match="already exists"):
        store.create(a)
    store.create(a, overwrite=True)


def test_remove_rules(store: ContextStore) -> None:
    store.create(make_context("one", builder="docker-container"), use=True)
    store.create(make_context("two", builder="docker-container", address="bk2"))
    with pytest.raises(UsageError, match="cannot be removed"):
        store.remove("default")
    with pytest.raises(UsageError, match="in use"):
        store.remove("one")
    with pytest.raises(UsageError, match="no context named 'three'"):
        store.remove("three")
    store.remove("two")
    store.remove("one", force=True)
    assert store.current_name() == DEFAULT_CONTEXT
    assert [c.name for c in store.list()] == [DEFAULT_CONTEXT]


def test_damaged_file_is_a_usage_error(store: ContextStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(UsageError, match="damaged"):
        store.list()
    store.path.write_text(json.dumps({"contexts": [{"name": "x", "builder": "tcp", "address": "nope"}]}))
    with pytest.raises(UsageError, match="damaged"):
        store.list()


def test_a_binary_contexts_file_is_a_usage_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "envbuild" / "contexts.json"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(UsageError, match="damaged"):
        ContextStore(path).list()
    code, _, err = _cli(["context", "ls"], capsys)
    assert code == 2 and "contexts.json is damaged" in err and "Traceback" not in err, err


def test_precedence(store: ContextStore) -> None:
    store.create(make_context("ci", builder="tcp", address="bk:1234"), use=True)
    r = resolve_builder(None, env={}, store=store)
    assert (r.address, r.kind, r.source, r.context.name) == ("tcp://bk:1234", "tcp", "context", "ci")
    r = resolve_builder(None, env={"BUILDKIT_HOST": "unix:///run/bk.sock"}, store=store)
    assert (r.address, r.kind, r.source) == ("unix:///run/bk.sock", "unix", "env")
    r = resolve_builder("docker-container://bk", env={"BUILDKIT_HOST": "unix:///run/bk.sock"}, store=store)
    assert (r.address, r.kind, r.source) == ("docker-container://bk", "docker-container", "flag")
    r = resolve_builder("default", env={"BUILDKIT_HOST": "unix:///run/bk.sock"}, store=store)
    assert (r.address, r.kind, r.context.name) == ("docker://", "docker", "default")
    assert r.is_docker_engine
    with pytest.raises(UsageError, match=r"\$BUILDKIT_HOST: .*unknown scheme"):
        resolve_builder(None, env={"BUILDKIT_HOST": "ftp://x"}, store=store)
    with pytest.raises(UsageError, match="--builder 'nope' is neither"):
        resolve_builder("nope", env={}, store=store)
    with pytest.raises(UsageError, match="--builder: invalid tcp builder address"):
        resolve_builder("tcp://noport", env={}, store=store)


def test_contexts_path_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert contexts_path() == tmp_path / "envbuild" / "contexts.json"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert contexts_path() == tmp_path / "home" / ".config" / "envbuild" / "contexts.json"


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from envbuild.cli.app import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))  # no docker contexts
    code, out, _ = _cli(["context", "create", "ci", "--builder", "tcp", "--address", "bk:1234", "--use"], capsys)
    assert code == 0 and "tcp://bk:1234" in out
    code, out, _ = _cli(
        ["context", "create", "k8s", "--builder", "kube-pod", "--address", "bk-0", "--runner", "kubernetes",
         "--namespace", "ml", "--registry", "reg:5000/team"],
        capsys,
    )
    assert code == 0
    code, out, _ = _cli(["context", "ls", "--format", "json"], capsys)
    listed = json.loads(out)
    assert [(c["name"], c["current"]) for c in listed] == [("default", False), ("ci", True), ("k8s", False)]
    assert listed[2]["kubernetes"] == {"namespace": "ml", "registry": "reg:5000/team"}
    code, out, _ = _cli(["context", "ls"], capsys)
    assert "ci *" in out and "kubernetes (ml)" in out
    code, _, err = _cli(["context", "rm", "ci"], capsys)
    assert code == 2 and "in use" in err
    code, out, _ = _cli(["context", "use", "k8s"], capsys)
    assert code == 0
    code, out, _ = _cli(["context", "inspect"], capsys)
    assert json.loads(out)["name"] == "k8s"
    code, _, _ = _cli(["context", "rm", "ci"], capsys)
    assert code == 0
    code, _, err = _cli(["context", "create", "x", "--builder", "tcp", "--address", "nope"], capsys)
    assert code == 2 and "HOST:PORT" in err
    code, _, err = _cli(["context", "ls", "--format", "yaml"], capsys)
    assert code == 2


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from envbuild.contexts import BUILDER_KINDS, builder_kind  # noqa: E402


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(BUILDER_KINDS),
    st.none() | st.text(st.sampled_from(list("abc-_.:/?=&019[]tcpunix ")), max_size=40) | st.text(max_size=20),
)
def test_fuzz_normalize_address(kind: str, typed: str | None) -> None:
    """Only UsageError or a full address of that kind, which normalises to itself."""
    try:
        full = normalize_address(kind, typed)
    except UsageError as exc:
        assert str(exc)
        return
    assert builder_kind(full) == kind
    rest = full[len(kind) + 3:]
    assert normalize_address(kind, rest) == full
    r = resolve_builder(full, env={})
    assert (r.address, r.kind) == (full, kind)


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:1", "unix:///nonexistent/buildkitd.sock", "docker-container://envbuild-no-such-builder",
     "docker:///nonexistent/docker.sock"],
)
def test_wrong_address_fails_fast_naming_it(address: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineUnreachable) as info:
        resolve_builder(address, env={}).connect()
    assert time.monotonic() - t0 < 5
    assert address in str(info.value)


def test_doctor_all_contexts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    _cli(["context", "create", "dead", "--builder", "tcp", "--address", "127.0.0.1:1", "--use"], capsys)
    t0 = time.monotonic()
    code, out, _ = _cli(["doctor", "--all", "--format", "json"], capsys)
    assert time.monotonic() - t0 < 15
    reports = json.loads(out)
    assert [r["context"] for r in reports] == ["default", "dead"]
    dead = reports[1]
    assert code == 3 and not dead["reachable"] and "tcp://127.0.0.1:1" in dead["error"]
    assert dead["exporters"] == ["docker", "image", "local", "oci", "tar"] and dead["push_from_builder"]
    code, out, _ = _cli(["doctor"], capsys)
    assert code == 3 and "reachable:     NO" in out and "cache export:  inline, registry" in out


def test_a_docker_context_on_another_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--docker ssh://...` stores the engine beside the other contexts; `ls` lists the docker CLI's too."""
    import hashlib

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    docker_config = tmp_path / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    meta = docker_config / "contexts" / "meta" / hashlib.sha256(b"lab").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "lab", "Metadata": {"Description": "lab box"}, "Endpoints": {"docker": {"Host": "ssh://me@lab"}}}))
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "lab"}))
    code, out, err = _cli(["context", "create", "gpu", "--docker", "ssh://me@gpu-box:2222", "--use"], capsys)
    assert code == 0, err
    assert "docker builder at docker://ssh://me@gpu-box:2222" in out
    r = resolve_builder(None, env={})
    assert (r.kind, r.docker_host) == ("docker", "ssh://me@gpu-box:2222")
    code, out, _ = _cli(["context", "ls"], capsys)
    assert "gpu *" in out and "Docker contexts" in out and "lab *" in out and "ssh://me@lab" in out
    code, out, _ = _cli(["context", "ls", "--format", "json"], capsys)
    listed = {(c["source"], c["name"]): c for c in json.loads(out)}
    assert listed[("docker", "lab")] == {"name": "lab", "source": "docker", "engine": "ssh://me@lab",
                                         "description": "lab box", "current": True}
    assert listed[("envbuild", "gpu")]["current"]
    code, _, err = _cli(["context", "create", "x", "--docker", "ssh://-oProxyCommand=evil"], capsys)
    assert code == 2 and "is not a host name" in err
    code, _, err = _cli(["context", "create", "x", "--builder", "tcp", "--docker", "ssh://box"], capsys)
    assert code == 2 and "--docker names the engine" in err
    from envbuild import engine_api

    assert engine_api.engine_host().url == "ssh://me@gpu-box:2222"
    _cli(["context", "use", "default"], capsys)
    host = engine_api.engine_host({"DOCKER_CONFIG": str(docker_config)})
    assert (host.url, host.source) == ("ssh://me@lab", "docker context 'lab'")
