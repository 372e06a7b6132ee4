"""envbuild."""
