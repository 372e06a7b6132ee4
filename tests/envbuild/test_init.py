"""`envbuild init`: detection, the generated build.envd (evaluated by the real frontend), overwrite rules."""

from __future__ import annotations

from pathlib import Path

import pytest

import frontend
from envbuild import init as gen
from envbuild.cli import main
from envbuild.errors import UsageError


def _init(directory: Path, *args: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "-p", str(directory), "--yes", *args])
    assert exit_info.value.code in (0, None)


def test_empty_dir_gives_a_minimal_dev_environment(tmp_path: Path) -> None:
    _init(tmp_path)
    spec = frontend.evaluate(str(tmp_path))
    assert spec.dev and spec.python is not None and spec.python.version == "3.11"
    assert spec.jupyter is None and spec.python_packages == ()


def test_requirements_and_notebook(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==2.0\n# comment\n-r other.txt\n")
    (tmp_path / "other.txt").write_text("six\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "explore.ipynb").write_text("{}")
    found = gen.detect(tmp_path)
    assert found.requirements == "requirements.txt" and found.notebooks == ("notebooks/explore.ipynb",)
    _init(tmp_path)
    spec = frontend.evaluate(str(tmp_path))
    assert spec.jupyter is not None
    assert [p.requirements for p in spec.python_packages] == ["requirements.txt"]
    assert "requirements.txt" in spec.inputs


def test_jupyter_in_requirements_turns_jupyter_on(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("JupyterLab>=4\n")
    assert gen.default_choices(gen.detect(tmp_path)).jupyter


def test_pyproject_dependencies_and_python(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nrequires-python = ">=3.12"\ndependencies = ["requests>=2", "pandas[excel]"]\n'
    )
    _init(tmp_path)
    spec = frontend.evaluate(str(tmp_path))
    assert spec.python.version == "3.12"
    assert spec.python_packages[0].names == ("requests>=2", "pandas[excel]")


def test_conda_environment_file(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("name: x\ndependencies:\n  - numpy\n  - notebook\n")
    _init(tmp_path)
    spec = frontend.evaluate(str(tmp_path))
    assert spec.conda is not None
    assert spec.conda_packages[0].env_file == "environment.yml"
    assert spec.jupyter is not None


def test_flags_override_detection(tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}")
    _init(tmp_path, "--no-jupyter", "--python", "3.10", "--cuda", "12.6.3", "--base", "ubuntu:22.04")
    spec = frontend.evaluate(str(tmp_path))
    assert spec.jupyter is None and spec.python.version == "3.10"
    assert spec.cuda is not None and spec.cuda.version == "12.6.3" and spec.gpu_enabled


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "build.envd").write_text("# mine\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "-p", str(tmp_path), "--yes"])
    assert exit_info.value.code == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "build.envd").read_text() == "# mine\n"
    _init(tmp_path, "--force")
    assert "def build():" in (tmp_path / "build.envd").read_text()


@pytest.mark.parametrize(
    ("requires", "expected"),
    [
        (None, "3.11"),
        (">=3.9", "3.11"),
        (">=3.12", "3.12"),
        ("<3.11", "3.10"),
        (">=3.8,<3.10", "3.9"),
        ("==3.13.*", "3.13"),
    ],
)
def test_python_for(requires: str | None, expected: str) -> None:
    assert gen.python_for(requires) == expected


def test_bad_values_are_usage_errors() -> None:
    for bad in (gen.Choices(python="three"), gen.Choices(cuda="latest"), gen.Choices(base='x" y')):
        with pytest.raises(UsageError):
            gen.validate(bad)


def test_invalid_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        gen.detect(tmp_path)
