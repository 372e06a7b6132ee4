"""The merged-layers layout (builders with MergeOp/DiffOp): which steps depend on which, and where the
linear chain stays. That both layouts give the same files is checked against a real engine in
test_build_layers_e2e.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import frontend
from envbuild.compiler import BaseConfig, CompileOptions
from envbuild.compiler import scripts as S
from envbuild.compiler.compile import compile
from envbuild.compiler.options import AptPin, Pins
from frontend.spec import Spec

DEBIAN = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
LINEAR = CompileOptions(project="proj", owner=(1000, 1000), base_config=DEBIAN)
MERGED = replace(LINEAR, merge_layers=True)

NOTEBOOK = """base(image="local/debian:bookworm", dev=True)
install.python(version="3.11")
install.python_packages(name=["numpy"])
config.jupyter()"""


def spec_of(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Spec:
    (tmp_path / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    return frontend.evaluate(tmp_path, user_config=False)


class Graph:
    """The compiled ops by name (unnamed ops by digest), with their inputs."""

    def __init__(self, spec: Spec, opts: CompileOptions) -> None:
        self.by_digest = {e["Digest"]: e for e in compile(spec, opts).definition().to_json()}
        self.by_name = {self.name(d): e for d, e in self.by_digest.items()}

    def name(self, digest: str) -> str:
        md = self.by_digest[digest].get("OpMetadata", {})
        return str(md.get("description", {}).get("llb.customname", digest))

    def op(self, name: str) -> dict:
        return dict(self.by_name[name]["Op"])

    def digest(self, name: str) -> str:
        return str(self.by_name[name]["Digest"])

    def inputs(self, name: str) -> list[str]:
        return [self.name(i["digest"]) for i in self.op(name).get("inputs", [])]

    def definition_root(self) -> list[str]:
        """What the graph's final (unnamed, input-only) op points at: the image's state."""
        roots = [e for e in self.by_digest.values() if set(e["Op"]) == {"inputs"}]
        assert len(roots) == 1
        return [self.name(i["digest"]) for i in roots[0]["Op"]["inputs"]]

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = self.inputs(name)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo += self.inputs(n)
        return seen


MERGE = "image: package layers merged"
CHECK = "python 3.11: the venv's interpreter in the image"
DEV_FILES = "dev: sshd, services, login environment, work dir"
RUNTIME = "python 3.11 and uv 0.13.9"


def test_the_image_is_the_system_chain_with_the_python_layers_merged_on_top(tmp_path: Path) -> None:
    g = Graph(spec_of(tmp_path, NOTEBOOK), MERGED)
    assert g.inputs(MERGE) == [DEV_FILES, "layer: jupyterlab", "layer: python packages: numpy"]
    assert list(g.op(MERGE)["merge"]["inputs"]) == [{}, {"input": "1"}, {"input": "2"}]
    assert g.inputs("layer: jupyterlab") == [RUNTIME, "jupyterlab"]
    assert g.inputs("layer: python packages: numpy") == ["jupyterlab", "python packages: numpy"]
    # the check step runs where it runs on the chain: on the system packages with the runtime's files
    assert g.inputs(CHECK) == ["python 3.11: runtime layer merged onto the system"]
    assert g.inputs("python 3.11: runtime layer merged onto the system") == [
        "dev: entrypoint and supervisor",
        "layer: python 3.11 and uv",
    ]
    copy = "python 3.11: copy /opt/envbuild and uv in"
    assert g.inputs("layer: python 3.11 and uv") == ["base local/debian:bookworm", copy]
    assert g.inputs(copy) == ["base local/debian:bookworm", RUNTIME]
    # nothing comes after the packages: the development files go on the system side, under the package
    # layers (which hold only the venv), so the image is the merge itself
    assert g.inputs(DEV_FILES) == [CHECK]
    assert g.definition_root() == [MERGE]


def test_steps_after_the_packages_keep_the_development_files_on_top(tmp_path: Path) -> None:
    """An io.copy (or VS Code extensions) after the packages: the files come after it, as on the chain."""
    body = NOTEBOOK + '\nio.copy(source="notes.txt", target="/srv/notes.txt")'
    g = Graph(spec_of(tmp_path, body, {"notes.txt": "x\n"}), MERGED)
    assert g.inputs(MERGE) == [CHECK, "layer: jupyterlab", "layer: python packages: numpy"]
    assert g.inputs(DEV_FILES) == ["copy notes.txt -> /srv/notes.txt"]
    assert g.inputs("copy notes.txt -> /srv/notes.txt")[0] == MERGE


def test_the_runtime_layer_holds_what_the_chain_would_copy_in(tmp_path: Path) -> None:
    """The same copy as on the chain, plus the empty directory the chain's builder leaves behind above
    the package steps' uv cache mount."""
    merged = Graph(spec_of(tmp_path, NOTEBOOK), MERGED).op("python 3.11: copy /opt/envbuild and uv in")["file"]
    linear = Graph(spec_of(tmp_path, NOTEBOOK), LINEAR).op("python 3.11: copy /opt/envbuild and uv in")["file"]
    assert [a["copy"] for a in merged["actions"][:2]] == [a["copy"] for a in linear["actions"]]
    assert merged["actions"][2]["mkdir"]["path"] == "/var/cache/envbuild"


def test_packages_install_beside_the_system_packages(tmp_path: Path) -> None:
    """Neither side waits for the other: a cold build runs them at once."""
    g = Graph(spec_of(tmp_path, NOTEBOOK), MERGED)
    system = "dev: system packages (sshd, supervisor, sudo, git)"
    assert system not in g.ancestors("python packages: numpy")
    assert "jupyterlab" not in g.ancestors(CHECK)
    linear = Graph(spec_of(tmp_path, NOTEBOOK), LINEAR)
    assert system in linear.ancestors("python packages: numpy")


def test_a_change_on_one_side_leaves_the_other_cached(tmp_path: Path) -> None:
    bash = spec_of(tmp_path, NOTEBOOK)
    zsh = spec_of(tmp_path, NOTEBOOK + '\nshell("zsh")')
    six = spec_of(tmp_path, NOTEBOOK.replace('"numpy"', '"six"'))
    merged = Graph(bash, MERGED)
    # another shell changes the system packages: the Python side keeps its cache keys
    other_shell = Graph(zsh, MERGED)
    for name in ("jupyterlab", "python packages: numpy", "layer: jupyterlab"):
        assert merged.digest(name) == other_shell.digest(name), name
    assert Graph(bash, LINEAR).digest("jupyterlab") != Graph(zsh, LINEAR).digest("jupyterlab")
    # another package: the system side keeps its cache keys
    other_package = Graph(six, MERGED)
    for name in ("dev: user envd (uid 1000, gid 1000)", CHECK):
        assert merged.digest(name) == other_package.digest(name), name


def test_package_steps_in_the_stage_run_as_the_owner_without_a_passwd_entry(tmp_path: Path) -> None:
    def script(opts: CompileOptions) -> str:
        return str(Graph(spec_of(tmp_path, NOTEBOOK), opts).op("python packages: numpy")["exec"]["meta"]["args"][-1])

    assert "setpriv --reuid=1000 --regid=1000 --clear-groups " in script(MERGED)
    assert "setpriv --reuid=1000 --regid=1000 --init-groups " in script(LINEAR)


def test_apt_packages_are_in_the_packages_build_environment(tmp_path: Path) -> None:
    """A package built from source may need the build file's apt packages (headers, a compiler)."""
    body = NOTEBOOK + '\ninstall.apt_packages(name=["libpq-dev", "gcc"])'
    g = Graph(spec_of(tmp_path, body), MERGED)
    env = "python packages: build environment (apt: libpq-dev gcc)"
    assert g.inputs(env) == [RUNTIME]
    assert "libpq-dev gcc" in g.op(env)["exec"]["meta"]["args"][-1]
    assert {m.get("cacheOpt", {}).get("ID") for m in g.op(env)["exec"]["mounts"]} >= {"envbuild-apt-cache-tools"}
    assert g.inputs("layer: jupyterlab") == [env, "jupyterlab"]
    assert "apt: libpq-dev gcc" in g.ancestors(CHECK) and env not in g.ancestors(CHECK)


def test_git_is_in_the_build_environment_when_a_requirement_may_come_from_git(tmp_path: Path) -> None:
    """A development image has git, so on the chain a git URL works; the stage gets it when needed."""
    env = "python packages: build environment (apt: git)"
    from_git = NOTEBOOK.replace('"numpy"', '"git+https://example.com/r.git"')
    assert env in Graph(spec_of(tmp_path, from_git), MERGED).by_name
    reqs = NOTEBOOK.replace('name=["numpy"]', 'requirements="requirements.txt"')
    assert env in Graph(spec_of(tmp_path, reqs, {"requirements.txt": "six\n"}), MERGED).by_name
    assert env not in Graph(spec_of(tmp_path, NOTEBOOK), MERGED).by_name
    plain = from_git.replace("dev=True", "dev=False").replace("config.jupyter()", "")
    assert not any("build environment" in n for n in Graph(spec_of(tmp_path, plain), MERGED).by_name)


def test_without_a_venv_there_is_nothing_to_merge(tmp_path: Path) -> None:
    """conda owns Python (its env lives on the system chain), or the build has no Python at all."""
    conda = 'base(image="local/debian:bookworm", dev=True)\ninstall.conda()\ninstall.python(version="3.11")'
    conda += '\ninstall.python_packages(name=["six"])'
    plain = 'base(image="local/debian:bookworm", dev=True)\ninstall.apt_packages(name=["htop"])'
    for body in (conda, plain):
        spec = spec_of(tmp_path, body)
        assert compile(spec, MERGED).definition() == compile(spec, LINEAR).definition()


def test_both_layouts_name_the_same_build_file_calls(tmp_path: Path) -> None:
    """Errors and progress point at the same calls; the merged layout adds only its layer steps."""
    spec = spec_of(tmp_path, NOTEBOOK)
    linear = list(compile(spec, LINEAR).steps)
    merged = [s for s in compile(spec, MERGED).steps if s.kind != "layer"]
    assert sorted((s.name, s.kind, str(s.pos)) for s in merged) == sorted((s.name, s.kind, str(s.pos)) for s in linear)


def test_a_locked_build_syncs_the_lock_in_the_stage_and_pins_the_build_environment(tmp_path: Path) -> None:
    """The lock is made from the chain; the merged layout installs the same pins, the sync kept as one diff."""
    h = "sha256:" + "1" * 64
    pins = Pins(
        apt={
            "dev": AptPin(tuple(S.DEV_APT_PACKAGES), ("git=1:2.39.5-0+deb12u2",)),
            "apt-1": AptPin(("libpq-dev",), ("libpq-dev=15.10-0+deb12u1", "libpq5=15.10-0+deb12u1")),
            "tools-python": AptPin(S.PYTHON_APT, ("python3=3.11.2-1+b1",)),
            "python3": AptPin(("python3",), ()),
        },
        python=f"numpy==2.0.0 \\\n    --hash={h}\njupyterlab==4.6.6 \\\n    --hash={h}\n",
        python_version="3.11.2",
        strict=True,
    )
    body = NOTEBOOK.replace('name=["numpy"]', 'requirements="requirements.txt"')
    body += '\ninstall.apt_packages(name=["libpq-dev"])'
    g = Graph(spec_of(tmp_path, body, {"requirements.txt": "numpy\n"}), replace(MERGED, pins=pins))
    env = "python packages: build environment (apt: libpq-dev git)"
    script = g.op(env)["exec"]["meta"]["args"][-1]
    assert "install --no-install-recommends libpq-dev=15.10-0+deb12u1 git=1:2.39.5-0+deb12u2 >" in script
    # dependencies too: apt prefers every locked version, and its plan may hold nothing else
    every = "git=1:2.39.5-0+deb12u2 libpq-dev=15.10-0+deb12u1 libpq5=15.10-0+deb12u1 python3=3.11.2-1+b1"
    assert f"printf '%s\\n' {every} > /run/envbuild-tls/apt/locked" in script
    preferences = "-o Dir::Etc::PreferencesParts=/run/envbuild-tls/apt/preferences.d"
    assert f"apt-get $APT_TLS {preferences} -y -q install" in script
    sync = "python packages: 2 from the lock"
    assert g.inputs(MERGE) == [DEV_FILES, f"layer: {sync}"]
    assert g.inputs(f"layer: {sync}") == [env, sync]
    assert "--clear-groups" in g.op(sync)["exec"]["meta"]["args"][-1]
