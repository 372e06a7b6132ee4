"""envbuild: build AI development environments from build.envd on BuildKit, and run them."""

__version__ = "0.1.0"
