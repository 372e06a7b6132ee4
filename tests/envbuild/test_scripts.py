"""Shell text the compiler writes: every value from a build file is one shell word (``shlex.quote``)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_a_tool_version_is_shell_text_only_where_quoted(tmp_path: Path) -> None:
    """``install.go(version=...)`` lands in the download step's messages: never as shell code."""
    from envbuild.compiler.languages import Archive, fetch_script

    marker = tmp_path / "pwned"
    what = f'go 1.2"; touch {marker}; echo "$(touch {marker})'
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "dpkg").write_text("#!/bin/sh\necho sparc\n")
    (stub / "dpkg").chmod(0o755)
    archives = {"amd64": Archive("https://example.invalid/go.tgz", "https://example.invalid/s")}
    script = fetch_script(what, archives, "true")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 1 and not marker.exists(), out
    assert out.stderr.strip() == f"envbuild: {what} has no build for sparc"
