"""Running environments: containers on the Docker engine, reached over SSH and Jupyter.

Heavy imports (the docker SDK) happen inside functions so importing this package stays cheap.
"""

from envbuild.runtime.options import RunOptions, name_from_dir, project_dir, validate_name

__all__ = ["RunOptions", "name_from_dir", "project_dir", "validate_name"]
