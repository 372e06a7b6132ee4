"""`envbuild init`: write a starting ``build.envd`` from what a project directory already declares.

Detection reads ``requirements.txt``, ``environment.yml``/``.yaml``, ``pyproject.toml`` (PEP 621
dependencies and ``requires-python``) and notebooks (``*.ipynb`` means Jupyter). The result is plain
envd v1 Starlark the user is expected to edit.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import UsageError

BUILD_FILE = "build.envd"
DEFAULT_BASE = "ubuntu:22.04"
DEFAULT_PYTHON = "3.11"
SUPPORTED_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
_NOTEBOOK_DEPTH = 3
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ipynb_checkpoints", ".tox"}
_JUPYTER_PACKAGES = {"jupyter", "jupyterlab", "notebook", "ipykernel"}
_PY_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True, slots=True)
class Detected:
    """What the directory already says about its environment."""

    requirements: str | None = None
    env_file: str | None = None
    pyproject_dependencies: tuple[str, ...] = ()
    requires_python: str | None = None
    notebooks: tuple[str, ...] = ()
    mentions_jupyter: bool = False


@dataclass(frozen=True, slots=True)
class Choices:
    """Everything the generated file encodes."""

    base: str = DEFAULT_BASE
    python: str = DEFAULT_PYTHON
    jupyter: bool = False
    cuda: str | None = None
    requirements: str | None = None
    env_file: str | None = None
    packages: tuple[str, ...] = ()


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and not line.lstrip().startswith(("-", "#")):
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def _load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: tomli, if the user has it
        try:
            import tomli as tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:
            return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path.name} is not valid TOML ({exc}); fix it or remove it before `envbuild init`") from None


def _notebooks(directory: Path) -> tuple[str, ...]:
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        depth = len(Path(root).relative_to(directory).parts)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".") and depth < _NOTEBOOK_DEPTH)
        found.extend(str((Path(root) / f).relative_to(directory)) for f in sorted(files) if f.endswith(".ipynb"))
    return tuple(found)


def detect(directory: Path) -> Detected:
    requirements = "requirements.txt" if (directory / "requirements.txt").is_file() else None
    env_file = next((n for n in ("environment.yml", "environment.yaml") if (directory / n).is_file()), None)
    deps: tuple[str, ...] = ()
    requires_python = None
    if (directory / "pyproject.toml").is_file():
        project = _load_toml(directory / "pyproject.toml").get("project") or {}
        deps = tuple(str(d) for d in project.get("dependencies") or ())
        requires_python = project.get("requires-python")
    names = {re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0].lower() for d in deps}
    if requirements:
        names |= _requirement_names((directory / requirements).read_text(errors="replace"))
    if env_file:
        names |= {
            m.lower()
            for m in re.findall(
                r"^\s*-\s*([A-Za-z0-9][A-Za-z0-9._-]*)", (directory / env_file).read_text(errors="replace"), re.M
            )
        }
    return Detected(
        requirements=requirements,
        env_file=env_file,
        pyproject_dependencies=deps,
        requires_python=requires_python,
        notebooks=_notebooks(directory),
        mentions_jupyter=bool(names & _JUPYTER_PACKAGES),
    )


def python_for(requires_python: str | None) -> str:
    """The supported version closest to the default that satisfies a simple ``requires-python``."""
    if not requires_python:
        return DEFAULT_PYTHON
    candidates = [v for v in SUPPORTED_PYTHONS if _satisfies(v, requires_python)]
    if not candidates or DEFAULT_PYTHON in candidates:
        return DEFAULT_PYTHON
    newer = [v for v in candidates if SUPPORTED_PYTHONS.index(v) > SUPPORTED_PYTHONS.index(DEFAULT_PYTHON)]
    return newer[0] if newer else candidates[-1]


def _satisfies(version: str, spec: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:2])

    for clause in spec.split(","):
        match = re.match(r"^\s*(>=|<=|==|!=|~=|>|<)\s*([\d.*]+)\s*$", clause)
        if not match:
            continue
        op, bound = match.groups()
        if "*" in bound:
            bound = bound.replace(".*", "")
        v, b = key(version), key(bound)
        ok = {">=": v >= b, "<=": v <= b, ">": v > b, "<": v < b, "==": v == b, "!=": v != b, "~=": v >= b}[op]
        if not ok:
            return False
    return True


def default_choices(found: Detected) -> Choices:
    return Choices(
        python=python_for(found.requires_python),
        jupyter=bool(found.notebooks) or found.mentions_jupyter,
        requirements=found.requirements,
        env_file=found.env_file,
        packages=found.pyproject_dependencies,
    )


def validate(choices: Choices) -> Choices:
    if not _PY_VERSION.match(choices.python):
        raise UsageError(f"invalid --python {choices.python!r}: expected a version like 3.11")
    if choices.cuda is not None and not re.match(r"^\d+\.\d+(\.\d+)?$", choices.cuda):
        raise UsageError(f"invalid --cuda {choices.cuda!r}: expected a CUDA version like 12.6.3")
    if not choices.base or any(c.isspace() or c in '"\\' for c in choices.base):
        raise UsageError(f"invalid --base {choices.base!r}: expected an image reference like ubuntu:22.04")
    return choices


def _str(value: str) -> str:
    return json.dumps(value)


def render(choices: Choices) -> str:
    """The build file: envd v1 syntax, one statement per decision, comments pointing at the next edit."""
    lines = [
        "# syntax=v1",
        "# Written by `envbuild init`; edit freely. `envbuild up` builds it and starts the environment.",
        "",
        "def build():",
        f"    base(image={_str(choices.base)}, dev=True)",
    ]
    if choices.cuda:
        lines.append(f"    install.cuda(version={_str(choices.cuda)})")
    if choices.env_file:
        lines.append("    install.conda(use_mamba=True)")
    lines.append(f"    install.python(version={_str(choices.python)})")
    if choices.env_file:
        lines.append(f"    install.conda_packages(env_file={_str(choices.env_file)})")
    if choices.requirements:
        lines.append(f"    install.python_packages(requirements={_str(choices.requirements)})")
    if choices.packages:
        items = ",\n".join(f"        {_str(p)}" for p in choices.packages)
        lines.append(f"    install.python_packages(name=[\n{items},\n    ])")
    if not (choices.requirements or choices.packages or choices.env_file):
        lines.append('    # install.python_packages(name=["numpy"])')
    if choices.jupyter:
        lines.append("    config.jupyter()")
    return "\n".join(lines) + "\n"


def write(directory: Path, text: str, *, force: bool = False) -> Path:
    target = directory / BUILD_FILE
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to overwrite it")
    target.write_text(text)
    return target
