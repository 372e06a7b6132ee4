"""Logins in ``config.apt_source``, ``config.conda_channel`` and ``install.conda_packages(channel=...)``
reach only the steps that use them, as session secrets: never a layer, a step's command or env, the
LLB or a label (`envbuild.compiler.credentials`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import frontend
from envbuild.compiler import BaseConfig, CompileOptions
from envbuild.compiler import credentials as C
from envbuild.compiler.compile import CompiledBuild, compile
from envbuild.errors import UsageError
from frontend.spec import Spec

DEBIAN = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
OPTS = CompileOptions(project="proj", owner=(1000, 1000), base_config=DEBIAN, context_dir="/host/proj")

SECRETS = ("pw-apt-1", "pw-apt-2", "pw-conda-3", "tk-conda-4", "pw-conda-5", "alice", "bob", "carol", "dan")
BUILD = """\
def build():
    base(image="local/debian:bookworm", dev=True)
    config.apt_source(source="deb https://alice:pw-apt-1@apt.example.com/debian bookworm main\\n"
                      + "deb [trusted=yes] http://bob:pw-apt-2@deb.example.org/debian bookworm main\\n")
    install.apt_packages(name=["jq"])
    install.python()
    install.python_packages(name=["rich"])
    install.conda()
    config.conda_channel(channel="channels:\\n  - https://carol:pw-conda-3@conda.example.com/private\\n"
                         + "  - https://conda.anaconda.org/t/tk-conda-4/mychan\\n")
    install.conda_packages(name=["numpy"], channel=["https://dan:pw-conda-5@other.example.com/ch", "bioconda"])
"""


def spec_of(tmp_path: Path, text: str = BUILD) -> Spec:
    (tmp_path / "build.envd").write_text(text)
    return frontend.evaluate(tmp_path, user_config=False)


@pytest.fixture
def compiled(tmp_path: Path) -> CompiledBuild:
    return compile(spec_of(tmp_path), OPTS)


def execs(compiled: CompiledBuild) -> dict[str, dict]:
    out = {}
    for entry in compiled.definition().to_json():
        if "exec" in entry["Op"]:
            out[entry["OpMetadata"]["description"]["llb.customname"]] = entry["Op"]["exec"]
    return out


def secret_mounts(ex: dict) -> dict[str, dict]:
    return {m["dest"]: m for m in ex["mounts"] if m.get("mountType") == "SECRET"}


def test_no_login_reaches_the_llb_the_image_config_or_a_label(compiled: CompiledBuild) -> None:
    everything = compiled.definition().to_bytes() + json.dumps(compiled.definition().to_json()).encode()
    image = json.dumps(dict(compiled.image), default=str)
    for secret in SECRETS:
        assert secret.encode() not in everything, f"{secret} is in the LLB (a file, a command or an env)"
        assert secret not in image, f"{secret} is in the image config or a label"
    assert not any("stored in the image" in n for n in compiled.notes)


def test_the_image_files_name_the_sources_without_logins(compiled: CompiledBuild) -> None:
    definition = compiled.definition().to_bytes()
    assert (
        b"deb https://apt.example.com/debian bookworm main\n"
        b"deb [trusted=yes] http://deb.example.org/debian bookworm main\n" in definition
    ), "/etc/apt/sources.list should keep the sources without their logins"
    assert b"channels:\n  - https://conda.example.com/private\n  - https://conda.anaconda.org/mychan\n" in definition
    install = next(ex for name, ex in execs(compiled).items() if name.startswith("conda packages: numpy"))
    assert "-c https://other.example.com/ch -c bioconda numpy" in install["meta"]["args"][-1]


def test_the_label_shows_that_logins_were_given_not_which(compiled: CompiledBuild) -> None:
    label = Spec.from_json(compiled.labels["ai.envbuild.spec"])
    assert label.apt_source is not None and "https://***@apt.example.com/debian" in label.apt_source.text
    assert label.conda_channel is not None and "https://conda.anaconda.org/t/***/mychan" in label.conda_channel.text
    assert label.conda_packages[0].channels == ("https://***@other.example.com/ch", "bioconda")


@pytest.mark.parametrize("conda", [True, False], ids=["conda", "venv"])
def test_apt_gets_the_logins_as_auth_conf_on_every_step_that_runs_apt(tmp_path: Path, conda: bool) -> None:
    """apt_auth.conf(5): an entry without a scheme matches https only, so http is named. The tool
    stages (py-rattler with conda, uv and CPython without) run apt too."""
    text = BUILD if conda else "\n".join(line for line in BUILD.splitlines() if "conda" not in line) + "\n"
    compiled = compile(spec_of(tmp_path, text), OPTS)
    assert compiled.secret_values[C.APT_AUTH_SECRET_ID] == (
        b"machine apt.example.com/debian login alice password pw-apt-1\n"
        b"machine http://deb.example.org/debian login bob password pw-apt-2\n"
    )
    assert C.APT_AUTH_SECRET_ID in compiled.secrets
    apt_steps = {name: ex for name, ex in execs(compiled).items() if "apt-get" in ex["meta"]["args"][-1]}
    assert {"dev: system packages (sshd, supervisor, sudo, git)", "apt: jq"} <= set(apt_steps)
    tool = "tools: python3-venv" if conda else "python 3"
    assert any(name.startswith(tool) for name in apt_steps), f"{tool}...: a tool stage that runs apt"
    for name, ex in execs(compiled).items():
        mount = secret_mounts(ex).get(C.APT_AUTH_PATH)
        if name in apt_steps:
            assert mount is not None, f"step {name!r} runs apt without the apt_source logins"
            assert mount["secretOpt"]["ID"] == C.APT_AUTH_SECRET_ID and mount["secretOpt"]["mode"] == 0o400
        else:
            assert mount is None, f"step {name!r} runs no apt but mounts the apt logins"
    assert compiled.installs.apt
    for install in compiled.installs.apt:  # what `envbuild lock` runs apt with
        assert any(m.dest == C.APT_AUTH_PATH for m in install.mounts), install.step


def test_conda_gets_the_logins_as_rattlers_auth_file_on_every_conda_step(compiled: CompiledBuild) -> None:
    assert json.loads(compiled.secret_values[C.CONDA_AUTH_SECRET_ID]) == {
        "conda.example.com": {"BasicHTTP": {"username": "carol", "password": "pw-conda-3"}},
        "conda.anaconda.org": {"CondaToken": "tk-conda-4"},
        "other.example.com": {"BasicHTTP": {"username": "dan", "password": "pw-conda-5"}},
    }
    conda_steps = [ex for name, ex in execs(compiled).items() if name.startswith(("conda: environment", "conda pack"))]
    assert len(conda_steps) == 2
    for ex in conda_steps:
        assert f"RATTLER_AUTH_FILE={C.CONDA_AUTH_PATH}" in ex["meta"]["env"]
        assert secret_mounts(ex)[C.CONDA_AUTH_PATH]["secretOpt"]["ID"] == C.CONDA_AUTH_SECRET_ID
    others = [ex for name, ex in execs(compiled).items() if not name.startswith(("conda: environment", "conda pack"))]
    assert not any(C.CONDA_AUTH_PATH in secret_mounts(ex) for ex in others)
    request = compiled.installs.conda  # what `envbuild lock` solves with
    assert request is not None and request.env["RATTLER_AUTH_FILE"] == C.CONDA_AUTH_PATH
    assert any(m.dest == C.CONDA_AUTH_PATH for m in request.mounts)


def test_sources_without_logins_need_no_secret(tmp_path: Path) -> None:
    compiled = compile(
        spec_of(
            tmp_path,
            'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
            '    config.apt_source(source="deb https://apt.example.com/debian bookworm main\\n")\n'
            '    install.apt_packages(name=["jq"])\n    install.conda()\n'
            '    install.conda_packages(name=["numpy"], channel=["https://conda.example.com/ch"])\n',
        ),
        OPTS,
    )
    assert compiled.secret_values == {} and compiled.secrets == ("envbuild-ca",)
    assert not any(C.APT_AUTH_PATH in secret_mounts(ex) for ex in execs(compiled).values())
    assert not any("RATTLER_AUTH_FILE" in " ".join(ex["meta"]["env"]) for ex in execs(compiled).values())


def test_conda_urls_lose_userinfo_and_a_leading_token() -> None:
    assert C.strip_conda("https://u:p@h.example/t/abc-1/ch") == "https://h.example/ch"
    assert C.strip_conda("https://h.example/t/abc-1") == "https://h.example"
    assert C.strip_conda("https://h.example/x/t/kept/ch") == "https://h.example/x/t/kept/ch"
    assert C.strip_conda("conda-forge") == "conda-forge"
    assert C.redact_conda("channel_alias: https://u:p@h.example/t/abc-1/\n") == (
        "channel_alias: https://***@h.example/t/***/\n"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (  # one host with two conda logins, refused at its line
            'install.conda()\n    install.conda_packages(name=["a"], '
            'channel=["https://u:1@h.example/a", "https://u:2@h.example/b"])',
            r"build\.envd:4:\d+: install\.conda_packages: .*different logins for h\.",
        ),
        (  # an apt login that auth.conf cannot hold
            'config.apt_source(source="deb https://u:a%20b@apt.example.com/debian bookworm main")',
            r"config\.apt_source: the credentials of https://\*\*\*@apt\.example\.com",
        ),
    ],
)
def test_logins_a_secret_file_cannot_hold_are_refused(tmp_path: Path, call: str, message: str) -> None:
    spec = spec_of(tmp_path, f'def build():\n    base(image="local/debian:bookworm", dev=False)\n    {call}\n')
    with pytest.raises(UsageError, match=message):
        compile(spec, OPTS)


def test_a_download_login_is_shown_nowhere_but_where_the_builder_fetches(tmp_path: Path) -> None:
    """BuildKit's http source takes the login in its URL (Docker 20.10's has no header secrets), so
    the LLB holds it there and only there: the names the progress output and CI logs show, the label
    and the image config say ``***``."""
    spec = spec_of(
        tmp_path,
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n'
        '    io.http(url="https://eve:pw-http-6@files.example.com/a.bin", checksum="sha256:' + "a" * 64 + '")\n',
    )
    compiled = compile(spec, OPTS)
    entries = compiled.definition().to_json()
    names = [
        e["OpMetadata"]["description"]["llb.customname"]
        for e in entries
        if "llb.customname" in (e.get("OpMetadata") or {}).get("description", {})
    ]
    assert "https://***@files.example.com/a.bin" in names
    assert any(n.startswith("download https://***@files.example.com/a.bin") for n in names)
    assert not any("pw-http-6" in n for n in names)
    sources = [e["Op"]["source"]["identifier"] for e in entries if "source" in e["Op"]]
    assert "https://eve:pw-http-6@files.example.com/a.bin" in sources
    assert "pw-http-6" not in json.dumps(dict(compiled.image), default=str)
