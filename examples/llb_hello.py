"""Builds a one-step LLB graph and writes the serialised Definition to stdout.

Run it with BuildKit's own CLI, for example:

    python examples/llb_hello.py | buildctl build --output type=image,name=hello:latest

or print it readably with `python examples/llb_hello.py --json` / `--dot`.
"""

from __future__ import annotations

import sys

import llb


def build() -> llb.State:
    return llb.image("local/debian:bookworm").run("sh -c 'echo hi > /hello'").root()


def main(argv: list[str]) -> int:
    definition = build().marshal()
    if "--json" in argv:
        sys.stdout.write(definition.to_json_text())
    elif "--dot" in argv:
        sys.stdout.write(definition.to_dot())
    else:
        definition.write_to(sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
