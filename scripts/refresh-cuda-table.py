#!/usr/bin/env python3
"""Refresh frontend/data/cuda.json from Docker Hub's tag list for nvidia/cuda (needs network).

    python scripts/refresh-cuda-table.py [--dry-run] [--min-version 11.3]

Reads every tag of docker.io/nvidia/cuda through the Hub API, keeps
``<version>-[cudnn<N>-|cudnn-]<devel|runtime>-ubuntu<XX.YY>`` tags that exist in both the devel
and runtime variants, and rewrites the table (with today's date). The PyTorch index mapping is kept
from the existing table; edit ``torch_index`` by hand when PyTorch publishes a new ``cuXYZ`` index.
Tests never run this: they use the committed table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import urllib.request
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "frontend" / "data" / "cuda.json"
HUB = "https://hub.docker.com/v2/namespaces/nvidia/repositories/cuda/tags?page_size=100"
TAG = re.compile(
    r"(?P<v>\d+\.\d+\.\d+)-(?:(?P<cudnn>cudnn\d*)-)?(?P<variant>devel|runtime)-ubuntu(?P<ubuntu>\d\d\.\d\d)"
)


def fetch_tags() -> list[str]:
    tags: list[str] = []
    url: str | None = HUB
    while url:
        with urllib.request.urlopen(url, timeout=60) as r:
            page = json.load(r)
        tags += [t["name"] for t in page.get("results", [])]
        url = page.get("next")
        print(f"\r{len(tags)} tags", end="", file=sys.stderr)
    print(file=sys.stderr)
    return tags


def vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def build_versions(tags: list[str], min_version: str, cudnn_major: dict[str, str]) -> dict[str, dict[str, object]]:
    seen: dict[tuple[str, str, str], set[str]] = {}
    for tag in tags:
        m = TAG.fullmatch(tag)
        if m and vkey(m["v"]) >= vkey(min_version):
            seen.setdefault((m["v"], m["cudnn"] or "", m["ubuntu"]), set()).add(m["variant"])
    versions: dict[str, dict[str, object]] = {}
    for (v, cudnn_tag, ubuntu), variants in sorted(seen.items()):
        if variants != {"devel", "runtime"}:
            continue
        entry = versions.setdefault(v, {"cudnn": {}, "ubuntu": [], "default_cudnn": ""})
        if cudnn_tag:
            digit = cudnn_tag.removeprefix("cudnn") or cudnn_major.get(".".join(v.split(".")[:2]), "9")
            entry["cudnn"][digit] = cudnn_tag  # type: ignore[index]
        if ubuntu not in entry["ubuntu"]:  # type: ignore[operator]
            entry["ubuntu"].append(ubuntu)  # type: ignore[union-attr]
    for v, entry in list(versions.items()):
        cudnn = entry["cudnn"]
        if not cudnn:
            del versions[v]
            continue
        entry["default_cudnn"] = max(cudnn, key=int)  # type: ignore[arg-type]
        entry["ubuntu"] = sorted(entry["ubuntu"])  # type: ignore[arg-type]
    return versions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="print the new table instead of writing it")
    ap.add_argument("--min-version", default="11.3.0", help="oldest CUDA version to keep")
    args = ap.parse_args()
    old = json.loads(TABLE.read_text())
    try:
        tags = fetch_tags()
    except OSError as e:
        print(f"cannot reach Docker Hub ({e}); the table is unchanged", file=sys.stderr)
        return 1
    # Tags spelled "-cudnn-" carry no digit: NVIDIA ships cuDNN 9 with them (CUDA 12.4 and later).
    versions = build_versions(tags, args.min_version, {})
    if not versions:
        print("no matching tags found; the table is unchanged", file=sys.stderr)
        return 1
    new = dict(old, versions=versions, date=dt.date.today().isoformat())
    text = json.dumps(new, indent=1, sort_keys=True) + "\n"
    if args.dry_run:
        print(text)
    else:
        TABLE.write_text(text)
        print(f"wrote {TABLE} ({len(versions)} CUDA versions)", file=sys.stderr)
    missing = sorted({".".join(v.split(".")[:2]) for v in versions} - set(old["torch_index"]), key=vkey)
    if missing:
        print(f"note: no PyTorch index mapped for CUDA {', '.join(missing)}; edit torch_index", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
