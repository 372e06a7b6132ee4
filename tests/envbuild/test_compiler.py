"""Unit tests of the compiler: stage order, caching contract, secrets, image config."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

import frontend
from envbuild.compiler import BaseConfig, CompileOptions
from envbuild.compiler import devfiles as D
from envbuild.compiler import scripts as S
from envbuild.compiler.compile import compile
from envbuild.compiler.options import AptPin, Pins
from envbuild.errors import UsageError
from frontend.spec import Spec

DEBIAN = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
OPTS = CompileOptions(project="proj", owner=(1000, 1000), base_config=DEBIAN)


def spec_of(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Spec:
    (tmp_path / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return frontend.evaluate(tmp_path, user_config=False)


JUPYTER = """base(image="local/debian:bookworm", dev=True)
install.python(version="3.11")
install.apt_packages(name=["htop"])
install.python_packages(name=["numpy"])
config.jupyter()"""


def ops(spec: Spec, opts: CompileOptions = OPTS) -> dict[str, dict]:
    """custom name -> {digest, op} for every op."""
    out = {}
    for entry in compile(spec, opts).definition().to_json():
        name = entry.get("OpMetadata", {}).get("description", {}).get("llb.customname", "")
        out[name] = entry
    return out


def test_stage_order_least_to_most_volatile(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, JUPYTER + '\nrun(commands=["echo hi"])\nio.copy(source="a.txt", target="a.txt")', {"a.txt": "x"}
    )
    kinds = [s.kind for s in compile(spec, OPTS).steps]
    assert kinds == [
        "base",
        "apt",
        "apt",
        "user",
        "file",
        "python",
        "file",
        "python",
        "pip",
        "pip",
        "copy",
        "file",
        "run",
    ]
    names = [s.name for s in compile(spec, OPTS).steps]
    assert names.index("python 3.11: copy /opt/envbuild and uv in") < names.index("jupyterlab")
    assert names.index("jupyterlab") < names.index("python packages: numpy")


def test_io_copy_is_envds_copy(tmp_path: Path) -> None:
    """envd's ``llb.Copy`` with only CreateDestPath: no wildcards, the source itself (not its
    contents), its symlink not followed; a relative target is relative to ``/``, a trailing ``/`` kept."""
    spec = spec_of(
        tmp_path,
        'base(image="local/debian:bookworm", dev=True)\n'
        'io.copy(source="src", target="/")\n'
        'io.copy(source="src", target="opt/app/")\n'
        'io.copy(source="notes.txt", target="~/notes.txt")',
        {"src/pkg/__init__.py": "", "notes.txt": "x"},
    )
    copies = [
        action["copy"]
        for entry in compile(spec, OPTS).definition().to_json()
        for action in entry["Op"].get("file", {}).get("actions", [])
        if "copy" in action and action["copy"]["src"] in ("/src", "/notes.txt")
    ]
    assert [(c["src"], c["dest"]) for c in copies] == [
        ("/src", "/"),
        ("/src", "/opt/app/"),
        ("/notes.txt", "/home/envd/notes.txt"),
    ]
    for c in copies:
        assert c["createDestPath"] and c["owner"]
        assert not any(
            c.get(flag) for flag in ("dirCopyContents", "allowWildcard", "allowEmptyWildcard", "followSymlink")
        )


def test_requirements_with_pip_options_are_rewritten_for_uv_in_a_copy_of_the_context(tmp_path: Path) -> None:
    """The python packages step and the lock's resolution read the file from the rewrite step's
    output, a writable copy of the context files, so nested ``-r`` files resolve beside it."""
    spec = spec_of(
        tmp_path,
        'base(image="local/debian:bookworm")\ninstall.python_packages(requirements="reqs/r.txt")',
        {"reqs/r.txt": "torch --extra-index-url https://x.example/simple\n-r base.txt\n", "reqs/base.txt": "six\n"},
    )
    compiled = compile(spec, OPTS)
    by_name = {
        e.get("OpMetadata", {}).get("description", {}).get("llb.customname", ""): e
        for e in compiled.definition().to_json()
    }
    rewrite = by_name["reqs/r.txt: pip options on lines of their own, for uv"]
    assert rewrite["Op"]["exec"]["network"] == "NONE"
    assert rewrite["Op"]["exec"]["mounts"][1] == {"input": "1", "dest": S.EDIT_DIR, "output": "1"}
    script = rewrite["Op"]["exec"]["meta"]["args"][2]
    assert "awk -v 'r0=--extra-index-url https://x.example/simple\\ntorch'" in script
    install = by_name["python packages: -r reqs/r.txt"]
    assert rewrite["Digest"] in _inputs(install)
    assert compiled.installs.python is not None
    context = next(m for m in compiled.installs.python.mounts if getattr(m, "dest", "") == S.CONTEXT_MOUNT)
    assert context.source.output is not None and "requirements" in {s.kind for s in compiled.steps}


def _inputs(entry: dict) -> list[str]:
    return [i["digest"] for i in entry["Op"].get("inputs", [])]


def test_python_runtime_runs_beside_the_apt_steps(tmp_path: Path) -> None:
    """uv, CPython and the venv start from the base (after config.apt_source), not after the dev and
    apt steps, so BuildKit runs them in parallel; one FileOp joins them into the main chain."""
    spec = spec_of(tmp_path, JUPYTER + '\nconfig.apt_source(source="deb http://mirror.example/debian bookworm main")')
    o = ops(spec)
    runtime = o["python 3.11 and uv 0.13.9"]
    assert _inputs(runtime) == [o["apt source (config.apt_source)"]["Digest"]]
    copy = o["python 3.11: copy /opt/envbuild and uv in"]
    assert _inputs(copy) == [o["dev: entrypoint and supervisor"]["Digest"], runtime["Digest"]]
    actions = [a["copy"] for a in copy["Op"]["file"]["actions"]]
    assert [(a["src"], a["dest"]) for a in actions] == [(S.UV_BIN, S.UV_BIN), (S.ENVBUILD_DIR, S.ENVBUILD_DIR)]
    assert actions[1]["owner"]["user"]["byID"] == 1000 and not actions[1].get("followSymlink")
    check = o["python 3.11: the venv's interpreter in the image"]
    assert _inputs(check) == [copy["Digest"]]
    assert _inputs(o["jupyterlab"]) == [check["Digest"]]
    caches = {m["dest"]: m["cacheOpt"]["ID"] for m in _mounts(runtime) if m.get("mountType") == "CACHE"}
    assert caches["/var/cache/apt"] == S.TOOLS_APT_CACHE_ID and caches["/var/lib/apt/lists"] == S.TOOLS_APT_LISTS_ID
    script = runtime["Op"]["exec"]["meta"]["args"][2]
    assert "--init-groups" not in script and "--clear-groups" in script  # no envd passwd entry in that stage


def test_tool_stages_never_share_the_main_chains_locked_apt_caches(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER + "\ninstall.uv()\ninstall.go()")
    o = ops(spec)
    assert {"tools: python3-venv (for uv)", "tools: curl and xz (downloads)"} <= set(o)
    for name, entry in o.items():
        if "exec" not in entry["Op"]:
            continue
        ids = {m["cacheOpt"]["ID"] for m in _mounts(entry) if m.get("mountType") == "CACHE"}
        if name.startswith("tools: ") or name == "python 3.11 and uv 0.13.9":
            assert S.APT_CACHE_ID not in ids and S.APT_LISTS_ID not in ids, name
        elif name.startswith(("apt: ", "dev: system")):
            assert {S.APT_CACHE_ID, S.APT_LISTS_ID} <= ids, name


def test_apt_steps_skip_fsync_only_while_they_run() -> None:
    script = S.apt_install(S.AptRequest(("htop",)))
    lines = script.splitlines()
    write = lines.index(f"echo force-unsafe-io > {S.DPKG_UNSAFE_IO}")
    trap = next(i for i, line in enumerate(lines) if line.startswith("trap "))
    install = next(i for i, line in enumerate(lines) if " install " in line)
    assert write < trap < install and S.DPKG_UNSAFE_IO in lines[trap]


def test_adding_a_package_changes_only_that_step_and_later(tmp_path: Path) -> None:
    a = ops(spec_of(tmp_path / "a", JUPYTER) if (tmp_path / "a").mkdir() is None else None)
    b_spec = (
        spec_of(tmp_path / "b", JUPYTER.replace('["numpy"]', '["numpy", "six"]'))
        if (tmp_path / "b").mkdir() is None
        else None
    )
    b = ops(b_spec)
    for name in [
        "base local/debian:bookworm",
        "dev: system packages (sshd, supervisor, sudo, git)",
        "apt: htop",
        "dev: user envd (uid 1000, gid 1000)",
        "python 3.11 and uv 0.13.9",
        "jupyterlab",
    ]:
        assert a[name]["Digest"] == b[name]["Digest"], name
    assert "python packages: numpy six" in b and "python packages: numpy" in a
    assert a["python packages: numpy"]["Digest"] != b["python packages: numpy six"]["Digest"]


def test_one_exec_per_call(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER + '\ninstall.python_packages(name=["six"])\ninstall.apt_packages(name=["tree"])')
    names = [s.name for s in compile(spec, OPTS).steps]
    assert "python packages: numpy" in names and "python packages: six" in names
    assert "apt: htop" in names and "apt: tree" in names


def _mounts(entry: dict) -> list[dict]:
    return entry["Op"]["exec"]["mounts"]


def test_cache_mounts_have_stable_ids(tmp_path: Path) -> None:
    o = ops(spec_of(tmp_path, JUPYTER))
    apt = {m["dest"]: m for m in _mounts(o["apt: htop"])}
    assert apt["/var/cache/apt"]["cacheOpt"] == {"ID": S.APT_CACHE_ID, "sharing": "LOCKED"}
    assert apt["/var/lib/apt/lists"]["cacheOpt"] == {"ID": S.APT_LISTS_ID, "sharing": "LOCKED"}
    pip = {m["dest"]: m for m in _mounts(o["python packages: numpy"])}
    assert pip[S.UV_CACHE_DIR]["cacheOpt"]["ID"] == S.UV_CACHE_ID
    other = ops(
        spec_of(tmp_path / "x", JUPYTER) if (tmp_path / "x").mkdir() is None else None, replace(OPTS, project="another")
    )
    assert {m["dest"]: m for m in _mounts(other["python packages: numpy"])}[S.UV_CACHE_DIR]["cacheOpt"][
        "ID"
    ] == S.UV_CACHE_ID


def test_ca_is_an_optional_secret_and_never_in_env(tmp_path: Path) -> None:
    o = ops(spec_of(tmp_path, JUPYTER))
    for name in ["apt: htop", "python packages: numpy", "jupyterlab"]:
        mounts = {m["dest"]: m for m in _mounts(o[name])}
        secret = mounts[S.CA_SECRET_PATH]
        assert secret["mountType"] == "SECRET" and secret["secretOpt"]["optional"] is True
        assert mounts[S.TLS_DIR]["mountType"] == "TMPFS"
        env = o[name]["Op"]["exec"]["meta"].get("env", [])
        assert not any(e.startswith(("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")) for e in env)


def test_ca_choice_does_not_change_the_graph(tmp_path: Path) -> None:
    """The CA is a session secret: with or without --ca-cert the LLB (so the cache) is the same."""
    spec = spec_of(tmp_path, JUPYTER)
    assert compile(spec, OPTS).definition().to_bytes() == compile(spec, OPTS).definition().to_bytes()
    assert compile(spec, OPTS).secrets == (S.CA_SECRET_ID,)


def test_requirements_and_wheels_only_send_those_files(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        'base(image="local/debian:bookworm", dev=True)\ninstall.python()\n'
        'install.python_packages(requirements="req/requirements.txt", local_wheels=["dist/x-1-py3-none-any.whl"])',
        {"req/requirements.txt": "six\n", "dist/x-1-py3-none-any.whl": "w", "unrelated.txt": "u"},
    )
    compiled = compile(spec, OPTS)
    assert dict(compiled.local_dirs) == {"context": "."}
    locals_ = [
        e
        for e in compiled.definition().to_json()
        if e["Op"].get("source", {}).get("identifier", "").startswith("local://")
    ]
    assert len(locals_) == 1
    include = json.loads(locals_[0]["Op"]["source"]["attrs"]["local.includepattern"])
    assert include == [
        "req/requirements.txt",
        "req/requirements.txt/**",
        "dist/x-1-py3-none-any.whl",
        "dist/x-1-py3-none-any.whl/**",
    ]
    args = compiled.definition().to_json()
    script = [e for e in args if "pip install" in json.dumps(e)][-1]["Op"]["exec"]["meta"]["args"][2]
    assert (
        f"-r {S.CONTEXT_MOUNT}/req/requirements.txt" in script
        and f"{S.CONTEXT_MOUNT}/dist/x-1-py3-none-any.whl" in script
    )


def test_pip_index_reaches_uv_and_pip_conf(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        JUPYTER + '\nconfig.pip_index(url="https://mirror.example/simple", extra_url="https://extra.example/simple")',
    )
    o = ops(spec)
    env = o["python packages: numpy"]["Op"]["exec"]["meta"]["env"]
    assert "UV_DEFAULT_INDEX=https://mirror.example/simple" in env and "UV_INDEX=https://extra.example/simple" in env
    assert (
        "--index-url https://mirror.example/simple" in o["python 3.11 and uv 0.13.9"]["Op"]["exec"]["meta"]["args"][2]
    )
    assert "pip index" in o


def test_python_mirror_setting(tmp_path: Path) -> None:
    o = ops(spec_of(tmp_path, JUPYTER), replace(OPTS, python_mirror="https://mirror.example/python-build-standalone"))
    assert (
        "UV_PYTHON_INSTALL_MIRROR=https://mirror.example/python-build-standalone"
        in o["python 3.11 and uv 0.13.9"]["Op"]["exec"]["meta"]["env"]
    )


def test_apt_source_replaces_sources_first(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER + '\nconfig.apt_source(source="deb http://mirror.example/debian bookworm main")')
    steps = [s.name for s in compile(spec, OPTS).steps]
    assert steps[1] == "apt source (config.apt_source)"
    text = json.dumps(ops(spec)["apt source (config.apt_source)"])
    assert "sources.list.d/*.sources" in text
    assert base64.b64encode(b"deb http://mirror.example/debian bookworm main\n").decode() in text


def test_image_config_dev(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        JUPYTER
        + '\nruntime.environ(env={"A": "1"}, extra_path=["/opt/x/bin"])\nruntime.expose(envd_port=9000, service="web")',
    )
    img = compile(spec, OPTS).image
    env = dict(e.split("=", 1) for e in img["env"])
    assert env["PATH"].split(":")[:3] == ["/opt/x/bin", f"{S.VENV}/bin", "/home/envd/.local/bin"]
    assert env["ENVD_WORKDIR"] == "/home/envd/proj" and env["A"] == "1"
    assert img["user"] == "envd" and img["working_dir"] == "/home/envd/proj"
    assert img["entrypoint"] == [D.ENTRYPOINT] and img["cmd"] == []
    assert img["exposed_ports"] == ["2222/tcp", "8888/tcp", "9000/tcp"]
    labels = img["labels"]
    assert Spec.from_json(labels["ai.envbuild.spec"]) == spec
    assert json.loads(labels["ai.envbuild.ports"]) == [
        {"name": "ssh", "port": 2222},
        {"name": "jupyter", "port": 8888},
        {"name": "web", "port": 9000},
    ]
    assert labels["ai.envbuild.owner"] == "1000:1000" and labels["ai.envbuild.dev"] == "true"


def test_image_config_serving_inherits_base(tmp_path: Path) -> None:
    base = BaseConfig(
        env=("PATH=/custom/bin:/usr/bin", "FOO=bar"), user="app", working_dir="/srv", entrypoint=("/init",)
    )
    spec = spec_of(tmp_path, 'base(image="local/debian:bookworm")\ninstall.python()')
    img = compile(spec, replace(OPTS, base_config=base)).image
    env = dict(e.split("=", 1) for e in img["env"])
    assert env["FOO"] == "bar" and env["PATH"] == f"{S.VENV}/bin:/custom/bin:/usr/bin"
    assert "user" not in img and "working_dir" not in img and "entrypoint" not in img
    spec2 = (
        spec_of(tmp_path / "e", 'base(image="x")\nconfig.entrypoint(args=["python", "app.py"])')
        if (tmp_path / "e").mkdir() is None
        else None
    )
    assert compile(spec2, OPTS).image["entrypoint"] == ["python", "app.py"]


def test_run_steps_in_call_order_as_envd(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER + '\nrun(commands=["echo one"])\nrun(commands=["echo two"], mount_host=True)')
    o = ops(spec)
    one, two = o["run: echo one"], o["run: echo two"]
    assert one["Op"]["exec"]["meta"]["user"] == "envd" and one["Op"]["exec"]["meta"]["cwd"] == "/home/envd/proj"
    assert one["Digest"] in json.dumps(two["Op"]["inputs"])
    assert any(m["dest"] == "/home/envd/proj" and not m.get("readonly") for m in _mounts(two))


def test_uid_zero_allows_key_login_for_envd() -> None:
    assert "PermitRootLogin prohibit-password" in D.sshd_config(0, {})
    assert "PermitRootLogin no" in D.sshd_config(1000, {})
    assert "useradd -o -u 0" in S.user_setup(0, 0, "/bin/bash")


EVERY_BUILTIN = """base(image="ubuntu:22.04", dev=DEV)
shell("zsh")
install.python(version="3.11")
install.conda(use_mamba=True)
install.conda_packages(name=["numpy"], channel=["conda-forge"])
install.uv(python_version="3.12")
install.pixi(use_pixi_mirror=True, pypi_index="https://pypi.example/simple")
install.cuda(version="12.1.1", cudnn="8")
install.r_lang()
install.r_packages(name=["ggplot2"])
install.julia()
install.julia_packages(name=["Flux"])
install.rust(version="1.80.0")
install.go(version="1.22.5")
install.nodejs(version="20.15.0")
install.codex()
install.apt_packages(name=["htop"])
install.python_packages(name=["six --index-url https://pypi.example/simple"], requirements="requirements.txt")
install.vscode_extensions(name=["ms-python.python"])
config.pip_index(url="https://pypi.example/simple", extra_url="https://extra.example/simple", trust=True)
config.conda_channel(channel="channels:\\n  - conda-forge\\n")
config.apt_source(source="deb http://deb.debian.org/debian bookworm main")
config.cran_mirror(url="https://cran.example")
config.julia_pkg_server(url="https://pkg.julialang.org")
config.jupyter(token="t", port=0)
config.rstudio_server()
config.gpu(count=1)
config.shm_size(size=1024)
ENTRYPOINT
config.repo(url="https://github.com/o/r", description="d")
config.owner(uid=1000, gid=1000)
git_config(name="n", email="e@x", editor="vim")
run(commands=["echo hi"], mount_host=True)
io.copy(source="src", target="/")
io.http(url="https://example.com/a.bin", checksum="sha256:" + "a" * 64, filename="a.bin")
runtime.command(commands={"go version": "go version"})
runtime.daemon(commands=[["sleep", "1000"]])
runtime.init(commands=["echo init"])
runtime.expose(envd_port=8080, host_port=0, service="web")
runtime.environ(env={"A": "1"}, extra_path=["/opt/x"])
runtime.mount(host_path=data.envd("d"), envd_path="~/d")"""


@pytest.mark.parametrize("dev", [True, False])
def test_what_evaluation_accepts_compiles(tmp_path: Path, dev: bool) -> None:
    """``debug spec`` and ``debug llb`` refuse the same files: every builtin a build file may call
    (``include`` and ``load`` only fetch other files) compiles, in a development and a serving image."""
    from frontend.builtins import REGISTRY

    body = EVERY_BUILTIN.replace("DEV", str(dev)).replace(
        "ENTRYPOINT", "" if dev else 'config.entrypoint(args=["python3", "-m", "http.server"])'
    )
    called = {line.split("(")[0] for line in body.splitlines()} | {"data.envd", "config.entrypoint"}
    assert set(REGISTRY) - called == {"include"}
    spec = spec_of(tmp_path, body, {"requirements.txt": "numpy\n", "src/a.py": ""})
    compiled = compile(spec, OPTS)
    assert compiled.definition().to_json()
    names = [s.name for s in compiled.steps]
    assert any(n.startswith("tools: download codex rust-v") for n in names)


def test_entrypoint_with_dev_is_a_usage_error(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 'base(image="x")\nconfig.entrypoint(args=["x"])')
    with pytest.raises(UsageError, match="only for images built"):
        compile(replace(spec, base=replace(spec.base, dev=True)), OPTS)


def test_proxy_from_user_environment(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER)
    compiled = compile(spec, replace(OPTS, proxy={"HTTPS_PROXY": "http://proxy.example:3128"}))
    assert "proxy.example" in json.dumps(compiled.definition().to_json())
    assert dict(compiled.proxy) == {"HTTPS_PROXY": "http://proxy.example:3128"}


def test_no_cache_busts_exec_keys_but_keeps_cache_mount_ids(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER)
    a, b = ops(spec), ops(spec, replace(OPTS, cache_bust="x1"))
    assert a["python packages: numpy"]["Digest"] != b["python packages: numpy"]["Digest"]
    assert a["base local/debian:bookworm"]["Digest"] == b["base local/debian:bookworm"]["Digest"]
    assert not b["python packages: numpy"].get("OpMetadata", {}).get("ignore_cache")


def test_services_files_follow_the_contract() -> None:
    files = D.services(
        workdir="/home/envd/p",
        inits=[["echo a"]],
        daemons=[["python", "-m", "http.server"]],
        jupyter=True,
        allow_root=False,
    )
    assert set(files) == {
        f"{D.SERVICES}/sshd.conf",
        f"{D.SERVICES}/init_0.conf",
        f"{D.ETC}/init_0.sh",
        f"{D.SERVICES}/daemon_0.conf",
        f"{D.ETC}/daemon_0.sh",
        f"{D.SERVICES}/jupyter.conf",
        D.JUPYTER_LAUNCHER,
    }
    assert "-p 2222" in files[f"{D.SERVICES}/sshd.conf"][0]
    assert D.WAIT_INIT in files[f"{D.SERVICES}/jupyter.conf"][0]
    assert "\n" not in files[f"{D.SERVICES}/init_0.conf"][0].split("command=")[1].split("\n")[0] + ""


def test_dev_step_saves_host_key_generation_and_keeps_no_keys(tmp_path: Path) -> None:
    script = ops(spec_of(tmp_path, JUPYTER))["dev: system packages (sshd, supervisor, sudo, git)"]["Op"]["exec"][
        "meta"
    ]["args"][2]
    stand_ins = script.index(": > /etc/ssh/ssh_host_${t}_key")
    install = script.index("openssh-server")
    assert stand_ins < install < script.index("rm -f /etc/ssh/ssh_host_*")


def _mkfiles(spec: Spec) -> dict[str, str]:
    out = {}
    for entry in compile(spec, OPTS).definition().to_json():
        for action in entry.get("Op", {}).get("file", {}).get("actions", []):
            mk = action.get("mkfile")
            if mk:
                out[mk["path"]] = base64.b64decode(mk.get("data", "")).decode()
    return out


@pytest.mark.parametrize("conda", [False, True], ids=["venv", "conda"])
def test_jupyter_runs_on_the_python_it_was_installed_into(tmp_path: Path, conda: bool) -> None:
    lines = [
        'base(image="local/debian:bookworm", dev=True)',
        *(["install.conda()"] if conda else []),
        'install.python(version="3.11")',
        "config.jupyter()",
    ]
    spec = spec_of(tmp_path, "\n".join(lines))
    program = _mkfiles(spec)[f"{D.SERVICES}/jupyter.conf"]
    command = next(line for line in program.splitlines() if line.startswith("command="))
    python, launcher = command.removeprefix("command=").split()[:2]
    assert launcher == D.JUPYTER_LAUNCHER
    assert python == ("/opt/conda/envs/envd/bin/python" if conda else f"{S.VENV}/bin/python")


# ---- locked builds: every transaction installs the lock's versions --------------------------------

H = "sha256:" + "1" * 64
LOCKED_PYTHON = f"numpy==2.0.0 \\\n    --hash={H}\njupyterlab==4.6.6 \\\n    --hash={H}\n"


def pins(**kw: object) -> Pins:
    """Pins for the JUPYTER spec (``kw`` overrides)."""

    apt = {
        "dev": AptPin(tuple(S.DEV_APT_PACKAGES), ("curl=7.88.1-10+deb12u14", "git=1:2.39.5-0+deb12u2")),
        "apt-1": AptPin(("htop",), ("htop=3.2.2-2", "libnl-3-200=3.7.0-0.2+b1")),
        "tools-python": AptPin(S.PYTHON_APT, ("python3=3.11.2-1+b1",)),
        "python3": AptPin(("python3",), ()),
    }
    return Pins(**{"apt": apt, "python": LOCKED_PYTHON, "python_version": "3.11.2", **kw})  # type: ignore[arg-type]


def exec_script(o: dict[str, dict], name: str) -> str:
    return o[name]["Op"]["exec"]["meta"]["args"][-1]


def test_the_compiler_records_every_transaction_for_the_lock(tmp_path: Path) -> None:
    compiled = compile(spec_of(tmp_path, JUPYTER), OPTS)
    assert [(a.key, a.names) for a in compiled.installs.apt] == [
        ("dev", S.DEV_APT_PACKAGES),
        ("apt-1", ("htop",)),
        ("tools-python", S.PYTHON_APT),
        ("python3", ("python3",)),
    ]
    python = compiled.installs.python
    assert python is not None and python.requirements == (S.JUPYTER_REQUIREMENT, "numpy")
    assert python.python == f"{S.VENV}/bin/python" and (python.uid, python.gid) == (1000, 1000)


def test_a_locked_build_installs_the_locked_versions_and_checks_apts_plan(tmp_path: Path) -> None:
    o = ops(spec_of(tmp_path, JUPYTER), replace(OPTS, pins=pins()))
    htop = exec_script(o, "apt: htop")
    assert (
        "install --no-install-recommends -o APT::Keep-Downloaded-Packages=true htop=3.2.2-2 libnl-3-200=3.7.0-0.2+b1\n"
        in htop
    )
    assert "printf '%s\\n' htop=3.2.2-2 libnl-3-200=3.7.0-0.2+b1 > /run/envbuild-tls/apt/locked" in htop
    assert htop.index("apt-get $APT_TLS -s -q install") < htop.index("apt-get $APT_TLS -y -q install")
    runtime = exec_script(o, "python 3.11 and uv 0.13.9")
    assert "want=3.11.2" in runtime and "venv --python" in runtime and "--seed" not in runtime
    names = list(o)
    assert "jupyterlab" not in names and not any(n.startswith("python packages: numpy") for n in names)
    sync = exec_script(o, "python packages: 2 from the lock")
    assert "uv pip sync --require-hashes /run/envbuild-lock/python.txt" in sync and "UV_COMPILE_BYTECODE=1" in sync
    assert "setpriv --reuid=1000" in sync


def test_locked_refuses_a_transaction_the_lock_does_not_cover(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER.replace('["htop"]', '["htop", "jq"]'))
    with pytest.raises(UsageError, match=r"--locked: the lock does not cover the apt packages of step 'apt: htop jq'"):
        compile(spec, replace(OPTS, pins=pins(strict=True)))
    compiled = compile(spec, replace(OPTS, pins=pins()))
    assert any("installed unpinned" in n and "'apt: htop jq'" in n for n in compiled.notes)
    with pytest.raises(UsageError, match="--locked: the lock does not cover the Python packages"):
        compile(spec_of(tmp_path, JUPYTER), replace(OPTS, pins=pins(strict=True, python=None)))


def test_a_locked_build_refuses_options_one_resolution_cannot_honour(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, JUPYTER.replace('["numpy"]', '["numpy", "--no-deps"]'))
    assert compile(spec, OPTS).installs.python.problems  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"build\.envd:5:5: --no-deps .*cannot be used with a lock"):
        compile(spec, replace(OPTS, pins=pins()))


def test_offline_locked_python_packages_come_from_the_wheelhouse(tmp_path: Path) -> None:
    o = ops(spec_of(tmp_path, JUPYTER), replace(OPTS, pins=pins(wheelhouse=".envbuild/wheels")))
    sync = exec_script(o, "python packages: 2 from the lock")
    assert "--no-index --find-links /run/envbuild-context/.envbuild/wheels" in sync


def test_a_locked_conda_environment_is_installed_from_its_explicit_file(tmp_path: Path) -> None:
    body = (
        'base(image="local/debian:bookworm", dev=False)\ninstall.conda()\ninstall.python(version="3.11")\n'
        'install.conda_packages(name=["greet"], channel=["./chan"])\ninstall.conda_packages(name=["numpy"])'
    )
    spec = spec_of(tmp_path, body, {"chan/noarch/repodata.json": "{}"})
    request = compile(spec, OPTS).installs.conda
    assert request is not None and request.specs == ("python=3.11", "greet", "numpy")
    assert request.args == ("-c", "file:///run/envbuild-conda-channels/chan")
    explicit = (
        "@EXPLICIT\nfile:///run/envbuild-conda-channels/chan/noarch/greet-2.1-0.tar.bz2#sha256:" + "5" * 64 + "\n"
    )
    o = ops(spec, replace(OPTS, pins=pins(conda=explicit, python=None)))
    step = next(n for n in o if n.startswith("conda: environment envd"))
    assert step == "conda: environment envd, 1 packages from the lock"
    assert "conda create -y -p /opt/conda/envs/envd --file /run/envbuild-lock/conda.txt" in exec_script(o, step)
    assert not any(n.startswith("conda packages:") for n in o)


def test_a_locked_build_keeps_the_index_options_of_the_package_names(tmp_path: Path) -> None:
    """The options written among a call's names (``torch --index-url URL``) reach the lock's
    ``uv pip sync`` too; a requirements file rewritten for uv is what the resolution reads."""
    from envbuild.compiler.options import Pins

    spec = spec_of(
        tmp_path,
        'base(image="local/debian:bookworm")\n'
        'install.python_packages(name=["six --index-url https://idx.example/simple"], requirements="r.txt")',
        {"r.txt": "idna --extra-index-url https://extra.example/simple\n"},
    )
    pins = Pins(python="six==1.16.0 \\\n    --hash=sha256:" + "a" * 64 + "\n", python_version="3.11.2")
    compiled = compile(spec, replace(OPTS, pins=pins))
    sync = next(
        e["Op"]["exec"]["meta"]["args"][2]
        for e in compiled.definition().to_json()
        if "from the lock" in e.get("OpMetadata", {}).get("description", {}).get("llb.customname", "")
    )
    assert "--index-url https://idx.example/simple" in sync
    assert compiled.installs.python is not None
    assert "--index-url" in compiled.installs.python.options
    assert "requirements" in {s.kind for s in compiled.steps}
