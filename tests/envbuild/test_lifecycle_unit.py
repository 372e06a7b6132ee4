"""`bring_up` decisions (create, attach, restart, recreate, refuse) against an in-memory engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from envbuild.errors import UsageError
from envbuild.runtime import engine, lifecycle
from frontend.spec import Jupyter, Spec

PORTS = json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888}])


class FakeImage:
    def __init__(self, image_id: str, labels: dict[str, str]) -> None:
        self.id = image_id
        self.attrs = {"Config": {"Labels": labels}}


class FakeContainer:
    def __init__(self, client: FakeClient, kwargs: dict[str, Any], image_id: str) -> None:
        self.client = client
        self.name = kwargs["name"]
        self.id = f"id-{self.name}-{len(client.created)}"
        self.kwargs = kwargs
        self.labels = {**client.images[kwargs["image"]].attrs["Config"]["Labels"], **kwargs["labels"]}
        self.status = "created"
        self.image_id = image_id

    @property
    def attrs(self) -> dict[str, Any]:
        env = [f"{k}={v}" for k, v in self.kwargs["environment"].items()]
        ports = {k: [{"HostIp": v["HostIp"], "HostPort": "40000"}] for k, v in self.kwargs["ports"].items()}
        return {"Config": {"Labels": self.labels, "Env": env, "Image": self.kwargs["image"],
                           "WorkingDir": self.kwargs.get("working_dir", "/"), "Cmd": self.kwargs.get("command")},
                "Image": self.image_id, "State": {"Status": self.status}, "HostConfig": {},
                "NetworkSettings": {"Ports": ports if self.status == "running" else {}}}

    def start(self) -> None:
        self.status = "running"

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.client.containers_by_name.pop(self.name, None)
        self.client.removed.append(self.id)


class FakeClient:
    def __init__(self) -> None:
        self.images: dict[str, FakeImage] = {}
        self.containers_by_name: dict[str, FakeContainer] = {}
        self.created: list[FakeContainer] = []
        self.removed: list[str] = []
        self.containers = self
        outer = self

        class Images:
            def get(self, ref: str) -> FakeImage:
                from docker.errors import ImageNotFound

                if ref not in outer.images:
                    raise ImageNotFound(ref)
                return outer.images[ref]

        self.images_api = Images()

    def get(self, name: str) -> FakeContainer:
        if name not in self.containers_by_name:
            raise NotFound(name)
        return self.containers_by_name[name]

    def create(self, **kwargs: Any) -> FakeContainer:
        container = FakeContainer(self, kwargs, self.images[kwargs["image"]].id)
        self.containers_by_name[container.name] = container
        self.created.append(container)
        return container


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeClient:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fake = FakeClient()
    labels = {"ai.envbuild.vendor": "envbuild", "ai.envbuild.dev": "true", "ai.envbuild.project": "proj",
              "ai.envbuild.ports": PORTS,
              "ai.envbuild.spec": Spec(jupyter=Jupyter(token="fixed-token")).to_json()}
    fake.images["img:1"] = FakeImage("sha256:1", labels)
    fake.images["img:2"] = FakeImage("sha256:2", {**labels, "ai.envbuild.spec": Spec(jupyter=Jupyter()).to_json()})
    fake.images["plain"] = FakeImage("sha256:3", {"ai.envbuild.vendor": "envbuild", "ai.envbuild.dev": "false"})
    monkeypatch.setattr(engine, "get_image", lambda c, ref: fake.images_api.get(ref))
    monkeypatch.setattr(engine, "wait_ready", lambda container, timeout=0, **_: engine.environment_from(container))
    published: list[tuple[str, int]] = []
    monkeypatch.setattr(
        lifecycle.ssh, "write_host", lambda entry, include=True: published.append((entry.name, entry.port))
    )
    monkeypatch.setattr(
        lifecycle.ssh, "ensure_keypair", lambda: type("K", (), {"public_key": lambda self: "ssh-ed25519 AAAA"})()
    )
    fake.published = published  # type: ignore[attr-defined]
    return fake


def test_create_then_attach_then_restart(client: FakeClient, tmp_path: Path) -> None:
    result = lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path, jupyter_token="t-1")  # type: ignore[arg-type]
    assert result.action == "created"
    assert result.environment.jupyter_token == "t-1"
    assert client.published == [("proj", 40000)]  # type: ignore[attr-defined]
    assert (
        lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path, jupyter_token="t-1").action
        == "attached"
    )  # type: ignore[arg-type]
    client.containers_by_name["proj"].status = "exited"
    assert lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path).action == "started"  # type: ignore[arg-type]
    assert len(client.created) == 1 and not client.removed


def test_a_token_from_an_image_label_is_never_used(client: FakeClient, tmp_path: Path) -> None:
    """Images built before the label lost the token still carry it: anyone with the image knows it."""
    env = lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path).environment  # type: ignore[arg-type]
    assert env.jupyter_token and env.jupyter_token != "fixed-token" and len(env.jupyter_token) >= 30


def test_a_changed_build_file_token_recreates_the_environment(client: FakeClient, tmp_path: Path) -> None:
    lifecycle.bring_up(client, image="img:2", name="proj", project=tmp_path, jupyter_token="old")  # type: ignore[arg-type]
    again = lifecycle.bring_up(client, image="img:2", name="proj", project=tmp_path, jupyter_token="new")  # type: ignore[arg-type]
    assert again.action == "recreated" and again.environment.jupyter_token == "new"
    assert lifecycle.bring_up(client, image="img:2", name="proj", project=tmp_path).action == "attached"  # type: ignore[arg-type]


def test_generated_token_when_the_spec_sets_none(client: FakeClient, tmp_path: Path) -> None:
    env = lifecycle.bring_up(client, image="img:2", name="proj", project=tmp_path).environment  # type: ignore[arg-type]
    assert env.jupyter_token and len(env.jupyter_token) >= 30
    other = lifecycle.bring_up(client, image="img:2", name="other", project=tmp_path / "x").environment  # type: ignore[arg-type]
    assert other.jupyter_token != env.jupyter_token


def test_force_and_new_image_recreate(client: FakeClient, tmp_path: Path) -> None:
    lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path)  # type: ignore[arg-type]
    assert lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path, force=True).action == "recreated"  # type: ignore[arg-type]
    assert lifecycle.bring_up(client, image="img:2", name="proj", project=tmp_path).action == "recreated"  # type: ignore[arg-type]
    assert len(client.created) == 3 and len(client.removed) == 2


def test_refuses_another_projects_env_and_images_envbuild_did_not_build(client: FakeClient, tmp_path: Path) -> None:
    lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="already belongs to"):
        lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path / "elsewhere")  # type: ignore[arg-type]
    client.images["foreign"] = FakeImage("sha256:9", {})
    with pytest.raises(UsageError, match="was not built by envbuild"):
        lifecycle.bring_up(client, image="foreign", name="p2", project=tmp_path)  # type: ignore[arg-type]


def test_a_serving_image_runs_its_own_entrypoint_with_the_arguments_given(client: FakeClient, tmp_path: Path) -> None:
    """No keys, no token, its own user and working directory; a new command recreates it."""
    env = lifecycle.bring_up(client, image="plain", name="app", project=None, command=("--port", "9")).environment  # type: ignore[arg-type]
    (created,) = client.created
    assert env.serving and "user" not in created.kwargs and "working_dir" not in created.kwargs
    assert created.kwargs["command"] == ["--port", "9"] and created.kwargs["environment"] == {}
    assert client.published == []  # type: ignore[attr-defined]
    assert lifecycle.bring_up(client, image="plain", name="app", project=None).action == "attached"  # type: ignore[arg-type]
    again = lifecycle.bring_up(client, image="plain", name="app", project=None, command=("--port", "8"))  # type: ignore[arg-type]
    assert again.action == "recreated"
    with pytest.raises(UsageError, match="is a development image"):
        lifecycle.bring_up(client, image="img:1", name="dev", project=None, command=("bash",))  # type: ignore[arg-type]


def test_unrelated_container_with_the_name_is_not_touched(client: FakeClient, tmp_path: Path) -> None:
    lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path)  # type: ignore[arg-type]
    client.containers_by_name["proj"].labels.pop("ai.envbuild.name")
    with pytest.raises(UsageError, match="not an envbuild environment"):
        lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path, force=True)  # type: ignore[arg-type]
    assert not client.removed


def test_run_without_a_project_never_takes_over_a_projects_environment(client: FakeClient, tmp_path: Path) -> None:
    lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=f"already belongs to {tmp_path}"):
        lifecycle.bring_up(client, image="img:2", name="proj", project=None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=f"already belongs to {tmp_path}"):
        lifecycle.bring_up(client, image="img:1", name="proj", project=None, force=True)  # type: ignore[arg-type]
    assert not client.removed and len(client.created) == 1
    lifecycle.bring_up(client, image="img:1", name="loose", project=None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="already belongs to no project"):
        lifecycle.bring_up(client, image="img:1", name="loose", project=tmp_path)  # type: ignore[arg-type]


def test_an_image_label_is_checked_like_a_build_file_before_anything_changes(
    client: FakeClient, tmp_path: Path
) -> None:
    from frontend.spec import Expose, Pos, Runtime

    lifecycle.bring_up(client, image="img:1", name="proj", project=tmp_path)  # type: ignore[arg-type]
    bad = Spec(runtime=Runtime(exposes=(Expose(8080, listen_addr="everywhere", pos=Pos("build.envd", 4, 5)),)))
    labels = {**client.images["img:1"].attrs["Config"]["Labels"], "ai.envbuild.spec": bad.to_json()}
    client.images["evil"] = FakeImage("sha256:4", labels)
    with pytest.raises(UsageError) as info:
        lifecycle.bring_up(client, image="evil", name="proj", project=tmp_path, force=True)  # type: ignore[arg-type]
    assert str(info.value) == (
        "image 'evil': its ai.envbuild.spec label is refused: build.envd:4:5: runtime.expose(): "
        "'listen_addr' must be an IP address, got 'everywhere'"
    )
    client.images["broken"] = FakeImage("sha256:5", {**labels, "ai.envbuild.spec": "{not json"})
    with pytest.raises(UsageError, match="label is refused: spec is not valid JSON"):
        lifecycle.bring_up(client, image="broken", name="proj", project=tmp_path)  # type: ignore[arg-type]
    assert not client.removed, "a refused image must leave the running environment alone"


def test_refusals_reach_the_caller(client: FakeClient, tmp_path: Path) -> None:
    from frontend.spec import Mount, Runtime

    labels = {
        **client.images["img:1"].attrs["Config"]["Labels"],
        "ai.envbuild.spec": Spec(runtime=Runtime(mounts=(Mount("/", "/host"),))).to_json(),
    }
    client.images["wide"] = FakeImage("sha256:6", labels)
    result = lifecycle.bring_up(client, image="wide", name="wide", project=None)  # type: ignore[arg-type]
    assert result.refused and "not mounting / at /host" in result.refused[0]
    assert all(m["Source"] != "/" for m in client.created[-1].kwargs["mounts"])


def test_the_same_build_again_attaches_even_with_a_new_image_id(client: FakeClient, tmp_path: Path) -> None:
    """Concurrent `up`s of one project each export the image (new ids, one content digest): the
    environment the first one started is attached to, not replaced by each of the others."""
    labels = {**client.images["img:1"].attrs["Config"]["Labels"], "ai.envbuild.digest": "sha256:same"}
    client.images["p:dev"] = FakeImage("sha256:first", labels)
    assert lifecycle.bring_up(client, image="p:dev", name="p", project=tmp_path).action == "created"  # type: ignore[arg-type]
    client.images["p:dev"] = FakeImage("sha256:second", labels)
    assert lifecycle.bring_up(client, image="p:dev", name="p", project=tmp_path).action == "attached"  # type: ignore[arg-type]
    client.images["p:dev"] = FakeImage("sha256:third", {**labels, "ai.envbuild.digest": "sha256:changed"})
    assert lifecycle.bring_up(client, image="p:dev", name="p", project=tmp_path).action == "recreated"  # type: ignore[arg-type]
