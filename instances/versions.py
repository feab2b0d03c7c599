"""GitLab version strings: the one place they are parsed, ordered and counted in releases.

Pure functions. The parser, the scoring engine (a metric "not reported before 14.0"), the
instance store (``Instance.version_sort``) and the version report all read versions through here,
so "15.4.2-ee", "v16.9" and "12.10.0-pre" mean the same thing everywhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

Version = tuple[int, int, int]
#: A GitLab minor release, ``(major, minor)``.
Release = tuple[int, int]

_VERSION_RE = re.compile(r"\s*v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")

#: The last minor release of each GitLab major that did not end at x.11 (13.12, 14.10, ...).
#: GitLab ships a minor release every month and a major every May, so from 16 on it is x.11.
LAST_MINOR = {11: 11, 12: 10, 13: 12, 14: 10, 15: 11}
DEFAULT_LAST_MINOR = 11


@lru_cache(maxsize=4096)
def parse_version(version: str | None) -> Version | None:
    """(major, minor, patch) from "15.4.2-ee", "12.10.0-pre" or "16.9" (patch 0), else None."""
    if not version:
        return None
    match = _VERSION_RE.match(version)
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def release(version: str | None) -> Release | None:
    """``"15.4.2-ee"`` → ``(15, 4)``; None when absent or unparseable."""
    parsed = parse_version(version)
    return parsed[:2] if parsed else None


def sort_key(version: Version | None) -> int | None:
    """An integer that orders versions (``Instance.version_sort``): 16.5.1 → 16_005_001."""
    if not version:
        return None
    major, minor, patch = version
    return major * 1_000_000 + min(minor, 999) * 1_000 + min(patch, 999)


def release_of(version_sort: int | None) -> Release | None:
    """``16_005_001`` → ``(16, 5)``: the release of a stored sort key."""
    if version_sort is None:
        return None
    return version_sort // 1_000_000, version_sort // 1_000 % 1_000


def release_label(release: Release | None) -> str:
    return f"{release[0]}.{release[1]}" if release else "—"


def _previous(release: Release) -> Release:
    major, minor = release
    if minor > 0:
        return major, minor - 1
    return major - 1, LAST_MINOR.get(major - 1, DEFAULT_LAST_MINOR)


def releases_behind(release: Release | None, newest: Release | None) -> int | None:
    """How many minor releases ``release`` is behind ``newest`` (0 when it is the newest)."""
    if release is None or newest is None:
        return None
    if release >= newest:
        return 0
    count, cursor = 0, newest
    while cursor > release:
        cursor = _previous(cursor)
        count += 1
    return count


def release_n_behind(newest: Release, n: int) -> Release:
    """The release ``n`` minor releases before ``newest``."""
    cursor = newest
    for _ in range(max(n, 0)):
        cursor = _previous(cursor)
    return cursor
