"""Every envd v1 builtin: parameter names, order (positional forms) and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import frontend
from frontend import spec as S
from frontend.builtins import REGISTRY


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


P2 = S.Pos("build.envd", 2, 5)


def test_empty_build_gives_envd_defaults(ev) -> None:
    s = ev(body("pass"))
    assert s.base == S.Base("ubuntu:22.04", False, None)
    assert s.shell == S.Shell("bash", None)
    assert s.python is None and s.cuda is None and s.jupyter is None
    assert s.runs == () and s.apt_packages == () and s.runtime == S.Runtime()
    assert s.target == "build" and s.schema == S.SCHEMA_VERSION
    assert [f.label for f in s.source_files] == ["build.envd"]


# (call, expected spec attribute, expected value). Line 2 col 5 is the call's position.
CASES: list[tuple[str, str, object]] = [
    ("base()", "base", S.Base("ubuntu:22.04", False, P2)),
    ('base("debian:12", True)', "base", S.Base("debian:12", True, P2)),
    ('base(image="debian:12", dev=True)', "base", S.Base("debian:12", True, P2)),
    ("shell()", "shell", S.Shell("bash", P2)),
    ('shell("zsh")', "shell", S.Shell("zsh", P2)),
    ('shell(name="FISH")', "shell", S.Shell("fish", P2)),
    ('run(["a", "b"])', "runs", (S.Run(("a", "b"), False, P2),)),
    ('run(commands=["a"], mount_host=True)', "runs", (S.Run(("a",), True, P2),)),
    ('run(["a"], True)', "runs", (S.Run(("a",), True, P2),)),
    ("git_config()", "git_config", S.GitConfig("", "", "", P2)),
    ('git_config("n", "e@x", "vim")', "git_config", S.GitConfig("n", "e@x", "vim", P2)),
    ('git_config(name=None, email="e", editor=None)', "git_config", S.GitConfig("", "e", "", P2)),
    ("install.python()", "python", S.Python("3.11", P2)),
    ('install.python("3.10")', "python", S.Python("3.10", P2)),
    ('install.python(version="3")', "python", S.Python("3.11", P2)),
    ('install.python(version="")', "python", S.Python("3.11", P2)),
    ("install.conda()", "conda", S.Conda(False, P2)),
    ("install.conda(True)", "conda", S.Conda(True, P2)),
    ("install.conda(use_mamba=True)", "conda", S.Conda(True, P2)),
    ("install.uv()", "uv", S.Uv("3.11", P2)),
    ('install.uv(python_version="3.12")', "uv", S.Uv("3.12", P2)),
    ("install.pixi()", "pixi", S.Pixi(False, None, P2)),
    ('install.pixi(True, "https://pypi.example/simple")', "pixi", S.Pixi(True, "https://pypi.example/simple", P2)),
    ("install.r_lang()", "r_lang", S.RLang(P2)),
    ("install.julia()", "julia", S.Julia(P2)),
    ("install.rust()", "rust", S.Rust(None, P2)),
    ('install.rust(version="1.80.0")', "rust", S.Rust("1.80.0", P2)),
    ("install.go()", "go", S.Go("1.25.3", P2)),
    ('install.go("1.22.1")', "go", S.Go("1.22.1", P2)),
    ("install.nodejs()", "nodejs", S.NodeJS("25.1.0", P2)),
    ('install.nodejs(version="v20.1.0")', "nodejs", S.NodeJS("20.1.0", P2)),
    ("install.codex()", "codex", S.Codex(None, P2)),
    ('install.codex("rust-v0.98.0")', "codex", S.Codex("rust-v0.98.0", P2)),
    ("install.apt_packages()", "apt_packages", ()),
    ('install.apt_packages(["git", "vim"])', "apt_packages", (S.AptPackages(("git", "vim"), P2),)),
    ('install.apt_packages(name=["libc6=2.36-9"])', "apt_packages", (S.AptPackages(("libc6=2.36-9",), P2),)),
    ("install.python_packages()", "python_packages", ()),
    (
        'install.python_packages(["numpy==2.0", "pandas"])',
        "python_packages",
        (S.PythonPackages(("numpy==2.0", "pandas"), None, (), P2),),
    ),
    ('install.r_packages(["ggplot2"])', "r_packages", (S.RPackages(("ggplot2",), P2),)),
    ('install.r_packages(name=["a", "b"])', "r_packages", (S.RPackages(("a", "b"), P2),)),
    ('install.julia_packages(name=["Flux"])', "julia_packages", (S.JuliaPackages(("Flux",), P2),)),
    (
        'install.vscode_extensions(["ms-python.python"])',
        "vscode_extensions",
        (S.VSCodeExtensions(("ms-python.python",), P2),),
    ),
    ("config.jupyter()", "jupyter", S.Jupyter("", 0, P2)),
    ('config.jupyter("tok", 8889)', "jupyter", S.Jupyter("tok", 8889, P2)),
    ('config.jupyter(token="t", port=0)', "jupyter", S.Jupyter("t", 0, P2)),
    ('config.pip_index("https://m/simple")', "pip_index", S.PipIndex("https://m/simple", "", False, P2)),
    (
        'config.pip_index(url="https://m/simple", extra_url="https://x/simple", trust=True)',
        "pip_index",
        S.PipIndex("https://m/simple", "https://x/simple", True, P2),
    ),
    ('config.conda_channel("channels: [conda-forge]")', "conda_channel", S.Text("channels: [conda-forge]", P2)),
    (
        'config.apt_source(source="deb http://m/debian bookworm main")',
        "apt_source",
        S.Text("deb http://m/debian bookworm main", P2),
    ),
    ('config.cran_mirror("https://cloud.r-project.org")', "cran_mirror", S.Url("https://cloud.r-project.org", P2)),
    (
        'config.julia_pkg_server(url="https://pkg.julialang.org")',
        "julia_pkg_server",
        S.Url("https://pkg.julialang.org", P2),
    ),
    ("config.rstudio_server()", "rstudio_server", S.RStudioServer(P2)),
    ("config.gpu(2)", "gpu", S.Gpu(2, P2)),
    ("config.gpu(count=-1)", "gpu", S.Gpu(-1, P2)),
    ("config.shm_size(1024)", "shm_size", S.ShmSize(1024, P2)),
    ("config.shm_size(size=64)", "shm_size", S.ShmSize(64, P2)),
    ('config.entrypoint(["date", "-u"])', "entrypoint", S.Entrypoint(("date", "-u"), P2)),
    ('config.entrypoint(args=["x"])', "entrypoint", S.Entrypoint(("x",), P2)),
    ('config.repo("https://github.com/o/r")', "repo", S.Repo("https://github.com/o/r", "", P2)),
    ('config.repo(url="u", description="d")', "repo", S.Repo("u", "d", P2)),
    ("config.owner(1000, 1000)", "owner", S.Owner(1000, 1000, P2)),
    ("config.owner(uid=0, gid=65535)", "owner", S.Owner(0, 65535, P2)),
    ('io.http("https://e.com/a.bin")', "http", (S.HttpDownload("https://e.com/a.bin", "", "", P2),)),
    (
        'io.http(url="https://e.com/a", checksum="sha256:' + "a" * 64 + '", filename="b")',
        "http",
        (S.HttpDownload("https://e.com/a", "sha256:" + "a" * 64, "b", P2),),
    ),
    (
        'io.copy("/usr/bin/tool", "/opt/tool", "alpine:3")',
        "copies",
        (S.Copy("/usr/bin/tool", "/opt/tool", "alpine:3", P2),),
    ),
]


@pytest.mark.parametrize(("call", "attr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_builtin_forms_and_defaults(ev, call: str, attr: str, expected: object) -> None:
    assert getattr(ev(body(call)), attr) == expected


RUNTIME_CASES: list[tuple[str, str, object]] = [
    ('runtime.command({"train": "python t.py"})', "commands", (S.Command("train", "python t.py", P2),)),
    ("runtime.command()", "commands", ()),
    ('runtime.daemon([["a", "-x"], ["b"]])', "daemons", (S.Daemon(("a", "-x"), P2), S.Daemon(("b",), P2))),
    ('runtime.init(commands=["mkdir -p /x"])', "inits", (S.Init(("mkdir -p /x",), P2),)),
    ("runtime.expose(8080)", "exposes", (S.Expose(8080, 0, "", "127.0.0.1", P2),)),
    ('runtime.expose(8080, 9000, "web", "0.0.0.0")', "exposes", (S.Expose(8080, 9000, "web", "0.0.0.0", P2),)),
    (
        'runtime.expose(envd_port=1, host_port=65535, service="s", listen_addr="::1")',
        "exposes",
        (S.Expose(1, 65535, "s", "::1", P2),),
    ),
    ('runtime.environ({"A": "1"}, ["/opt/bin"])', "environ", (S.EnvVar("A", "1", P2),)),
    ('runtime.environ(extra_path=["/x"])', "extra_path", ("/x",)),
    ("runtime.environ()", "environ", ()),
    ('runtime.mount("/data", "/home/envd/data")', "mounts", (S.Mount("/data", "/home/envd/data", False, P2),)),
    (
        'runtime.mount(host_path=data.envd("mnist"), envd_path="~/mnist")',
        "mounts",
        (S.Mount("~/.cache/envbuild/data/mnist", "~/mnist", True, P2),),
    ),
    (
        'runtime.mount(host_path=data.path.huggingface, envd_path="~/.cache/huggingface")',
        "mounts",
        (S.Mount("~/.cache/huggingface", "~/.cache/huggingface", False, P2),),
    ),
    ('runtime.mount(data.path.dgl, "/root/.dgl")', "mounts", (S.Mount("~/.dgl", "/root/.dgl", False, P2),)),
]


@pytest.mark.parametrize(("call", "attr", "expected"), RUNTIME_CASES, ids=[c[0] for c in RUNTIME_CASES])
def test_runtime_builtins(ev, call: str, attr: str, expected: object) -> None:
    assert getattr(ev(body(call)).runtime, attr) == expected


def test_every_registered_builtin_is_covered() -> None:
    covered = {c[0].split("(")[0] for c in CASES + RUNTIME_CASES}
    covered |= {"install.cuda", "install.conda_packages", "install.python_packages", "io.copy", "include", "data.envd"}
    assert set(REGISTRY) <= covered, set(REGISTRY) - covered


def test_file_inputs(ev, tmp_path: Path) -> None:
    s = ev(
        body(
            "install.conda()",
            'install.python_packages(name=["x"], requirements="req/requirements.txt",'
            ' local_wheels=["w/a-1-py3-none-any.whl"])',
            'install.conda_packages(env_file="environment.yml")',
            'install.conda_packages(["numpy"], ["conda-forge"])',
            'io.copy(source="src", target="/app")',
            'io.copy(host_path="./README.md", envd_path="/README.md")',
        ),
        files={
            "req/requirements.txt": "six\n",
            "w/a-1-py3-none-any.whl": "",
            "environment.yml": "name: e\n",
            "src/x.py": "",
            "README.md": "",
        },
    )
    assert s.python_packages == (
        S.PythonPackages(
            ("x",),
            "req/requirements.txt",
            ("w/a-1-py3-none-any.whl",),
            S.Pos("build.envd", 3, 5),
            requirements_files=(S.RequirementsFile("req/requirements.txt"),),
        ),
    )
    assert s.conda_packages == (
        S.CondaPackages((), (), "environment.yml", S.Pos("build.envd", 4, 5)),
        S.CondaPackages(("numpy",), ("conda-forge",), None, S.Pos("build.envd", 5, 5)),
    )
    assert [c.source for c in s.copies] == ["src", "README.md"]
    assert s.inputs == ("req/requirements.txt", "w/a-1-py3-none-any.whl", "environment.yml", "src", "README.md")


def test_repeated_calls_accumulate_and_runs_keep_order(ev) -> None:
    s = ev(
        body(
            'run(["1"])',
            'install.apt_packages(["a"])',
            'run(["2"])',
            'install.apt_packages(["b"])',
            'run(["3"])',
            'install.python("3.10")',
            'install.python("3.12")',
        )
    )
    assert [r.commands for r in s.runs] == [("1",), ("2",), ("3",)]
    assert [a.names for a in s.apt_packages] == [("a",), ("b",)]
    assert s.python == S.Python("3.12", S.Pos("build.envd", 8, 5))


def test_conda_channel_order_does_not_matter(ev) -> None:
    before = ev(body('config.conda_channel("channels: [a]")', "install.conda()"))
    after = ev(body("install.conda()", 'config.conda_channel("channels: [a]")'))
    assert before.conda_channel.text == after.conda_channel.text == "channels: [a]"
    assert before.warnings == after.warnings == ()


def test_top_level_calls_record_and_function_selection(ev, tmp_path: Path) -> None:
    src = 'install.apt_packages(["top"])\ndef build():\n    install.python()\ndef gpu():\n    install.cuda("11.8.0")\n'
    s = ev(src)
    assert s.apt_packages[0].names == ("top",) and s.cuda is None and s.target == "build"
    g = ev(src, function="gpu")
    assert g.cuda is not None and g.python is None and g.target == "gpu"
    g2 = frontend.evaluate(f"{tmp_path}/build.envd:gpu", user_config=False)
    assert g2 == g


def test_cuda_resolution_follows_dev_and_base(ev) -> None:
    dev = ev(body("base(dev=True)", 'install.cuda(version="11.8.0")'))
    assert dev.cuda == S.Cuda(
        "11.8.0",
        "8",
        "docker.io/nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04",
        "https://download.pytorch.org/whl/cu118",
        S.Pos("build.envd", 3, 5),
    )
    assert dev.image == dev.cuda.image and dev.gpu_enabled
    run = ev(body('install.cuda("12.8.1")', 'base(image="ubuntu:24.04")'))
    assert run.cuda.image == "docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
    assert run.cuda.torch_index == "https://download.pytorch.org/whl/cu128"
    plain = ev(body('install.cuda("12.4.1", cudnn="")'))
    assert plain.cuda.image == "docker.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    other = ev(body('base(image="debian:12")', 'install.cuda("12.1")'))
    assert other.cuda.version == "12.1.1"
    assert any("Ubuntu 22.04" in w.message for w in other.warnings)
    assert any("resolved to 12.1.1" in w.message for w in other.warnings)


def test_data_envd_returns_managed_path(ev) -> None:
    out: list[str] = []
    ev(body('print(data.envd("x"), data.path.huggingface)'), on_print=out.append)
    assert out == ["~/.cache/envbuild/data/x ~/.cache/huggingface"]


def test_build_context_dir_global(ev, tmp_path: Path) -> None:
    out: list[str] = []
    ev(body("print(_build_context_dir)"), on_print=out.append)
    assert out == [str(tmp_path.resolve())]


def test_print_goes_to_stderr_not_stdout(ev, capfd: pytest.CaptureFixture[str]) -> None:
    ev(body('print("hello", 1, [True, None], {"a": "b"})'), on_print=None)
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == 'hello 1 [True, None] {"a": "b"}\n'


def test_starlark_features_envd_files_use(ev) -> None:
    src = (
        'PKGS = ["a", "b"]\n'
        "def pkgs(extra = []):\n"
        "    return PKGS + [p.upper() for p in extra if p]\n"
        "def build():\n"
        '    names = pkgs(extra = ["c", ""])\n'
        "    for i, n in enumerate(names):\n"
        "        if i % 2 == 0:\n"
        "            install.apt_packages(name = [n.lower()])\n"
        '    f = lambda v: "3.%d" % v\n'
        "    install.python(version = f(11))\n"
        '    run(commands = ["echo {}".format(len(names))])\n'
    )
    s = ev(src)
    assert [a.names for a in s.apt_packages] == [("a",), ("c",)]
    assert s.python.version == "3.11"
    assert s.runs[0].commands == ("echo 3",)


def test_config_entrypoint_calls_add_up_as_in_envd(ev) -> None:
    s = ev(body('config.entrypoint(["python3", "serve.py"])', 'config.entrypoint(args=["--port", "8080"])'))
    assert s.entrypoint == S.Entrypoint(("python3", "serve.py", "--port", "8080"), P2)
