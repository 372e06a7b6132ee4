"""`llb.dockerhost`: the engine the docker CLI would use, from its environment and context store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llb.dockerhost import DockerContextError, list_contexts, resolve


def _context(config: Path, name: str, host: str, *, description: str = "", tls: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps(
            {
                "Name": name,
                "Metadata": {"Description": description},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
            }
        )
    )
    if tls:
        files = config / "contexts" / "tls" / digest / "docker"
        files.mkdir(parents=True)
        (files / "ca.pem").write_text("x")


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    _context(config, "gpu-box", "ssh://me@gpu-box", description="the GPU workstation")
    _context(config, "ci", "tcp://10.0.0.1:2376", tls=True)
    env = {"DOCKER_CONFIG": str(config)}
    assert (resolve(env).url, resolve(env).source) == ("unix:///var/run/docker.sock", "default")
    (config / "config.json").write_text(json.dumps({"currentContext": "gpu-box", "auths": {}}))
    host = resolve(env)
    assert (host.url, host.is_ssh, host.context and host.context.description) == (
        "ssh://me@gpu-box",
        True,
        "the GPU workstation",
    )
    ci = resolve({**env, "DOCKER_CONTEXT": "ci"})
    assert ci.url == "tcp://10.0.0.1:2376" and ci.context is not None and ci.context.tls_dir
    assert resolve({**env, "DOCKER_CONTEXT": "default"}).url == "unix:///var/run/docker.sock"
    assert resolve({**env, "DOCKER_CONTEXT": "ci", "DOCKER_HOST": "unix:///x.sock"}).source == "DOCKER_HOST"
    assert [c.name for c in list_contexts(env)] == ["ci", "gpu-box"]


def test_a_named_context_that_is_missing_or_damaged_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "nope"}
    with pytest.raises(DockerContextError, match="docker context 'nope' does not exist"):
        resolve(env)
    _context(config, "bad", "ssh://x")
    meta = next((config / "contexts" / "meta").glob("*/meta.json"))
    meta.write_text("{not json")
    with pytest.raises(DockerContextError, match="unreadable"):
        resolve({**env, "DOCKER_CONTEXT": "bad"})
    assert list_contexts(env) == []
    (config / "config.json").write_text("[")
    with pytest.raises(DockerContextError, match=r"config\.json is unreadable"):
        resolve({"DOCKER_CONFIG": str(config)})
