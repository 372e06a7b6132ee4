"""VS Code extensions: .vsix files the test makes, one from the build context and one from an Open
VSX mirror served on loopback, unpacked on the host (cached: the second prepare fetches nothing)
and installed on the real engine where VS Code Server looks."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from envbuild.compiler import vscode
from envbuild.compiler.mirrors import Mirrors

BASE = "local/debian:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def make_vsix(publisher: str, name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "extension.vsixmanifest",
            f'<PackageManifest Version="2.0.0"><Metadata><Identity Id="{name}" '
            f'Version="{version}" Publisher="{publisher}"/></Metadata></PackageManifest>',
        )
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(
            "extension/package.json",
            json.dumps(
                {
                    "publisher": publisher,
                    "name": name,
                    "version": version,
                    "engines": {"vscode": "^1.80.0"},
                    "main": "./extension.js",
                }
            ),
        )
        z.writestr("extension/extension.js", "exports.activate = () => {};\n")
        z.writestr("extension/media/readme.md", "# hi\n")
    return buf.getvalue()


class _OpenVsx(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    vsix = make_vsix("Remote-Pub", "remote-ext", "1.2.3")

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/remote-pub/remote-ext/linux-x64/latest":
            body = json.dumps(
                {"version": "1.2.3", "files": {"download": f"{host}/files/remote-ext-1.2.3.vsix"}}
            ).encode()
        elif self.path == "/files/remote-ext-1.2.3.vsix":
            body = self.vsix
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def open_vsx() -> Iterator[str]:
    _OpenVsx.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenVsx)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_prepare_downloads_once_then_works_offline(tmp_path: Path, open_vsx: str) -> None:
    mirrors = Mirrors(openvsx=open_vsx)
    (exts,) = vscode.prepare(["remote-pub.remote-ext"], context_dir=tmp_path, mirrors=mirrors, root=tmp_path / "c")
    assert (exts.id, exts.version, exts.dir_name) == ("remote-pub.remote-ext", "1.2.3", "remote-pub.remote-ext-1.2.3")
    assert len(_OpenVsx.hits) == 2
    again = vscode.prepare(["remote-pub.remote-ext-1.2.3"], context_dir=tmp_path, mirrors=mirrors, root=tmp_path / "c")
    offline = vscode.prepare(
        ["remote-pub.remote-ext"],
        context_dir=tmp_path,
        mirrors=Mirrors(openvsx="http://127.0.0.1:9"),
        root=tmp_path / "c",
    )
    assert again == offline == (exts,) and len(_OpenVsx.hits) == 2
    assert (tmp_path / "c" / "extensions" / exts.dir_name / "media" / "readme.md").read_text() == "# hi\n"


def test_unknown_extension_and_missing_vsix_are_clear_errors(tmp_path: Path, open_vsx: str) -> None:
    with pytest.raises(vscode.ExtensionError, match="not found"):
        vscode.prepare(["nobody.nothing"], context_dir=tmp_path, mirrors=Mirrors(openvsx=open_vsx), root=tmp_path)
    with pytest.raises(vscode.ExtensionError, match=r"no such \.vsix"):
        vscode.prepare(["gone.vsix"], context_dir=tmp_path, mirrors=Mirrors(), root=tmp_path)
    (tmp_path / "bad.vsix").write_bytes(b"not a zip")
    with pytest.raises(vscode.ExtensionError, match="not a VS Code extension"):
        vscode.prepare(["bad.vsix"], context_dir=tmp_path, mirrors=Mirrors(), root=tmp_path)


@pytest.mark.engine
def test_extensions_installed_where_vscode_server_looks(tmp_path: Path, open_vsx: str) -> None:
    import llb
    from envbuild.compiler.compile import _Compiler
    from envbuild.compiler.options import CompileOptions
    from frontend import spec as S

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "local-ext.vsix").write_bytes(make_vsix("Local-Pub", "local-ext", "0.0.1"))
    spec = S.Spec(
        base=S.Base(BASE, dev=True),
        vscode_extensions=(S.VSCodeExtensions(("local-ext.vsix", "remote-pub.remote-ext")),),
    )
    c = _Compiler(spec, CompileOptions(owner=(1234, 2345)))
    root = tmp_path / "cache"
    exts = vscode.prepare(vscode.all_ids(c), context_dir=context, mirrors=Mirrors(openvsx=open_vsx), root=root)
    state, add = vscode.stage(c, llb.image(BASE), exts, root)
    tag = f"envbuild-test/vscode-{uuid.uuid4().hex[:8]}:1"
    with llb.connect() as client:
        client.solve(state, export=llb.DockerImage(tag), local_dirs=dict(add.local_dirs))
    try:
        out = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                tag,
                "sh",
                "-c",
                "cd /home/envd/.vscode-server/extensions && stat -c '%u:%g %n' * */package.json && cat extensions.json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    lines = out.splitlines()
    assert "1234:2345 local-pub.local-ext-0.0.1/package.json" in lines
    assert "1234:2345 remote-pub.remote-ext-1.2.3/package.json" in lines
    assert "1234:2345 extensions.json" in lines
    manifest = json.loads(out[out.index("[") :])
    assert {(m["identifier"]["id"], m["version"], m["relativeLocation"]) for m in manifest} == {
        ("local-pub.local-ext", "0.0.1", "local-pub.local-ext-0.0.1"),
        ("remote-pub.remote-ext", "1.2.3", "remote-pub.remote-ext-1.2.3"),
    }
