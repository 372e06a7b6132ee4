"""Command-line entry point (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("envbuild: the CLI is not built yet")
