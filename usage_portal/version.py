"""The portal's version: ``[project] version`` in pyproject.toml, one number for every reader.

The portal runs from its checkout (README, "Running on PostgreSQL and Redis"), so the checkout's
own pyproject.toml comes first: after a ``git pull`` without a reinstall, the installed metadata
would still name the previous release. The metadata is the fallback for a copy without the file.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "usage-portal"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
UNKNOWN = "unknown"


@cache
def portal_version() -> str:
    version = pyproject_version()
    if version != UNKNOWN:
        return version
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def pyproject_version(path: Path = PYPROJECT) -> str:
    try:
        with path.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN
