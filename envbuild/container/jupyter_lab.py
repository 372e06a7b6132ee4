"""`jupyter lab`, started by envbuild's supervisor without ~1.2 s of import time.

jsonschema imports rfc3987_syntax (its "iri" format checker) eagerly, and that module builds ~35
Lark parsers at import: over a second of every Jupyter start, for a format no Jupyter schema uses.
Here the module is a stand-in that imports the real one on first use, so checks behave the same.
Calling JupyterLab's entry point directly also skips `jupyter`'s exec of `jupyter-lab`.
"""

import importlib
import importlib.util
import os
import sys
import types

_NAME = "rfc3987_syntax"
_stand_in = types.ModuleType(_NAME)


def _real() -> types.ModuleType:
    if sys.modules.get(_NAME) is _stand_in:
        del sys.modules[_NAME]
    return importlib.import_module(_NAME)


def _is_valid_syntax(*args, **kwargs):
    return _real().is_valid_syntax(*args, **kwargs)


def _getattr(attr: str):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return getattr(_real(), attr)


def defer_rfc3987_syntax() -> bool:
    """Put the stand-in in place when the real module is installed and not yet imported."""
    if _NAME in sys.modules or importlib.util.find_spec(_NAME) is None:
        return False
    _stand_in.is_valid_syntax = _is_valid_syntax
    _stand_in.__getattr__ = _getattr
    sys.modules[_NAME] = _stand_in
    return True


def main() -> None:
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # /etc/envbuild: not a place to import from (`jupyter-lab` has its bin dir)
    defer_rfc3987_syntax()
    from jupyterlab.labapp import main as lab

    sys.argv[0] = "jupyter-lab"
    sys.exit(lab())


if __name__ == "__main__":
    main()
