"""Secrets a build file may hold (index passwords, the Jupyter token) stay out of the image.

An image is shared; its layers, config and labels are readable by anyone who pulls it, and the
LLB and step env end up in the engine's build records. So:

* ``config.pip_index`` URLs lose their ``user:password@`` part everywhere in the LLB (steps, the
  image's ``/etc/pip.conf``); the credentials reach the steps as a netrc file mounted from a
  BuildKit session secret (``NETRC`` points at it; pip and uv both read it), only while a step runs.
* ``config.apt_source`` is written to ``/etc/apt/sources.list`` without the ``user:password@`` of
  its URLs; every step that runs apt (the apt steps, the tool stages, ``envbuild lock``'s) mounts
  the logins as a session secret at ``/etc/apt/auth.conf.d/`` (apt_auth.conf(5)), only while it runs.
* ``config.conda_channel`` (``.condarc``) and ``install.conda_packages(channel=...)`` URLs lose their
  ``user:password@`` and a leading ``/t/<token>`` (an anaconda.org token); the conda steps read them
  from a session secret through ``RATTLER_AUTH_FILE`` (rattler's JSON auth file).
* ``config.cran_mirror`` (or the ``cran`` mirror setting) and ``config.julia_pkg_server`` URLs with
  credentials reach the steps that use them as a session secret holding the whole URL (the step
  reads it at run time); ``Rprofile.site`` and the image env name them without credentials.
* The ``ai.envbuild.spec`` and ``ai.envbuild.repo`` labels show credentials in every URL as ``***``
  (`public_spec`; the same form the lock file uses) and the Jupyter token blanked (``up`` takes it
  from the build file; ``run --image`` makes a random one).

The image keeps no login, so ``apt-get update`` or ``conda install`` from a private source inside
a running container needs the login given there again.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from urllib.parse import SplitResult

    from frontend.spec import Spec

SECRETS_DIR = "/run/secrets"
NETRC_SECRET_ID = "envbuild-index-netrc"
NETRC_PATH = f"{SECRETS_DIR}/{NETRC_SECRET_ID}"
CRAN_SECRET_ID = "envbuild-cran-url"
JULIA_SECRET_ID = "envbuild-julia-pkg-server"
APT_AUTH_SECRET_ID = "envbuild-apt-auth"
APT_AUTH_PATH = "/etc/apt/auth.conf.d/envbuild.conf"
"""Where apt reads logins (apt_auth.conf(5)); a root-only mount while an apt step runs."""
CONDA_AUTH_SECRET_ID = "envbuild-conda-auth"
CONDA_AUTH_PATH = f"{SECRETS_DIR}/{CONDA_AUTH_SECRET_ID}"
"""rattler's auth file (``RATTLER_AUTH_FILE``): JSON, host -> ``BasicHTTP`` or ``CondaToken``."""

_NETRC_UNSAFE = re.compile(r"[\s\"'\\#]")
"""What a netrc word cannot hold."""
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s?#'\"]+)@")
"""``user:password@`` after a URL's scheme."""
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\",\[\]{}<>]+")
"""A URL in a free text (``sources.list``, ``.condarc``)."""
_CONDA_TOKEN = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+)/t/(?P<token>[^/\s]+)(?=/|$)")
"""An anaconda.org-style token leading a channel URL's path (``https://host/t/<token>/channel``):
where rattler puts back a ``CondaToken`` login, so the only place one is taken from."""


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


def strip_text(text: str) -> str:
    """Every URL in a free text (``sources.list``) without its ``user:password@``."""
    return _USERINFO.sub(lambda m: m["scheme"], text)


def _conda_token(url: str) -> tuple[str, str]:
    """A channel URL (without userinfo) without its leading ``/t/<token>``, and the token ("" if none)."""
    m = _CONDA_TOKEN.match(url)
    return (m["base"] + url[m.end() :], m["token"]) if m else (url, "")


def strip_conda(text: str) -> str:
    """Every URL in a channel or a ``.condarc`` without its ``user:password@`` and conda token."""
    return _URL.sub(lambda m: _conda_token(strip_url(m[0]))[0], text)


def redact_conda(text: str) -> str:
    """`redact_text`, and a conda token shown as ``/t/***`` (the label's form)."""

    def one(url: str) -> str:
        bare, token = _conda_token(url)
        return url.replace(f"/t/{token}", "/t/***", 1) if token and bare != url else url

    return _URL.sub(lambda m: one(redact_url(m[0])), text)


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
    return _netrc(_logins(urls, where=where, machine=lambda parts: parts.hostname or ""))


def apt_auth(spec: Spec) -> bytes:
    """apt's ``auth.conf`` (apt_auth.conf(5)) with the logins of the ``config.apt_source`` URLs, or
    b"" when they carry none. An entry without a scheme matches only https, so any other scheme is
    named; the URL's path keeps two repositories of one host apart."""
    src = spec.apt_source
    if src is None:
        return b""

    def machine(parts: SplitResult) -> str:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        scheme = "" if parts.scheme == "https" else f"{parts.scheme}://"
        return scheme + host + parts.path.rstrip("/")

    where = f"{src.pos}: config.apt_source" if src.pos else "config.apt_source"
    return _netrc(_logins(_URL.findall(src.text), where=where, machine=machine))


def _logins(
    urls: Iterable[str], *, where: str, machine: Callable[[SplitResult], str]
) -> dict[str, tuple[str, str | None]]:
    """The login and password each ``machine`` key gets from the ``urls`` that carry one."""
    from urllib.parse import unquote, urlsplit

    machines: dict[str, tuple[str, str | None]] = {}
    for url in urls:
        if not url or not has_credentials(url):
            continue
        parts = urlsplit(url)
        key = machine(parts)
        login = unquote(parts.username or "")
        password = unquote(parts.password) if parts.password is not None else None
        for word in (key, login, password or ""):
            if _NETRC_UNSAFE.search(word):
                raise UsageError(
                    f"{where}: the credentials of {redact_url(url)} contain whitespace, quotes, "
                    "'#' or a backslash, which a netrc file cannot hold; use a token without them"
                )
        if key in machines and machines[key] != (login, password):
            raise UsageError(f"{where}: its URLs give different credentials for {key}; a host can have one login")
        machines[key] = (login, password)
    return machines


def _netrc(machines: dict[str, tuple[str, str | None]]) -> bytes:
    lines = [
        f"machine {host} login {login}" + (f" password {password}" if password is not None else "")
        for host, (login, password) in machines.items()
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def conda_auth(spec: Spec) -> bytes:
    """rattler's auth file (``RATTLER_AUTH_FILE``) with the logins of the ``config.conda_channel``
    and ``install.conda_packages(channel=...)`` URLs, or b"" when they carry none: ``user:password@``
    as ``BasicHTTP``, a leading ``/t/<token>`` as ``CondaToken``, one per host (rattler's key)."""
    import json
    from urllib.parse import unquote, urlsplit

    found: list[tuple[str, str]] = []
    if spec.conda_channel is not None:
        where = f"{spec.conda_channel.pos}: config.conda_channel" if spec.conda_channel.pos else "config.conda_channel"
        found += [(url, where) for url in _URL.findall(spec.conda_channel.text)]
    for call in spec.conda_packages:
        where = f"{call.pos}: install.conda_packages" if call.pos else "install.conda_packages"
        found += [(url, where) for ch in call.channels for url in _URL.findall(ch)]
    hosts: dict[str, object] = {}
    for url, where in found:
        parts = urlsplit(url)
        _, token = _conda_token(strip_url(url))
        logins: list[object] = []
        if has_credentials(url):
            password = unquote(parts.password) if parts.password is not None else ""
            logins.append({"BasicHTTP": {"username": unquote(parts.username or ""), "password": password}})
        if token:
            logins.append({"CondaToken": token})
        host = parts.hostname or ""
        for login in logins:
            if hosts.setdefault(host, login) != login or len(logins) > 1:
                raise UsageError(f"{where}: the channel URLs give different logins for {host}; a host can have one")
    return json.dumps(hosts, indent=1).encode() if hosts else b""


def without_credentials(spec: Spec) -> Spec:
    """The spec the compiler turns into LLB: URLs without credentials (they go by `netrc`,
    `apt_auth` and `conda_auth`)."""
    changes: dict[str, object] = {}
    if spec.pip_index is not None and (
        has_credentials(spec.pip_index.url) or has_credentials(spec.pip_index.extra_url)
    ):
        changes["pip_index"] = replace(
            spec.pip_index, url=strip_url(spec.pip_index.url), extra_url=strip_url(spec.pip_index.extra_url)
        )
    if spec.pixi is not None and spec.pixi.pypi_index and has_credentials(spec.pixi.pypi_index):
        changes["pixi"] = replace(spec.pixi, pypi_index=strip_url(spec.pixi.pypi_index))
    if spec.apt_source is not None:
        changes["apt_source"] = replace(spec.apt_source, text=strip_text(spec.apt_source.text))
    if spec.conda_channel is not None:
        changes["conda_channel"] = replace(spec.conda_channel, text=strip_conda(spec.conda_channel.text))
    if spec.conda_packages:
        changes["conda_packages"] = tuple(
            replace(c, channels=tuple(strip_conda(ch) for ch in c.channels)) for c in spec.conda_packages
        )
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
    if spec.apt_source is not None:
        changes["apt_source"] = r(spec.apt_source, text=redact_text(spec.apt_source.text))
    if spec.conda_channel is not None:
        changes["conda_channel"] = r(spec.conda_channel, text=redact_conda(spec.conda_channel.text))
    for name in ("cran_mirror", "julia_pkg_server"):
        url = getattr(spec, name)
        if url is not None:
            changes[name] = r(url, url=redact_url(url.url))
    if spec.repo is not None:
        changes["repo"] = r(spec.repo, url=redact_url(spec.repo.url))
    if spec.conda_packages:
        changes["conda_packages"] = tuple(
            r(c, channels=tuple(redact_conda(ch) for ch in c.channels)) for c in spec.conda_packages
        )
    if spec.http:
        changes["http"] = tuple(r(h, url=redact_url(h.url)) for h in spec.http)
    return r(spec, **changes)
