"""Pure run-time logic: names, option parsing, port publishing, labels and the container plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.runtime import options as o
from frontend.spec import EnvVar, Expose, Gpu, Jupyter, Mount, Runtime, ShmSize, Spec

PORTS = json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888}])
LABELS = {"ai.envbuild.vendor": "envbuild", "ai.envbuild.dev": "true", "ai.envbuild.project": "proj",
          "ai.envbuild.ports": PORTS}


@pytest.mark.parametrize("name", ["proj", "my-proj_2", "a.b", "0x"])
def test_valid_names(name: str) -> None:
    assert o.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Proj", "-x", ".x", "a b", "a/b", "a*", "x.", "a" * 64, "naïve"])
def test_invalid_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError, match="invalid environment name"):
        o.validate_name(name)


@pytest.mark.parametrize(
    ("dirname", "expected"),
    [("proj", "proj"), ("My Project", "my-project"), ("_hidden.", "hidden"), ("a" * 80, "a" * 63), ("x@y", "x-y")],
)
def test_name_from_dir(tmp_path: Path, dirname: str, expected: str) -> None:
    d = tmp_path / dirname
    d.mkdir()
    assert o.name_from_dir(d) == expected
    o.validate_name(o.name_from_dir(d))


def test_name_from_dir_without_usable_chars(tmp_path: Path) -> None:
    d = tmp_path / "@@@"
    d.mkdir()
    with pytest.raises(UsageError, match="--name"):
        o.name_from_dir(d)


def test_project_name_matches_contract(tmp_path: Path) -> None:
    d = tmp_path / "My Proj!"
    d.mkdir()
    assert o.project_name(d) == "MyProj"


def test_project_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        o.project_dir(tmp_path / "nope")
    assert o.project_dir(tmp_path) == tmp_path.resolve()


def test_parse_volume(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert o.parse_volume("data:/data", tmp_path) == o.BindMount(str(tmp_path / "data"), "/data")
    assert o.parse_volume(f"{tmp_path}/data:/mnt/x/:ro", tmp_path) == o.BindMount(
        str(tmp_path / "data"), "/mnt/x", read_only=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("data", "expected HOST_PATH"), ("data:rel", "must be absolute"), ("data:/d:rx", "mode must be"),
     ("missing:/d", "does not exist"), (":/d", "expected HOST_PATH"), ("a:b:c:d", "expected HOST_PATH")],
)
def test_bad_volumes(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(UsageError, match=message):
        o.parse_volume(spec, tmp_path)


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [("512m", "", 512 * 2**20), ("2g", "", 2 * 2**30), ("2GiB", "", 2 * 2**30), ("1024", "m", 2**30),
     ("1.5g", "", int(1.5 * 2**30)), ("100", "", 100), ("64MB", "", 64 * 2**20)],
)
def test_parse_size(text: str, default: str, expected: int) -> None:
    assert o.parse_size(text, what="--memory", default_unit=default) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1g", "0", "1x"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError):
        o.parse_size(text, what="--memory")


def test_cpus_are_nano_cpus_not_ten_times_off() -> None:
    assert o.parse_cpus("1") == 1_000_000_000
    assert o.parse_cpus("0.5") == 500_000_000
    assert o.parse_cpus("2.25") == 2_250_000_000
    for bad in ("0", "-1", "two", "nan"):
        with pytest.raises(UsageError, match="--cpus"):
            o.parse_cpus(bad)


def test_gpus() -> None:
    assert o.parse_gpus("all") == o.GpuRequest(-1)
    assert o.parse_gpus("2") == o.GpuRequest(2)
    assert o.parse_gpus("device=0,2") == o.GpuRequest(0, ("0", "2"))
    for bad in ("0", "some", "device="):
        with pytest.raises(UsageError, match="--gpus"):
            o.parse_gpus(bad)


def test_gpu_request_rules() -> None:
    assert o.gpu_request(image_gpu=False, spec_count=None, gpus=None, no_gpu=False) is None
    assert o.gpu_request(image_gpu=True, spec_count=None, gpus=None, no_gpu=False) == o.GpuRequest(-1)
    assert o.gpu_request(image_gpu=True, spec_count=2, gpus=None, no_gpu=False) == o.GpuRequest(2)
    assert o.gpu_request(image_gpu=True, spec_count=2, gpus="1", no_gpu=False) == o.GpuRequest(1)
    assert o.gpu_request(image_gpu=False, spec_count=None, gpus="all", no_gpu=False) == o.GpuRequest(-1)
    assert o.gpu_request(image_gpu=True, spec_count=2, gpus=None, no_gpu=True) is None


def test_ports_are_engine_assigned_on_loopback_by_default() -> None:
    ports = o.plan_ports(o.parse_ports_label(PORTS), "127.0.0.1")
    assert ports == [o.Port("ssh", 2222, "127.0.0.1", 0), o.Port("jupyter", 8888, "127.0.0.1", 0)]
    assert o.port_bindings(ports) == {
        "2222/tcp": {"HostIp": "127.0.0.1", "HostPort": ""},
        "8888/tcp": {"HostIp": "127.0.0.1", "HostPort": ""},
    }


def test_fixed_ports_only_where_the_spec_asks() -> None:
    label = o.parse_ports_label(json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888},
                                            {"name": "tb", "port": 6006}]))
    ports = o.plan_ports(label, "0.0.0.0", jupyter_host_port=18888, exposes=((6006, 16006, "127.0.0.1"), (9000, 0, "")))
    by_port = {p.container_port: p for p in ports}
    assert by_port[2222] == o.Port("ssh", 2222, "0.0.0.0", 0)
    assert by_port[8888] == o.Port("jupyter", 8888, "0.0.0.0", 18888)
    assert by_port[6006] == o.Port("tb", 6006, "127.0.0.1", 16006)
    assert by_port[9000] == o.Port("port-9000", 9000, "0.0.0.0", 0)


def test_malformed_ports_label() -> None:
    with pytest.raises(UsageError, match="malformed"):
        o.parse_ports_label('[{"nom": 1}]')


def test_host_must_be_an_ip() -> None:
    assert o.validate_host("0.0.0.0") == "0.0.0.0"
    assert o.validate_host("::1") == "::1"
    with pytest.raises(UsageError, match="--host"):
        o.validate_host("localhost:80")
    assert o.connect_host("0.0.0.0") == "127.0.0.1"
    assert o.connect_host("10.1.2.3") == "10.1.2.3"


def _plan(tmp_path: Path, spec: Spec | None = None, **opts: object) -> o.ContainerPlan:
    return o.plan_container(name="proj", image="img:dev", image_labels=LABELS, spec=spec, project=tmp_path,
                            options=o.RunOptions(**opts), authorized_keys="ssh-ed25519 AAAA k", token="tok")


def test_plan_defaults(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.workdir == "/home/envd/proj"
    assert plan.mounts == [o.BindMount(str(tmp_path), "/home/envd/proj")]
    assert plan.env == {"ENVBUILD_AUTHORIZED_KEYS": "ssh-ed25519 AAAA k", "ENVBUILD_JUPYTER_TOKEN": "tok",
                        "ENVD_WORKDIR": "/home/envd/proj"}
    assert plan.labels == {"ai.envbuild.name": "proj", "ai.envbuild.project.path": str(tmp_path),
                           "ai.envbuild.host": "127.0.0.1"}
    assert plan.gpus is None and plan.nano_cpus is None and plan.memory is None
    assert plan.shm_size == 2048 * 2**20
    kwargs = plan.create_kwargs()
    assert kwargs["user"] == "root"
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["ports"] == {"2222/tcp": {"HostIp": "127.0.0.1", "HostPort": ""},
                               "8888/tcp": {"HostIp": "127.0.0.1", "HostPort": ""}}
    assert kwargs["working_dir"] == "/home/envd/proj"
    assert "device_requests" not in kwargs and "nano_cpus" not in kwargs


def test_plan_with_spec_and_options(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "data").mkdir()
    spec = Spec(
        jupyter=Jupyter(token="fixed", port=18888),
        shm_size=ShmSize(512),
        gpu=Gpu(2),
        runtime=Runtime(
            mounts=(Mount("data", "/data", create=True),),
            environ=(EnvVar("A", "1"), EnvVar("A", "2")),
            exposes=(Expose(6006, 16006, listen_addr="127.0.0.1"),),
        ),
    )
    plan = _plan(tmp_path, spec, gpus="1", cpus="1.5", memory="4g", volumes=("extra:/extra:ro",))
    assert plan.env["A"] == "2"
    assert o.BindMount(str(tmp_path / "data"), "/data") in plan.mounts  # only data.envd() directories are made
    assert o.BindMount(str(tmp_path / "extra"), "/extra", read_only=True) in plan.mounts
    assert plan.shm_size == 512 * 2**20
    assert {p.container_port: p.host_port for p in plan.ports} == {2222: 0, 8888: 18888, 6006: 16006}
    kwargs = plan.create_kwargs()
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["mem_limit"] == 4 * 2**30
    (request,) = kwargs["device_requests"]
    assert request["Driver"] == "nvidia" and request["Count"] == 1 and request["Capabilities"] == [["gpu"]]


def test_plan_gpu_from_image_label_and_no_gpu(tmp_path: Path) -> None:
    labels = {**LABELS, "ai.envbuild.gpu": "true"}
    plan = o.plan_container(name="p", image="i", image_labels=labels, spec=None, project=tmp_path,
                            options=o.RunOptions(), authorized_keys="k", token="t")
    assert plan.gpus == o.GpuRequest(-1)
    assert plan.create_kwargs()["device_requests"][0]["Count"] == -1
    plan = o.plan_container(name="p", image="i", image_labels=labels, spec=None, project=tmp_path,
                            options=o.RunOptions(no_gpu=True), authorized_keys="k", token="t")
    assert plan.gpus is None


def test_plan_rejects_duplicate_targets_and_images_without_ssh(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(UsageError, match="two mounts"):
        _plan(tmp_path, volumes=("x:/home/envd/proj",))
    with pytest.raises(UsageError, match="no ssh port"):
        o.plan_container(name="p", image="i", image_labels={**LABELS, "ai.envbuild.ports": "[]"}, spec=None,
                         project=tmp_path, options=o.RunOptions(), authorized_keys="k", token="t")


def test_check_options_rejects_before_any_build(tmp_path: Path) -> None:
    o.check_options(o.RunOptions(shm_size="1g", memory="2g", cpus="2", gpus="all"), tmp_path)
    for bad in (o.RunOptions(host="nope"), o.RunOptions(volumes=("x",)), o.RunOptions(cpus="0"),
                o.RunOptions(gpus="1", no_gpu=True), o.RunOptions(memory="lots")):
        with pytest.raises(UsageError):
            o.check_options(bad, tmp_path)


class _FakeContainer:
    def __init__(self, attrs: dict) -> None:
        self.attrs = attrs
        self.id = "c0ffee"
        self.name = "proj"


def test_environment_from_container_attrs() -> None:
    from envbuild.runtime.engine import environment_from

    env = environment_from(_FakeContainer({
        "Config": {"Labels": {**LABELS, "ai.envbuild.name": "proj", "ai.envbuild.project.path": "/src/proj"},
                   "Env": ["PATH=/bin", "ENVBUILD_JUPYTER_TOKEN=s3cret=x"], "Image": "img:dev",
                   "WorkingDir": "/home/envd/proj"},
        "Image": "sha256:abc",
        "State": {"Status": "running"},
        "HostConfig": {"DeviceRequests": None},
        "NetworkSettings": {"Ports": {"2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}],
                                      "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40002"}],
                                      "9999/tcp": None}},
    }))
    assert env.running and env.name == "proj" and env.project_path == "/src/proj" and not env.gpu
    assert env.jupyter_token == "s3cret=x"
    assert env.ssh_target == "proj.envbuild"
    assert env.jupyter_url == "http://127.0.0.1:40002/lab?token=s3cret=x"
    data = env.to_dict()
    assert data["ssh"] == {"target": "proj.envbuild", "host": "127.0.0.1", "port": 40001, "user": "envd"}
    assert [p["name"] for p in data["ports"]] == ["ssh", "jupyter"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "-p", "/nonexistent-envbuild-dir"], "does not exist"),
        (["up", "--name", "Bad Name", "-p", "."], "invalid environment name"),
        (["run", "--image", "x", "--volume", "nocolon"], "invalid --volume"),
        (["run", "--image", "x", "--cpus", "lots"], "invalid --cpus"),
        (["ls", "--format", "yaml"], "invalid --format"),
        (["destroy", "--name", "a", "-p", "."], "not both"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from envbuild.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_engine_down_exits_3_with_how_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from envbuild.cli import main

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SystemExit) as exit_info:
        main(["ls"])
    assert exit_info.value.code == 3
    assert "start it with" in capsys.readouterr().err


def test_gpu_request_without_nvidia_runtime_is_a_clear_error() -> None:
    from envbuild.errors import RuntimeFailure
    from envbuild.runtime.engine import check_gpu_support

    class Info:
        def __init__(self, runtimes: dict) -> None:
            self.runtimes = runtimes

        def info(self) -> dict:
            return {"Runtimes": self.runtimes}

    with pytest.raises(RuntimeFailure, match=r"no 'nvidia' runtime.*runc.*--no-gpu"):
        check_gpu_support(Info({"runc": {}}))  # type: ignore[arg-type]
    check_gpu_support(Info({"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}))  # type: ignore[arg-type]


# ---- what a spec may do to the host (issue 15, items 1 and 2) ----------------------------------------


class _Created:
    def __init__(self) -> None:
        self.containers = self
        self.kwargs: dict[str, object] = {}

    def create(self, **kwargs: object) -> _Created:
        self.kwargs = kwargs
        return self

    def start(self) -> None:
        pass

    def reload(self) -> None:
        pass


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _mounting(host_path: str, envd_path: str = "/x", *, create: bool = True) -> Spec:
    return Spec(runtime=Runtime(mounts=(Mount(host_path, envd_path, create=create),)))


def test_a_mount_that_climbs_out_of_the_data_directory_is_never_created_or_opened_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envbuild.runtime import engine

    home = _home(tmp_path, monkeypatch)
    climbing = _mounting("~/.cache/envbuild/data/../../../victim")
    with pytest.raises(UsageError, match="does not exist"):
        _plan(tmp_path, climbing)
    assert not (home / "victim").exists()
    (home / "victim").mkdir(mode=0o700)
    plan = _plan(tmp_path, climbing)
    assert o.BindMount(str(home / "victim"), "/x") in plan.mounts
    engine.create(_Created(), plan)  # type: ignore[arg-type]
    assert (home / "victim").stat().st_mode & 0o777 == 0o700


def test_data_directories_are_made_private_and_existing_ones_kept_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envbuild.runtime import engine

    home = _home(tmp_path, monkeypatch)
    plan = _plan(
        tmp_path,
        Spec(
            runtime=Runtime(
                mounts=(
                    Mount("~/.cache/envbuild/data/mnist", "~/mnist", create=True),
                    Mount("~/.cache/envbuild/data/shared", "/shared", create=True),
                )
            )
        ),
    )
    data = home / ".cache/envbuild/data"
    assert o.BindMount(str(data / "mnist"), "/home/envd/mnist", create=True) in plan.mounts
    data.mkdir(parents=True)
    (data / "shared").mkdir()
    (data / "shared").chmod(0o750)
    umask = os.umask(0o022)
    try:
        engine.create(_Created(), plan)  # type: ignore[arg-type]
    finally:
        os.umask(umask)
    assert (data / "mnist").stat().st_mode & 0o777 == 0o755
    assert (data / "shared").stat().st_mode & 0o777 == 0o750
    assert (data / "mnist").stat().st_uid == os.getuid()


def test_a_data_directory_that_is_a_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuild.errors import RuntimeFailure
    from envbuild.runtime import engine

    home = _home(tmp_path, monkeypatch)
    data = home / ".cache/envbuild/data"
    data.mkdir(parents=True)
    (home / "elsewhere").mkdir(mode=0o700)
    (data / "link").symlink_to(home / "elsewhere")
    plan = _plan(tmp_path, _mounting("~/.cache/envbuild/data/link"))
    with pytest.raises(RuntimeFailure, match="symlink"):
        engine.create(_Created(), plan)  # type: ignore[arg-type]
    assert (home / "elsewhere").stat().st_mode & 0o777 == 0o700


def _from_image(tmp_path: Path, spec: Spec, **opts: object) -> o.ContainerPlan:
    return o.plan_container(
        name="proj",
        image="img:dev",
        image_labels=LABELS,
        spec=spec,
        project=tmp_path,
        options=o.RunOptions(**opts),
        authorized_keys="k",
        token="tok",
        from_image=True,
    )


def test_an_image_mounts_no_host_directory_unless_the_command_line_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home(tmp_path, monkeypatch)
    (tmp_path / "etc").mkdir()
    spec = Spec(
        runtime=Runtime(
            mounts=(
                Mount("/", "/host"),
                Mount(str(tmp_path / "etc"), "/cfg"),
                Mount("~/.cache/envbuild/data/d", "/d", create=True),
            )
        )
    )
    plan = _from_image(tmp_path, spec)
    assert [m.target for m in plan.mounts] == ["/home/envd/proj", "/d"]
    assert plan.mounts[1] == o.BindMount(str(home / ".cache/envbuild/data/d"), "/d", create=True)
    assert len(plan.refused) == 2 and "not mounting / at /host" in plan.refused[0], plan.refused
    assert f"-v {tmp_path / 'etc'}:/cfg" in plan.refused[1]
    plan = _from_image(tmp_path, spec, volumes=(f"{tmp_path / 'etc'}:/cfg:ro",))
    assert o.BindMount(str(tmp_path / "etc"), "/cfg", read_only=True) in plan.mounts
    assert len(plan.refused) == 1


@pytest.mark.parametrize("from_image", [True, False])
def test_ports_go_beyond_the_loopback_only_where_host_allows(tmp_path: Path, from_image: bool) -> None:
    spec = Spec(
        runtime=Runtime(
            exposes=(
                Expose(8080, listen_addr="0.0.0.0"),
                Expose(9090, listen_addr="127.0.0.2"),
                Expose(7070, listen_addr="10.1.2.3"),
            )
        )
    )
    plan = o.plan_container(
        name="proj",
        image="img:dev",
        image_labels=LABELS,
        spec=spec,
        project=tmp_path,
        options=o.RunOptions(),
        authorized_keys="k",
        token="t",
        from_image=from_image,
    )
    addrs = {p.container_port: p.host_ip for p in plan.ports}
    assert addrs == {2222: "127.0.0.1", 8888: "127.0.0.1", 8080: "127.0.0.1", 9090: "127.0.0.2", 7070: "127.0.0.1"}
    assert [r.split(" (")[0] for r in plan.refused] == [
        "publishing port 8080 on 127.0.0.1, not 0.0.0.0",
        "publishing port 7070 on 127.0.0.1, not 10.1.2.3",
    ]
    assert "--host 0.0.0.0" in plan.refused[0]
    plan = o.plan_container(
        name="proj",
        image="img:dev",
        image_labels=LABELS,
        spec=spec,
        project=tmp_path,
        options=o.RunOptions(host="0.0.0.0"),
        authorized_keys="k",
        token="t",
        from_image=from_image,
    )
    assert {p.container_port: p.host_ip for p in plan.ports}[8080] == "0.0.0.0" and not plan.refused
