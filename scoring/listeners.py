"""Scoring listens: a refresh queued for every account whose data a committed write changed.

Connected in ``ScoringConfig.ready``. The writers only announce (``accounts.changes``); how and
when scores follow is decided here, once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from accounts.changes import ALL_HISTORY
from scoring.tasks import refresh_companies, scheme_version_sync


def refresh_on_change(*, changes: dict[int, date | None], reason: str = "", **_) -> None:
    """One refresh task per distinct first changed day (usually exactly one)."""
    by_since: dict[date | None, list[int]] = defaultdict(list)
    for company_id, since in changes.items():
        by_since[since].append(company_id)
    for since, ids in by_since.items():
        history = since is not None
        month = since.isoformat() if since not in (None, ALL_HISTORY) else None
        refresh_companies.delay(sorted(ids), reason, month, history)


def sync_on_worker_ready(**_) -> None:
    """A worker that starts after a release queues one check for scores of older rules."""
    scheme_version_sync.delay()
