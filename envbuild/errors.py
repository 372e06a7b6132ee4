"""Errors the application reports to users, each with the exit code the CLI ends with.

Exit codes (documented in the README):
  0 success; 1 build or run failure; 2 usage error (bad build file, bad option);
  3 builder or engine unreachable; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class EnvbuildError(Exception):
    """Root of envbuild's own errors; the message is what the user sees."""

    exit_code: int = EXIT_FAILURE


class UsageError(EnvbuildError):
    """A mistake in a build file, an option or an argument."""

    exit_code = EXIT_USAGE


class EngineUnreachable(EnvbuildError):
    """The Docker engine or the BuildKit builder could not be reached."""

    exit_code = EXIT_UNREACHABLE


class BuildFailed(EnvbuildError):
    """A build step failed."""


class RuntimeFailure(EnvbuildError):
    """Starting, reaching or stopping an environment failed."""
