"""Secrets a build file may hold (index passwords, the Jupyter token) stay out of the image.

An image is shared; its layers, config and labels are readable by anyone who pulls it, and the
LLB and step env end up in the engine's build records. So:

* ``config.pip_index`` URLs lose their ``user:password@`` part everywhere in the LLB (steps, the
  image's ``/etc/pip.conf``); the credentials reach the steps as a netrc file mounted from a
  BuildKit session secret (``NETRC`` points at it; pip and uv both read it), only while a step runs.
* ``config.cran_mirror`` (or the ``cran`` mirror setting) and ``config.julia_pkg_server`` URLs with
  credentials reach the steps that use them as a session secret holding the whole URL (the step
  reads it at run time); ``Rprofile.site`` and the image env name them without credentials.
* The ``ai.envbuild.spec`` and ``ai.envbuild.repo`` labels show credentials in every URL as ``***``
  (`public_spec`; the same form the lock file uses) and the Jupyter token blanked (``up`` takes it
  from the build file; ``run --image`` makes a random one).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from frontend.spec import Spec

SECRETS_DIR = "/run/secrets"
NETRC_SECRET_ID = "envbuild-index-netrc"
NETRC_PATH = f"{SECRETS_DIR}/{NETRC_SECRET_ID}"
CRAN_SECRET_ID = "envbuild-cran-url"
JULIA_SECRET_ID = "envbuild-julia-pkg-server"

_NETRC_UNSAFE = re.compile(r"[\s\"'\\#]")
"""What a netrc word cannot hold."""
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s?#'\"]+)@")
"""``user:password@`` after a URL's scheme."""


def has_credentials(url: str) -> bool:
    return bool(_USERINFO.match(url))


def strip_url(url: str) -> str:
    """The URL without ``user:password@`` (what the image and the LLB may hold)."""
    return _USERINFO.sub(lambda m: m["scheme"], url, count=1) if url else url


def redact_url(url: str) -> str:
    """``https://***@host/...``: shows that credentials were given, not which (lock file form)."""
    return re.sub(_USERINFO, lambda m: m["scheme"] + "***@", url) if url else url


def redact_text(text: str) -> str:
    """Every URL in a free text (``.condarc``, ``sources.list``) with its credentials redacted."""
    return re.sub(_USERINFO, lambda m: m["scheme"] + "***@", text)


def netrc(spec: Spec) -> bytes:
    """A netrc file with the ``config.pip_index`` credentials, or b"" when its URLs carry none."""
    idx = spec.pip_index
    if idx is None:
        return b""
    where = f"{idx.pos}: config.pip_index" if idx.pos else "config.pip_index"
    return netrc_for((idx.url, idx.extra_url), where=where)


def netrc_for(urls: Iterable[str], *, where: str) -> bytes:
    """A netrc file with the credentials the ``urls`` carry (b"" when none does): how curl, pip and
    uv get a login without it entering a step's command. ``where`` starts the error messages."""
    from urllib.parse import unquote, urlsplit

    machines: dict[str, tuple[str, str | None]] = {}
    for url in urls:
        if not url or not has_credentials(url):
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        login = unquote(parts.username or "")
        password = unquote(parts.password) if parts.password is not None else None
        for word in (host, login, password or ""):
            if _NETRC_UNSAFE.search(word):
                raise UsageError(
                    f"{where}: the credentials of {redact_url(url)} contain whitespace, quotes, "
                    "'#' or a backslash, which a netrc file cannot hold; use a token without them"
                )
        if host in machines and machines[host] != (login, password):
            raise UsageError(f"{where}: its URLs give different credentials for {host}; a host can have one login")
        machines[host] = (login, password)
    lines = [
        f"machine {host} login {login}" + (f" password {password}" if password is not None else "")
        for host, (login, password) in machines.items()
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def without_credentials(spec: Spec) -> Spec:
    """The spec the compiler turns into LLB: index URLs without credentials (they go by `netrc`)."""
    changes: dict[str, object] = {}
    if spec.pip_index is not None and (
        has_credentials(spec.pip_index.url) or has_credentials(spec.pip_index.extra_url)
    ):
        changes["pip_index"] = replace(
            spec.pip_index, url=strip_url(spec.pip_index.url), extra_url=strip_url(spec.pip_index.extra_url)
        )
    if spec.pixi is not None and spec.pixi.pypi_index and has_credentials(spec.pixi.pypi_index):
        changes["pixi"] = replace(spec.pixi, pypi_index=strip_url(spec.pixi.pypi_index))
    return replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def public_spec(spec: Spec) -> Spec:
    """What the image label (and the content digest) may show: no credentials, no Jupyter token."""
    r = replace
    changes: dict[str, object] = {}
    if spec.jupyter is not None and spec.jupyter.token:
        changes["jupyter"] = r(spec.jupyter, token="")
    if spec.pip_index is not None:
        changes["pip_index"] = r(
            spec.pip_index, url=redact_url(spec.pip_index.url), extra_url=redact_url(spec.pip_index.extra_url)
        )
    if spec.pixi is not None and spec.pixi.pypi_index:
        changes["pixi"] = r(spec.pixi, pypi_index=redact_url(spec.pixi.pypi_index))
    for name in ("apt_source", "conda_channel"):
        text = getattr(spec, name)
        if text is not None:
            changes[name] = r(text, text=redact_text(text.text))
    for name in ("cran_mirror", "julia_pkg_server"):
        url = getattr(spec, name)
        if url is not None:
            changes[name] = r(url, url=redact_url(url.url))
    if spec.repo is not None:
        changes["repo"] = r(spec.repo, url=redact_url(spec.repo.url))
    if spec.conda_packages:
        changes["conda_packages"] = tuple(
            r(c, channels=tuple(redact_url(ch) for ch in c.channels)) for c in spec.conda_packages
        )
    if spec.http:
        changes["http"] = tuple(r(h, url=redact_url(h.url)) for h in spec.http)
    return r(spec, **changes)
