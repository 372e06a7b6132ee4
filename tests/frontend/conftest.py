from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import frontend
from frontend.spec import Spec


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ~/.config/envbuild/config.envd or fills their git cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))


Evaluator = Callable[..., Spec]


@pytest.fixture
def ev(tmp_path: Path) -> Evaluator:
    """Write ``build.envd`` (plus extra files) into a fresh context and evaluate it."""

    def run(source: str, files: dict[str, str] | None = None, **kwargs: object) -> Spec:
        for name, text in (files or {}).items():
            p = tmp_path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        (tmp_path / "build.envd").write_text(source)
        kwargs.setdefault("user_config", False)
        kwargs.setdefault("on_print", lambda _s: None)
        return frontend.evaluate(tmp_path, **kwargs)  # type: ignore[arg-type]

    return run
