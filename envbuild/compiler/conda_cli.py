"""A small conda-style command on py-rattler, shipped into images as ``conda`` (and ``micromamba``).

It is a standalone script (stdlib + ``rattler`` + ``yaml``): the compiler copies its text into the
image, where it runs from the conda tool venv. It gives users the everyday commands
(``create``/``install``/``list``/``env list``, ``-p/-n/-c/-y``, ``--file environment.yml``, conda's
``@EXPLICIT`` files with ``#sha256:`` hashes, ``--dry-run --json``, ``list --json``) without a vendor
download, reading channels and mirrors from ``/opt/conda/.condarc`` (``channels``,
``channel_alias``, ``custom_channels``) and ``ENVBUILD_CONDA_CHANNEL_ALIAS``, and the logins of
private channels from ``RATTLER_AUTH_FILE`` (a build mounts it as a secret; `client`).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = os.environ.get("ENVBUILD_CONDA_ROOT", "/opt/conda")
DEFAULT_ALIAS = "https://conda.anaconda.org/"
HISTORY = "conda-meta/envbuild-requested"


class CondaError(Exception):
    """A problem the user can fix (bad arguments, unknown env, unsolvable request)."""


def _yaml(path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise CondaError(f"{path}: expected a YAML mapping")
    return data


def condarc() -> dict:
    for path in (os.environ.get("CONDARC", ""), f"{ROOT}/.condarc", os.path.expanduser("~/.condarc")):
        if path and os.path.isfile(path):
            return _yaml(path)
    return {}


def channel_url(name: str, rc: dict) -> str:
    """A channel name as a URL: full URLs and paths pass through, names go through the mirrors."""
    if "://" in name:
        return name.rstrip("/")
    if name.startswith("/"):
        return "file://" + name.rstrip("/")
    custom = rc.get("custom_channels") or {}
    if name in custom:
        return f"{str(custom[name]).rstrip('/')}/{name}"
    alias = os.environ.get("ENVBUILD_CONDA_CHANNEL_ALIAS") or rc.get("channel_alias") or DEFAULT_ALIAS
    return f"{str(alias).rstrip('/')}/{name}"


def channels(cli: list[str], file_channels: list[str], override: bool, rc: dict) -> list[str]:
    names = list(cli) + list(file_channels)
    if not override:
        listed = rc["channels"] if "channels" in rc else ["conda-forge"]
        names += [c for c in listed or [] if c != "defaults"]
        if "defaults" in (listed or []):
            names += list(rc.get("default_channels") or ["conda-forge"])
    out: list[str] = []
    for n in names:
        u = channel_url(str(n), rc)
        if u not in out:
            out.append(u)
    return out


def prefix_of(args: argparse.Namespace, default_name: str | None = None) -> Path:
    if getattr(args, "prefix", None):
        return Path(args.prefix).absolute()
    name = getattr(args, "name", None) or default_name or os.environ.get("CONDA_DEFAULT_ENV") or "envd"
    if name == "base":
        return Path(ROOT)
    return Path(ROOT) / "envs" / name


def cache_dir() -> Path:
    return Path(os.environ.get("ENVBUILD_CONDA_PKGS") or os.path.expanduser("~/.cache/rattler"))


def client():
    """rattler's client with its authentication middleware, which reads the logins of private
    channels from ``RATTLER_AUTH_FILE`` (a build passes them so, from a secret): rattler's default
    client sends none."""
    from rattler.networking import AuthenticationMiddleware, Client

    return Client([AuthenticationMiddleware()])


def installed(prefix: Path) -> list:
    import rattler

    return [rattler.PrefixRecord.from_path(p) for p in sorted(glob.glob(str(prefix / "conda-meta" / "*-*-*.json")))]


def _requested(prefix: Path) -> list[str]:
    p = prefix / HISTORY
    return json.loads(p.read_text()) if p.is_file() else []


def _merge_specs(old: list[str], new: list[str]) -> list[str]:
    import rattler

    def key(s: str) -> str:
        return rattler.MatchSpec(s).name.normalized

    replaced = {key(s) for s in new}
    return [s for s in old if key(s) not in replaced] + new


def solve_install(prefix: Path, specs: list[str], chans: list[str], *, fresh: bool, dry_run: bool = False) -> list:
    import rattler

    if not chans:
        raise CondaError("no channels: pass -c CHANNEL or set channels in /opt/conda/.condarc")
    before = [] if fresh else installed(prefix)
    requested = _merge_specs([] if fresh else _requested(prefix), specs)
    platform = rattler.Platform.current()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    http = client()

    async def run() -> list:
        gateway = rattler.Gateway(cache_dir=cache / "repodata", client=http)
        sources = [rattler.Channel(c) for c in chans]
        records = await rattler.solve(
            sources,
            requested,
            gateway=gateway,
            platforms=[platform, "noarch"],
            locked_packages=[r for r in before],
            virtual_packages=rattler.VirtualPackage.detect(),
        )
        if not dry_run:
            await rattler.install(
                records, target_prefix=prefix, cache_dir=cache / "pkgs", installed_packages=before, show_progress=False,
                client=http,
            )
        return records

    try:
        records = asyncio.run(run())
    except Exception as e:  # rattler raises its own exception types per failure
        raise CondaError(f"could not solve or install {' '.join(requested)} from {', '.join(chans)}:\n{e}") from None
    if not dry_run:
        (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
        (prefix / HISTORY).write_text(json.dumps(requested))
    return records


def read_explicit(path: str) -> list[tuple[str, str]] | None:
    """A conda explicit file (``@EXPLICIT``, then ``URL#sha256:HEX`` or ``URL#MD5`` per package) as
    (url, hash) pairs; None when the file is not one."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    content = [line for line in lines if line and not line.startswith("#")]
    if not content or content[0] != "@EXPLICIT":
        return None
    out = []
    for line in content[1:]:
        url, _, digest = line.partition("#")
        if not url.startswith(("https://", "http://", "file:///")) or not (
            (digest.startswith("sha256:") and len(digest) == 71) or len(digest) == 32
        ):
            raise CondaError(f"{path}: {line!r} is not URL#sha256:HASH")
        out.append((url, digest))
    return out


def install_explicit(prefix: Path, entries: list[tuple[str, str]], *, fresh: bool) -> list:
    """Exactly these packages (and no others) in ``prefix``: each one's record from its channel's
    index, which must carry the listed hash; a package read from a local channel is hashed here (the
    installer checks downloads only)."""
    import hashlib

    import rattler

    before = [] if fresh else installed(prefix)
    groups: dict[tuple[str, str], list[str]] = {}
    for url, _ in entries:
        channel, subdir, fn = url.rsplit("/", 2)
        name = fn.rsplit("-", 2)[0]
        groups.setdefault((channel, subdir), []).append(name)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    http = client()

    async def run() -> list:
        gateway = rattler.Gateway(cache_dir=cache / "repodata", client=http)
        found = {}
        for (channel, subdir), names in groups.items():
            result = await gateway.query([rattler.Channel(channel)], [subdir], names, recursive=False)
            found.update({str(r.url): r for sub in result for r in sub})
        records = []
        for url, digest in entries:
            record = found.get(url)
            if record is None:
                raise CondaError(f"{url} is not in its channel's index any more")
            if digest.startswith("sha256:"):
                have = record.sha256.hex() if record.sha256 else ""
                want = digest[len("sha256:") :]
            else:
                have, want = (record.md5.hex() if record.md5 else ""), digest
            if have != want:
                raise CondaError(f"{url}: the channel's index says {have or 'no hash'}, the explicit file {want}")
            if url.startswith("file://") and digest.startswith("sha256:"):
                with open(url[len("file://") :], "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != want:
                        raise CondaError(f"{url}: the file's sha256 is not {want}")
            records.append(record)
        await rattler.install(
            records, target_prefix=prefix, cache_dir=cache / "pkgs", installed_packages=before, show_progress=False,
            client=http,
        )
        return records

    try:
        records = asyncio.run(run())
    except CondaError:
        raise
    except Exception as e:  # rattler raises its own exception types per failure
        raise CondaError(f"could not install the explicit packages:\n{e}") from None
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / HISTORY).write_text(json.dumps([f"{r.name.normalized}=={r.version}={r.build}" for r in records]))
    return records


def _record_json(r) -> dict:
    return {
        "name": r.name.normalized,
        "version": str(r.version),
        "build": str(r.build),
        "subdir": str(r.subdir),
        "url": str(r.url),
        "sha256": r.sha256.hex() if r.sha256 else "",
        "md5": r.md5.hex() if r.md5 else "",
    }


def _pip(prefix: Path, reqs: list[str]) -> None:
    if not reqs:
        return
    py = prefix / "bin" / "python"
    if os.path.exists("/usr/local/bin/uv"):
        cmd = ["/usr/local/bin/uv", "pip", "install", "--python", str(py), *reqs]
    else:
        cmd = [str(py), "-m", "pip", "install", *reqs]
    subprocess.run(cmd, check=True)


def _env_file(path: str) -> tuple[str | None, list[str], list[str], list[str]]:
    data = _yaml(path)
    specs: list[str] = []
    pip: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict):
            pip += [str(p) for p in dep.get("pip") or []]
        else:
            specs.append(str(dep))
    return data.get("name"), [str(c) for c in data.get("channels") or []], specs, pip


def cmd_create_install(args: argparse.Namespace, *, fresh: bool) -> int:
    rc = condarc()
    file_name, file_chans, specs, pip = (None, [], [], [])
    explicit: list[tuple[str, str]] = []
    for path in args.file or []:
        entries = read_explicit(path)
        if entries is not None:
            explicit += entries
            continue
        name, chans, more, more_pip = _env_file(path)
        file_name = file_name or name
        file_chans, specs, pip = file_chans + chans, specs + more, pip + more_pip
    specs = specs + list(args.specs)
    if explicit and specs:
        raise CondaError("an explicit file lists every package: no other specs or environment files with it")
    prefix = prefix_of(args, file_name)
    if not fresh and not (prefix / "conda-meta").is_dir():
        raise CondaError(f"no conda environment at {prefix} (create it with: conda create -p {prefix})")
    if fresh and not args.dry_run and (prefix / "conda-meta").is_dir() and any(prefix.iterdir()) and not args.yes:
        raise CondaError(f"{prefix} exists; pass -y to replace it")
    chans = channels(args.channel, file_chans, args.override_channels, rc) if specs else []
    if args.dry_run:
        records = solve_install(prefix, specs, chans, fresh=fresh, dry_run=True) if specs else []
        if args.json:
            print(json.dumps({"packages": [_record_json(r) for r in records], "pip": pip}, indent=1))
        else:
            for r in sorted(records, key=lambda r: r.name.normalized):
                print(f"  {r.name.normalized} {r.version} {r.build} {r.url}")
        return 0
    if fresh:
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "conda-meta").mkdir(exist_ok=True)
    if explicit:
        records = install_explicit(prefix, explicit, fresh=fresh)
    else:
        records = solve_install(prefix, specs, chans, fresh=fresh) if specs else []
    _pip(prefix, pip)
    print(f"{prefix}: {len(records)} packages in the environment")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    if not (prefix / "conda-meta").is_dir():
        raise CondaError(f"no conda environment at {prefix}")
    if args.json:
        records = sorted(installed(prefix), key=lambda r: r.name.normalized)
        print(json.dumps([_record_json(r) for r in records], indent=1))
        return 0
    print(f"# packages in environment at {prefix}:")
    print(f"# {'Name':<30} {'Version':<16} {'Build':<24} Channel")
    for r in sorted(installed(prefix), key=lambda r: r.name.normalized):
        print(f"{r.name.normalized:<32} {str(r.version):<16} {str(r.build):<24} {r.channel or ''}")
    return 0


def cmd_env_list(_: argparse.Namespace) -> int:
    print("# conda environments:")
    print(f"{'base':<24} {ROOT}")
    for p in sorted(glob.glob(f"{ROOT}/envs/*/conda-meta")):
        env = os.path.dirname(p)
        print(f"{os.path.basename(env):<24} {env}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=os.path.basename(sys.argv[0]) or "conda", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def target(sp: argparse.ArgumentParser) -> None:
        g = sp.add_mutually_exclusive_group()
        g.add_argument("-p", "--prefix")
        g.add_argument("-n", "--name")

    for name in ("create", "install"):
        sp = sub.add_parser(name)
        target(sp)
        sp.add_argument("-c", "--channel", action="append", default=[])
        sp.add_argument("--override-channels", action="store_true")
        sp.add_argument("-f", "--file", action="append", help="environment.yml or an @EXPLICIT file (repeatable)")
        sp.add_argument("-y", "--yes", action="store_true")
        sp.add_argument("-q", "--quiet", action="store_true")
        sp.add_argument("--dry-run", action="store_true", help="solve only; print what would be installed")
        sp.add_argument("--json", action="store_true", help="with --dry-run: the solved packages as JSON")
        sp.add_argument("specs", nargs="*")
    sp = sub.add_parser("list")
    target(sp)
    sp.add_argument("--json", action="store_true")
    env = sub.add_parser("env")
    env_sub = env.add_subparsers(dest="env_cmd", required=True)
    env_sub.add_parser("list")
    up = env_sub.add_parser("update")
    up.add_argument("-p", "--prefix")
    up.add_argument("-n", "--name")
    up.add_argument("-f", "--file", required=True)
    sub.add_parser("info").add_argument("--envs", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "create":
            return cmd_create_install(args, fresh=True)
        if args.cmd == "install":
            return cmd_create_install(args, fresh=False)
        if args.cmd == "list":
            return cmd_list(args)
        if args.cmd == "info" or (args.cmd == "env" and args.env_cmd == "list"):
            return cmd_env_list(args)
        if args.cmd == "env" and args.env_cmd == "update":
            ns = argparse.Namespace(
                prefix=args.prefix, name=args.name, file=[args.file], specs=[], channel=[],
                override_channels=False, yes=True, dry_run=False, json=False,
            )
            target = prefix_of(ns, None if (args.prefix or args.name) else _env_file(args.file)[0])
            return cmd_create_install(ns, fresh=not (target / "conda-meta").is_dir())
    except CondaError as e:
        print(f"{parser().prog}: error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # rattler's runtime threads sometimes crash during interpreter finalisation
