"""Health drops: when a measure's colour falls, and when it has recovered (pure rules).

GitLab's "Drop CTA": raised when License Utilization, User Engagement, SCM, CI, CD or
DevSecOps falls Green → Yellow or Red, or Yellow → Red, on a CSM-owned account. NA is no colour:
a fall to NA, or a rise from it, is neither a drop nor a recovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .schemes import GREEN, RED, USE_CASE_LABELS, YELLOW

#: The measures watched, by key, with the score column that holds each one's colour.
DROP_MEASURES: Mapping[str, str] = {
    "license_utilization": "license_utilization_color",
    "user_engagement": "user_engagement_color",
    "scm": "scm_color",
    "ci": "ci_color",
    "cd": "cd_color",
    "devsecops": "devsecops_color",
}
MEASURE_LABELS: Mapping[str, str] = {key: USE_CASE_LABELS[key] for key in DROP_MEASURES}
_RANK = {RED: 0, YELLOW: 1, GREEN: 2}


def is_drop(before: str | None, after: str | None) -> bool:
    """Green → Yellow/Red or Yellow → Red."""
    return before in _RANK and after in _RANK and _RANK[after] < _RANK[before]


def has_recovered(dropped_from: str, now: str | None) -> bool:
    """Back at (or above) the colour it dropped from."""
    return now in _RANK and _RANK[now] >= _RANK[dropped_from]


@dataclass(frozen=True, slots=True)
class Move:
    """What one new score means for one measure's open alert (or for raising one)."""

    measure: str
    before: str | None
    after: str | None

    @property
    def label(self) -> str:
        return MEASURE_LABELS[self.measure]


def moves(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> list[Move]:
    """Each watched measure whose colour changed between two scores (by score column)."""
    out = []
    for measure, column in DROP_MEASURES.items():
        old, new = before.get(column), after.get(column)
        if old != new:
            out.append(Move(measure, old, new))
    return out
