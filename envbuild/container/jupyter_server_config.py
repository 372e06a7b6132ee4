import pathlib
import sys

_token_file = pathlib.Path("@TOKEN_FILE@")
_token = _token_file.read_text().strip() if _token_file.exists() else ""
if not _token:
    sys.exit("envbuild: no Jupyter token (/etc/envbuild/jupyter_token is missing or empty); refusing to start")
c = get_config()  # noqa: F821
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "@WORKDIR@"
c.IdentityProvider.token = _token
