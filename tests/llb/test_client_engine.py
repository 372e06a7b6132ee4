"""End-to-end tests of the llb client against the real Docker engine (embedded BuildKit)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import llb

BASE_IMAGE = "local/debian:bookworm"

pytestmark = pytest.mark.engine


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def _read_file(client: llb.Client, state: llb.State, path: str, tmp_path: Path) -> str:
    """Contents of `path` in `state`, exported to a local directory."""
    out = tmp_path / f"read-{uuid.uuid4().hex[:8]}"
    client.solve(llb.scratch().file(llb.copy(state, path, "/result")), export=llb.LocalExport(out))
    return (out / "result").read_text()


def _base() -> llb.State:
    return llb.image(BASE_IMAGE)


def test_issue_acceptance_snippet(engine: llb.Client) -> None:
    """The issue's snippet, verbatim apart from the client fixture's reuse of the default engine."""
    state = llb.image("local/debian:bookworm").run("sh -c 'echo hi > /hello'").root()
    with llb.connect() as client:
        client.solve(state, export=llb.DockerImage("envbuild-check/hello:latest"))
        again = client.solve(state, export=llb.DockerImage("envbuild-check/hello:latest"))
    run = _docker("run", "--rm", "envbuild-check/hello:latest", "cat", "/hello")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hi\n"
    execs = [v for v in again.vertices if v.name.startswith("sh -c")]
    assert execs, [v.name for v in again.vertices]
    assert all(v.cached for v in execs)


def test_second_solve_reports_every_vertex_cached(engine: llb.Client, image_tag: str) -> None:
    marker = uuid.uuid4().hex
    state = _base().run(["sh", "-c", f"echo {marker} > /m"]).root().file(llb.mkdir("/data").mkfile("/data/x", "x"))
    first = engine.solve(state, export=llb.DockerImage(image_tag))
    assert first.image_id and first.image_id.startswith("sha256:")
    assert not all(v.cached for v in first.vertices)
    again = engine.solve(state, export=llb.DockerImage(image_tag))
    ops = [v for v in again.vertices if not v.name.startswith(("exporting", "docker-image://"))]
    assert ops and all(v.cached for v in ops), [(v.name, v.cached) for v in again.vertices]
    assert again.image_id == first.image_id
    assert all(v.completed is not None and v.error == "" for v in again.vertices)


def _make_context(root: Path) -> dict[str, bytes]:
    (root / "sub" / "deep").mkdir(parents=True)
    big = os.urandom(1_300_000)
    files = {
        "a.txt": b"hello\n",
        "big.bin": big,
        "run.sh": b"#!/bin/sh\necho run\n",
        "sub/deep/n.txt": b"nested",
        "sub/skip.log": b"log",
        "sub/keep.log": b"keep",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.txt")
    return files


def test_local_directory_arrives_intact(engine: llb.Client, tmp_path: Path, image_tag: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    files = _make_context(ctx)
    digest = hashlib.sha256(files["big.bin"]).hexdigest()
    src = llb.local("ctx")
    state = (
        _base()
        .file(llb.copy(src, "/", "/ctx"))
        .run(
            [
                "sh",
                "-c",
                "cd /ctx && sha256sum big.bin > /check && test -x run.sh && echo exec >> /check "
                "&& readlink link >> /check && ./run.sh >> /check",
            ]
        )
        .root()
    )
    engine.solve(state, export=llb.DockerImage(image_tag), local_dirs={"ctx": ctx})
    run = _docker("run", "--rm", image_tag, "cat", "/check")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:4] == [f"{digest}  big.bin", "exec", "a.txt", "run"]

    out = tmp_path / "out"
    engine.solve(llb.scratch().file(llb.copy(src, "/", "/")), export=llb.LocalExport(out), local_dirs={"ctx": ctx})
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel
    assert os.readlink(out / "link") == "a.txt"
    assert os.access(out / "run.sh", os.X_OK)
    assert not os.access(out / "a.txt", os.X_OK)


def test_two_projects_building_at_once_each_get_their_own_files(tmp_path: Path) -> None:
    """Two clients build graphs whose local sources are the same op (name and patterns) at the same
    time on one engine: each step reads its own project's files. BuildKit shares a vertex among the
    builds in flight, and an unbound local source came from whichever session answered first.

    A's step waits (up to two minutes) until B's step has run, so A's build is still in flight when
    B's local source is asked for; B starts once A's local source is done."""
    run_id = uuid.uuid4().hex[:12]
    sync = llb.cache("/sync", f"llb-test-sync-{run_id}")
    wait_for_b = "for i in $(seq 600); do [ -e /sync/b ] && break; sleep 0.2; done"
    scripts = {"A": f"{wait_for_b}; cat /ctx/f.txt > /result", "B": "touch /sync/b; cat /ctx/f.txt > /result"}
    a_has_its_files = threading.Event()
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def build(name: str) -> None:
        project = tmp_path / name
        project.mkdir()
        (project / "f.txt").write_text(f"{name} {run_id}\n")
        ctx = llb.local("context", include=["f.txt"])
        state = _base().run(["sh", "-c", scripts[name]], mounts=[llb.bind("/ctx", ctx), sync]).root()

        def on_event(event: object) -> None:
            if isinstance(event, llb.VertexEvent) and event.name.startswith("local://") and event.completed:
                a_has_its_files.set()

        out = tmp_path / f"out-{name}"
        try:
            with llb.connect(timeout=5) as client:
                client.solve(
                    llb.scratch().file(llb.copy(state, "/result", "/result")),
                    export=llb.LocalExport(out),
                    local_dirs={"context": project},
                    on_event=on_event if name == "A" else None,
                )
            results[name] = (out / "result").read_text().split()[0]
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            a_has_its_files.set()

    a = threading.Thread(target=build, args=("A",))
    a.start()
    a_has_its_files.wait(timeout=600)
    build("B")
    a.join(timeout=900)
    assert not errors, errors
    assert results == {"A": "A", "B": "B"}


def test_local_changes_are_picked_up_and_patterns_apply(engine: llb.Client, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _make_context(ctx)
    src = llb.local("ctx", exclude=["**/*.log", "!sub/keep.log"])
    state = llb.scratch().file(llb.copy(src, "/", "/"))
    out1 = tmp_path / "o1"
    engine.solve(state, export=llb.LocalExport(out1), local_dirs={"ctx": ctx})
    assert (out1 / "sub" / "keep.log").exists()
    assert not (out1 / "sub" / "skip.log").exists()
    (ctx / "a.txt").write_text("changed\n")
    out2 = tmp_path / "o2"
    engine.solve(state, export=llb.LocalExport(out2), local_dirs={"ctx": ctx})
    assert (out2 / "a.txt").read_text() == "changed\n"

    inc = llb.scratch().file(llb.copy(llb.local("ctx", include=["sub/deep"]), "/", "/"))
    out3 = tmp_path / "o3"
    engine.solve(inc, export=llb.LocalExport(out3), local_dirs={"ctx": ctx})
    assert sorted(str(p.relative_to(out3)) for p in out3.rglob("*")) == ["sub", "sub/deep", "sub/deep/n.txt"]


def test_cache_mount_persists_across_solves(engine: llb.Client, tmp_path: Path) -> None:
    cache_id = f"llb-test-{uuid.uuid4().hex[:8]}"
    counts = []
    for i in range(2):
        st = (
            _base()
            .run(
                ["sh", "-c", "echo x >> /cache/count && wc -l < /cache/count > /out"],
                env={"RUN": str(i)},
                mounts=[llb.cache("/cache", cache_id)],
            )
            .root()
        )
        counts.append(_read_file(engine, st, "/out", tmp_path).strip())
    assert counts == ["1", "2"]


def _tar_contains(data: bytes, needle: bytes) -> bool:
    """Search a (docker save) tar and every tar nested in it for `needle`."""
    if needle in data:
        return True
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for m in tf.getmembers():
                if m.isfile():
                    f = tf.extractfile(m)
                    if f is not None and _tar_contains(f.read(), needle):
                        return True
    except tarfile.TarError:
        pass
    return False


def test_secret_is_readable_in_step_and_absent_from_image(engine: llb.Client, image_tag: str, tmp_path: Path) -> None:
    value = f"s3cr3t-{uuid.uuid4().hex}".encode()
    state = (
        _base()
        .run(
            ["sh", "-c", f"sha256sum < /run/secrets/tok > /secret-hash # {uuid.uuid4().hex}"],
            mounts=[llb.secret("/run/secrets/tok", "tok")],
        )
        .root()
    )
    engine.solve(state, export=llb.DockerImage(image_tag), secrets={"tok": value})
    run = _docker("run", "--rm", image_tag, "sh", "-c", "cat /secret-hash; test ! -s /run/secrets/tok && echo empty")
    assert run.stdout == f"{hashlib.sha256(value).hexdigest()}  -\nempty\n"
    saved = tmp_path / "img.tar"
    assert _docker("save", "-o", str(saved), image_tag).returncode == 0
    assert not _tar_contains(saved.read_bytes(), value)


def test_missing_secret_fails_the_step(engine: llb.Client) -> None:
    state = _base().run(["true", uuid.uuid4().hex], mounts=[llb.secret("/s", "nope")]).root()
    with pytest.raises(llb.SolveError, match="nope"):
        engine.solve(state)


def test_failing_command_gives_exec_error(engine: llb.Client) -> None:
    marker = uuid.uuid4().hex[:8]
    # stdout and stderr are separate pipes: the pause keeps their order deterministic
    cmd = f"echo start-{marker}; for i in $(seq 1 30); do echo line$i; done; sleep 0.3; echo boom >&2; exit 7"
    state = _base().run(["sh", "-c", cmd], name=f"failing step {marker}").root()
    events: list[object] = []
    with pytest.raises(llb.ExecError) as info:
        engine.solve(state, on_event=events.append)
    err = info.value
    assert err.exit_code == 7
    assert err.vertex_name == f"failing step {marker}"
    assert "boom" in err.log_tail
    assert "line30" in err.log_tail and f"start-{marker}" not in err.log_tail
    assert len(err.log_tail) <= 20
    assert "exit code 7" in str(err)
    assert any(isinstance(e, llb.LogEvent) for e in events)
    assert any(isinstance(e, llb.VertexEvent) and e.error for e in events)


def test_local_and_tar_exports_land_on_disk(engine: llb.Client, tmp_path: Path) -> None:
    state = llb.scratch().file(
        llb.mkdir("/d", 0o750).mkfile("/d/f.txt", "content", 0o640).mkfile("/x.sh", "#!/bin/sh\n", 0o755)
    )
    out = tmp_path / "local"
    engine.solve(state, export=llb.LocalExport(out))
    assert (out / "d" / "f.txt").read_text() == "content"
    assert (out / "d" / "f.txt").stat().st_mode & 0o777 == 0o640
    assert (out / "d").stat().st_mode & 0o777 == 0o750
    assert (out / "x.sh").stat().st_mode & 0o777 == 0o755

    tar_path = tmp_path / "t" / "out.tar"
    engine.solve(state, export=llb.TarExport(tar_path))
    with tarfile.open(tar_path) as tf:
        names = set(tf.getnames())
        assert {"d", "d/f.txt", "x.sh"} <= names
        f = tf.extractfile("d/f.txt")
        assert f is not None and f.read() == b"content"


def test_image_config_applies(engine: llb.Client, image_tag: str) -> None:
    state = _base().run("sh -c 'echo hi > /hello'").root()
    cfg = llb.ImageConfig(
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FOO": "bar"},
        cmd=["cat", "/hello"],
        labels={"org.example.test": "yes"},
        user="1000:1000",
        working_dir="/work",
        exposed_ports=["8888", "53/udp"],
    )
    res = engine.solve(state, export=llb.DockerImage(image_tag), image_config=cfg)
    assert res.image_id
    inspect = json.loads(_docker("image", "inspect", image_tag).stdout)[0]
    c = inspect["Config"]
    assert c["Env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "FOO=bar"]
    assert c["Cmd"] == ["cat", "/hello"]
    assert c["Labels"] == {"org.example.test": "yes"}
    assert c["User"] == "1000:1000"
    assert c["WorkingDir"] == "/work"
    assert set(c["ExposedPorts"]) == {"8888/tcp", "53/udp"}
    base_layers = json.loads(_docker("image", "inspect", BASE_IMAGE).stdout)[0]["RootFS"]["Layers"]
    assert inspect["RootFS"]["Layers"][: len(base_layers)] == base_layers
    assert len(inspect["RootFS"]["Layers"]) == len(base_layers) + 1
    run = _docker("run", "--rm", image_tag)
    assert run.stdout == "hi\n", run.stderr


def test_image_config_none_fields_keep_base_values(engine: llb.Client, image_tag: str) -> None:
    state = _base().run("sh -c 'echo hi > /hello'").root()
    engine.solve(state, export=llb.DockerImage(image_tag), image_config=llb.ImageConfig(labels={"k": "v"}))
    c = json.loads(_docker("image", "inspect", image_tag).stdout)[0]["Config"]
    base = json.loads(_docker("image", "inspect", BASE_IMAGE).stdout)[0]["Config"]
    assert c["Labels"] == {"k": "v"}
    assert c["Env"] == base["Env"]
    assert c.get("Cmd") == base.get("Cmd")


def test_cancellation_returns_promptly(engine: llb.Client) -> None:
    marker = uuid.uuid4().hex
    state = _base().run(["sh", "-c", f"sleep 60; echo {marker}"]).root()
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(llb.Cancelled):
        engine.solve(state, cancel=cancel)
    assert time.monotonic() - t0 < 4.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", f"sleep 60; echo {marker}"], capture_output=True).returncode != 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the cancelled step is still running on the builder")
    # the connection stays usable after a cancellation
    assert engine.list_workers()


def test_progress_events_and_vertex_timing(engine: llb.Client) -> None:
    marker = uuid.uuid4().hex
    events: list[object] = []
    res = engine.solve(_base().run(["sh", "-c", f"echo {marker}"]).root(), on_event=events.append)
    logs = b"".join(e.data for e in events if isinstance(e, llb.LogEvent))
    assert marker.encode() in logs
    starts = [e for e in events if isinstance(e, llb.VertexEvent) and e.started]
    assert starts
    ex = next(v for v in res.vertices if marker in v.name)
    assert ex.duration is not None and ex.duration >= 0


def test_ssh_agent_is_forwarded(engine: llb.Client, tmp_path: Path) -> None:
    """A fake agent answers over the forwarded socket (perl is in Debian minbase)."""
    sock_path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock_path)
    server.listen(4)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            data = conn.recv(1024)
            conn.sendall(b"pong:" + data)

    threading.Thread(target=serve, daemon=True).start()
    script = (
        'use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => "/run/buildkit/ssh_agent.0") '
        'or die "connect: $!"; print $s "ping\\n"; my $l = <$s>; print $l;'
    )
    st = (
        _base()
        .run(
            ["sh", "-c", f"perl -e '{script}' > /out; echo {uuid.uuid4().hex} > /nonce"],
            mounts=[llb.ssh()],
        )
        .root()
    )
    try:
        out = tmp_path / "agent-out"
        engine.solve(llb.scratch().file(llb.copy(st, "/out", "/out")), export=llb.LocalExport(out), ssh_agent=sock_path)
        assert (out / "out").read_text() == "pong:ping\n"
    finally:
        server.close()


def test_resolve_image_config_from_engine_store(engine: llb.Client) -> None:
    digest, config = engine.resolve_image_config("docker.io/local/debian:bookworm")
    assert config["os"] == "linux"
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
    assert isinstance(digest, str)


def test_image_exporters_where_the_engine_has_them(engine: llb.Client, tmp_path: Path) -> None:
    """The engine's builder has BuildKit's image, oci and docker exporters when the engine keeps images
    in the containerd image store; a graph-driver engine's builder refuses them by name, and llb says
    where they are."""
    if not _containerd_store():
        with pytest.raises(llb.UnsupportedByBuilder, match=r"containerd image store.*buildkitd"):
            engine.solve(llb.scratch(), export=llb.OCIExport(tmp_path / "x.tar"))
        with pytest.raises(llb.UnsupportedByBuilder, match="'image'"):
            engine.solve(llb.scratch(), export=llb.ImageExport("x/y:z", push=True))
        return
    marker = uuid.uuid4().hex[:12]
    st = _base().run(["sh", "-c", f"echo {marker} > /m"]).root()
    config = llb.ImageConfig(cmd=["cat", "/m"])
    for export in (
        llb.OCIExport(tmp_path / "o.tar", name=f"llb-test/oci:{marker}"),
        llb.DockerTarExport(tmp_path / "d.tar", name=f"llb-test/dt:{marker}"),
    ):
        res = engine.solve(st, export=export, image_config=config)
        with tarfile.open(export.dest) as tf:
            (desc,) = json.load(tf.extractfile("index.json"))["manifests"]  # type: ignore[arg-type]
        assert desc["digest"] == res.image_id
    tag = f"llb-test/img:{marker}"
    try:
        engine.solve(st, export=llb.ImageExport(tag), image_config=config)
        assert _docker("run", "--rm", tag).stdout.strip() == marker  # in the engine's store, unpacked
    finally:
        _docker("image", "rm", "-f", tag)


def test_a_failed_step_with_a_long_command_is_reported(engine: llb.Client) -> None:
    """Docker 26's BuildKit sends a failed step's error with ~6 KB of details besides its message; with
    a long command (quotes and line breaks grow in the trailers) they pass grpc's default metadata
    limits (8 KiB, 16 KiB at most), which would drop the error. Its step, exit code and log come
    through, on the gateway path an image build takes as well."""
    marker = uuid.uuid4().hex[:12]
    script = "; ".join(f'echo "line-{i}-{"x" * 60}\n"' for i in range(160)) + f"; echo {marker}; exit 7"
    step = _base().run(["sh", "-c", script], name=f"long {marker}").root()
    for export, config in ((None, None), (llb.DockerImage(f"llb-test/long:{marker}"), llb.ImageConfig(cmd=["sh"]))):
        with pytest.raises(llb.ExecError) as info:
            engine.solve(step, export=export, image_config=config)
        err = info.value
        assert (err.vertex_name, err.exit_code, err.log_tail[-1]) == (f"long {marker}", 7, marker)
        assert err.vertex.startswith("sha256:") and "exit code: 7" in err.message


def test_a_failed_file_step_is_named(engine: llb.Client) -> None:
    marker = uuid.uuid4().hex[:12]
    base = _base()
    with pytest.raises(llb.SolveError) as info:
        engine.solve(base.file(llb.copy(base, f"/no-such-{marker}", "/x"), name=f"copy {marker}"))
    assert info.value.vertex_name == f"copy {marker}" and f"no-such-{marker}" in info.value.message


def test_list_workers(engine: llb.Client) -> None:
    workers = engine.list_workers()
    assert workers and any(p.os == "linux" for w in workers for p in w.platforms)


def test_ctrl_c_cancels_the_solve(engine: llb.Client) -> None:
    import _thread

    marker = uuid.uuid4().hex
    state = _base().run(["sh", "-c", f"sleep 60; echo {marker}"]).root()
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(llb.Cancelled) as info:
        engine.solve(state)
    timer.join()
    assert time.monotonic() - t0 < 4.0
    assert isinstance(info.value.__cause__, KeyboardInterrupt)


def test_missing_local_dir_is_reported_before_solving(engine: llb.Client) -> None:
    st = llb.scratch().file(llb.copy(llb.local("ctx"), "/", "/"))
    with pytest.raises(llb.InvalidGraph, match="ctx"):
        engine.solve(st)


def test_inline_cache_export_and_no_local_cache(engine: llb.Client, image_tag: str) -> None:
    st = _base().run(["sh", "-c", f"echo {uuid.uuid4().hex} > /x"]).root()
    res = engine.solve(st, export=llb.DockerImage(image_tag), cache_exports=[llb.CacheOption("inline")])
    assert res.image_id
    with pytest.raises(llb.UnsupportedByBuilder, match="local"):
        engine.solve(st, cache_imports=[llb.CacheOption("local", {"src": "/tmp"})])


def _registry_tags(repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:5000/v2/{repository}/tags/list", timeout=5) as r:
            tags: list[str] = json.load(r).get("tags") or []
            return tags
    except OSError:
        return []


@pytest.mark.registry
def test_registry_cache_export_lands_or_is_refused_with_a_hint(engine: llb.Client) -> None:
    """Docker 20.10's BuildKit exports only inline cache: llb says so and how to get more. An engine
    whose BuildKit has the registry exporter (Docker 26 with the containerd image store) pushes it."""
    try:
        urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2).close()
    except OSError:
        pytest.skip("no registry on 127.0.0.1:5000 (scripts/setup-engine.sh starts one)")
    tag = f"cache-{uuid.uuid4().hex[:12]}"
    st = _base().run(["sh", "-c", f"echo {tag} > /x"]).root()
    cache = llb.CacheOption("registry", {"ref": f"127.0.0.1:5000/llb-test:{tag}", "registry.insecure": "true"})
    try:
        engine.solve(st, cache_exports=[cache])
    except llb.UnsupportedByBuilder as exc:
        assert "registry" in str(exc) and "inline" in str(exc)
        assert tag not in _registry_tags("llb-test")
    else:
        assert tag in _registry_tags("llb-test")


def _containerd_store() -> bool:
    """The engine keeps images in containerd (the store whose snapshotter gives BuildKit MergeOp/DiffOp)."""
    info = _docker("info", "--format", "{{json .DriverStatus}}")
    return "io.containerd.snapshotter" in info.stdout


def test_capabilities_are_what_the_engine_reports(engine: llb.Client) -> None:
    """The gateway's caps, the workers and their platforms, as this engine reports them: MergeOp is
    enabled exactly where the image store is containerd's, and otherwise the builder says why not."""
    caps = engine.capabilities()
    assert caps.supports("exec.mount.cache") and caps.frontend_supports("importcaches")
    assert caps.platforms and caps.platforms[0] in engine.list_workers()[0].platforms
    assert caps.supports("mergeop") == _containerd_store()
    assert (caps.why_not("mergeop") == "") == caps.supports("mergeop")


def test_merge_and_diff_stack_independent_steps(engine: llb.Client, tmp_path: Path) -> None:
    """Diffs of independent steps merged onto their base give every change, deletions included, and a
    change to one step re-runs only that step. An engine without MergeOp refuses the graph by name."""
    marker = uuid.uuid4().hex[:12]
    base = _base()
    a = base.run(["sh", "-c", f"echo a-{marker} > /a && rm /etc/debian_version"], name=f"a {marker}").root()

    def image(b_text: str) -> llb.State:
        b = base.run(["sh", "-c", f"mkdir /opt/x && echo {b_text} > /opt/x/y"], name=f"b {b_text}").root()
        c = b.run(["sh", "-c", "echo c >> /opt/x/y && ln -s y /opt/x/z"], name=f"c {b_text}").root()
        merged = llb.merge([base, llb.diff(base, a), llb.diff(base, b), llb.diff(b, c)])
        script = (
            "{ cat /a /opt/x/z; test -e /etc/debian_version || echo deleted; test -f /etc/os-release && echo base; }"
        )
        return merged.run(["sh", "-c", f"{script} > /report"]).root()

    if not _containerd_store():
        with pytest.raises(llb.LLBError, match="mergeop"):
            engine.solve(image(f"b-{marker}"))
        return
    assert (
        _read_file(engine, image(f"b-{marker}"), "/report", tmp_path) == f"a-{marker}\nb-{marker}\nc\ndeleted\nbase\n"
    )
    again = engine.solve(image(f"b2-{marker}"))
    ran = {v.name: v.cached for v in again.vertices if v.name.startswith(("a ", "b ", "c "))}
    assert ran == {f"a {marker}": True, f"b b2-{marker}": False, f"c b2-{marker}": False}
