"""`run` steps: args, inherited settings, mounts and their validation."""

from __future__ import annotations

import pytest

import llb
from llb._proto import ops_pb2

AMD64 = llb.Platform("linux", "amd64")


def exec_op(state: llb.State) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
    """The op and metadata of the vertex `state` points at."""
    definition = state.marshal(platform=AMD64)
    terminal = definition.op(definition.terminal)
    digest = terminal.inputs[0].digest
    return definition.op(digest), definition.op_metadata(digest)


BASE = llb.image("debian")


def test_string_args_are_shell_split_and_shell_true_wraps() -> None:
    op, _ = exec_op(BASE.run("sh -c 'echo hi > /hello'"))
    assert list(op.exec.meta.args) == ["sh", "-c", "echo hi > /hello"]
    op, _ = exec_op(BASE.run("echo $HOME && ls", shell=True))
    assert list(op.exec.meta.args) == ["/bin/sh", "-c", "echo $HOME && ls"]
    op, _ = exec_op(BASE.run(["printf", "%s", "a b"]))
    assert list(op.exec.meta.args) == ["printf", "%s", "a b"]
    op, _ = exec_op(BASE.run(["echo", "a b"], shell=True))
    assert list(op.exec.meta.args) == ["/bin/sh", "-c", "echo 'a b'"]


@pytest.mark.parametrize("args", ["", "   ", [], [""], ["a", 1], "echo 'unterminated", ["a\x00b"], 42])
def test_bad_args_are_rejected(args: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        BASE.run(args)  # type: ignore[arg-type]


def test_run_inherits_env_cwd_user_and_run_overrides_do_not_leak() -> None:
    state = BASE.with_env("A", "1").with_cwd("/work").with_user("app")
    ran = state.run("make", env={"B": "2", "PATH": "/bin"}, cwd="sub")
    op, _ = exec_op(ran)
    assert list(op.exec.meta.env) == ["PATH=/bin", "A=1", "B=2"]
    assert op.exec.meta.cwd == "/work/sub"
    assert op.exec.meta.user == "app"
    assert ran.env("B") is None and ran.env("PATH") == llb.DEFAULT_PATH
    op, _ = exec_op(state.run("id", user="root", cwd="/"))
    assert (op.exec.meta.user, op.exec.meta.cwd) == ("root", "/")


def test_root_mount_is_output_zero_from_input_zero() -> None:
    op, md = exec_op(BASE.run("true"))
    assert len(op.inputs) == 1
    (root,) = op.exec.mounts
    assert (root.input, root.dest, root.output, root.mountType) == (0, "/", 0, ops_pb2.BIND)
    assert md.caps["exec.meta.base"]


def test_run_on_scratch_has_scratch_root() -> None:
    op, _ = exec_op(llb.scratch().run("/busybox"))
    assert len(op.inputs) == 0
    assert op.exec.mounts[0].input == -1


@pytest.mark.parametrize(
    ("network", "mode", "has_cap"),
    [
        (None, ops_pb2.UNSET, False),
        ("sandbox", ops_pb2.UNSET, False),
        ("host", ops_pb2.HOST, True),
        (llb.Network.NONE, ops_pb2.NONE, True),
    ],
)
def test_network_modes(network: object, mode: int, has_cap: bool) -> None:
    op, md = exec_op(BASE.run("true", network=network))  # type: ignore[arg-type]
    assert op.exec.network == mode
    assert ("exec.meta.network" in md.caps) is has_cap


def test_state_network_is_the_default() -> None:
    op, _ = exec_op(BASE.with_network("none").run("true"))
    assert op.exec.network == ops_pb2.NONE


def test_mount_kinds_marshal_like_buildkit_expects() -> None:
    ctx = llb.local("ctx")
    ran = BASE.run(
        "build",
        mounts=[
            llb.tmpfs("/tmp"),
            llb.cache("/root/.cache/pip", "pip", sharing="locked"),
            llb.secret("/run/secrets/token", "token", uid=1000, mode=0o440, optional=True),
            llb.ssh(),
            llb.bind("/src", ctx, source_path="sub"),
        ],
    )
    op, md = exec_op(ran)
    mounts = {m.dest: m for m in op.exec.mounts}
    assert [m.dest for m in op.exec.mounts] == [
        "/",
        "/root/.cache/pip",
        "/run/buildkit/ssh_agent.0",
        "/run/secrets/token",
        "/src",
        "/tmp",
    ]
    cache_m = mounts["/root/.cache/pip"]
    assert (cache_m.mountType, cache_m.input, cache_m.output, cache_m.cacheOpt.ID, cache_m.cacheOpt.sharing) == (
        ops_pb2.CACHE,
        -1,
        -1,
        "pip",
        ops_pb2.LOCKED,
    )
    sec = mounts["/run/secrets/token"]
    assert (sec.mountType, sec.input, sec.output) == (ops_pb2.SECRET, -1, -1)
    assert (sec.secretOpt.ID, sec.secretOpt.uid, sec.secretOpt.gid, sec.secretOpt.mode, sec.secretOpt.optional) == (
        "token",
        1000,
        0,
        0o440,
        True,
    )
    ssh_m = mounts["/run/buildkit/ssh_agent.0"]
    assert (ssh_m.mountType, ssh_m.SSHOpt.ID, ssh_m.SSHOpt.mode) == (ops_pb2.SSH, "default", 0o600)
    tmp = mounts["/tmp"]
    assert (tmp.mountType, tmp.input, tmp.output) == (ops_pb2.TMPFS, -1, -1)
    src = mounts["/src"]
    assert (src.mountType, src.input, src.output, src.readonly, src.selector) == (ops_pb2.BIND, 1, -1, True, "/sub")
    assert op.inputs[1].digest != op.inputs[0].digest
    assert {c for c, v in md.caps.items() if v} >= {
        "exec.mount.tmpfs",
        "exec.mount.cache",
        "exec.mount.cache.sharing",
        "exec.mount.secret",
        "exec.mount.ssh",
        "exec.mount.bind",
        "exec.mount.selector",
    }


def test_mount_order_does_not_change_the_digest() -> None:
    a = BASE.run("x", mounts=[llb.tmpfs("/b"), llb.tmpfs("/a")]).marshal(platform=AMD64)
    b = BASE.run("x", mounts=[llb.tmpfs("/a"), llb.tmpfs("/b")]).marshal(platform=AMD64)
    assert a.to_bytes() == b.to_bytes()


def test_same_input_state_is_one_input() -> None:
    ctx = llb.local("ctx")
    op, _ = exec_op(BASE.run("x", mounts=[llb.bind("/a", ctx), llb.bind("/b", ctx), llb.bind("/c", BASE)]))
    assert len(op.inputs) == 2
    assert [m.input for m in op.exec.mounts] == [0, 1, 1, 0]


def test_writable_binds_get_outputs_and_mount_state() -> None:
    ran = BASE.run("gen", mounts=[llb.bind("/out", llb.scratch(), readonly=False), llb.bind("/ro", BASE)])
    op, _ = exec_op(ran)
    out = next(m for m in op.exec.mounts if m.dest == "/out")
    assert (out.input, out.output, out.readonly) == (-1, 1, False)
    produced = ran.mount_state("/out/")
    assert produced.output is not None and produced.output.index == 1
    definition = produced.marshal(platform=AMD64)
    assert definition.op(definition.terminal).inputs[0].index == 1
    assert ran.mount_state("/") == ran.root()
    with pytest.raises(llb.InvalidGraph, match="readonly=False"):
        ran.mount_state("/ro")


def test_root_keeps_state_settings() -> None:
    state = BASE.with_env("A", "1").with_cwd("/w")
    root = state.run("true").root()
    assert type(root) is llb.State
    assert root.env("A") == "1" and root.cwd == "/w"
    assert root.run("true").root().output is not None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: llb.tmpfs("relative/dir"), "absolute"),
        (lambda: llb.cache("/c", ""), "id"),
        (lambda: llb.cache("/c", "x", sharing="exclusive"), "sharing"),  # type: ignore[arg-type]
        (lambda: llb.secret("/s", "x", mode=0o10000), "mode"),
        (lambda: llb.secret("/s", "x", uid=-1), "uid"),
        (lambda: llb.secret("/s", ""), "id"),
        (lambda: llb.bind("/b", "not a state"), "State"),  # type: ignore[arg-type]
        (lambda: BASE.run("x", mounts=[llb.tmpfs("/a"), llb.cache("/a/", "c")]), "two mounts"),
        (lambda: BASE.run("x", mounts=[llb.tmpfs("/")]), "over '/'"),
        (lambda: BASE.run("x", mounts=llb.tmpfs("/a")), "sequence"),  # type: ignore[arg-type]
        (lambda: BASE.run("x", mounts=["/a"]), "llb mounts"),  # type: ignore[list-item]
        (lambda: BASE.run("x", network="bridge"), "network"),
        (lambda: BASE.run("x", cwd=""), "working directory"),
    ],
)
def test_validation_errors(make: object, message: str) -> None:
    with pytest.raises(llb.InvalidGraph, match=message):
        make()  # type: ignore[operator]


def test_name_and_ignore_cache_go_to_metadata() -> None:
    _, md = exec_op(BASE.run("make", name="compile", ignore_cache=True))
    assert md.description["llb.customname"] == "compile"
    assert md.ignore_cache
    assert md.caps["meta.ignorecache"] and md.caps["meta.description"]


def test_proxy_env_sets_meta_field_and_cap() -> None:
    op, md = exec_op(BASE.run("true", proxy_env={"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost"}))
    pe = op.exec.meta.proxy_env
    assert (pe.https_proxy, pe.no_proxy, pe.http_proxy, pe.all_proxy) == ("http://proxy:3128", "localhost", "", "")
    assert md.caps["exec.meta.proxyenv"]
    assert not any(e.lower().startswith(("https_proxy=", "no_proxy=")) for e in op.exec.meta.env)
    op, md = exec_op(BASE.run("true", proxy_env=llb.ProxyEnv(all_proxy="socks5://p:1080", ftp_proxy="http://f")))
    assert (op.exec.meta.proxy_env.all_proxy, op.exec.meta.proxy_env.ftp_proxy) == ("socks5://p:1080", "http://f")


@pytest.mark.parametrize("empty", [None, {}, llb.ProxyEnv(), {"HTTP_PROXY": ""}])
def test_empty_proxy_env_leaves_the_op_unchanged(empty: object) -> None:
    plain = BASE.run("true").marshal(platform=AMD64)
    op, md = exec_op(BASE.run("true", proxy_env=empty))  # type: ignore[arg-type]
    assert not op.exec.meta.HasField("proxy_env")
    assert "exec.meta.proxyenv" not in md.caps
    assert BASE.run("true", proxy_env=empty).marshal(platform=AMD64).to_bytes() == plain.to_bytes()  # type: ignore[arg-type]


def test_proxy_values_only_change_the_proxy_env_field() -> None:
    """BuildKit drops Meta.proxy_env from the cache key; everything else in the op must be equal."""
    ops = []
    for proxy in ({"HTTP_PROXY": "http://a:1"}, {"HTTP_PROXY": "http://b:2", "NO_PROXY": "x"}):
        op, _ = exec_op(BASE.run("apt-get update", env={"A": "1"}, proxy_env=proxy))
        op.exec.meta.ClearField("proxy_env")
        ops.append(op.SerializeToString(deterministic=True))
    plain, _ = exec_op(BASE.run("apt-get update", env={"A": "1"}))
    assert ops[0] == ops[1] == plain.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"SOCKS_PROXY": "x"},
        {"http_proxy": "a", "HTTP_PROXY": "b"},
        {"HTTP_PROXY": "a\nb"},
        ["HTTP_PROXY"],
        {"HTTP_PROXY": 1},
    ],
)
def test_bad_proxy_env_is_rejected(bad: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        BASE.run("true", proxy_env=bad)  # type: ignore[arg-type]
