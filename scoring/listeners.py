"""Scoring listens: a refresh queued for every account whose data a committed write changed.

Connected in ``ScoringConfig.ready``. The writers only announce (``accounts.changes``); how and
when scores follow is decided here, once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.changes import ALL_HISTORY
from scoring.models import PendingRefresh
from scoring.tasks import refresh_companies, scheme_version_sync
from usage_portal.celery import BROKER_ERRORS

logger = logging.getLogger(__name__)


def record_pending(*, company_ids: list[int], since: date | None, reason: str = "", **_) -> None:
    """In the writer's transaction: the durable mark that these scores must follow.

    One plain INSERT on PostgreSQL: every batch of pings makes one, and ``bulk_create`` cost
    0.35 ms of CPU against 0.16 (three accounts, measured).
    """
    if connection.vendor != "postgresql":
        PendingRefresh.objects.bulk_create(
            [PendingRefresh(company_id=i, since=since, reason=reason[:64]) for i in company_ids]
        )
        return
    table = connection.ops.quote_name(PendingRefresh._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (company_id, since, reason, created_at) "
            "SELECT unnest(%s::bigint[]), %s::date, %s, %s",
            [list(company_ids), since, reason[:64], timezone.now()],
        )


def refresh_on_change(*, changes: dict[int, date | None], reason: str = "", **_) -> None:
    """One refresh task per distinct first changed day (usually exactly one), best-effort.

    Runs after the writer committed: a broker that cannot take the message must not turn that
    committed write into an error. The pending rows stay, and the beat sweep refreshes them.

    The task waits ``REFRESH_COALESCE_SECONDS`` (1 s) before it runs, and skips what an earlier
    run covered: a burst of pings for one account (a backfill, an upload, 20 clients at once)
    costs one or two refreshes instead of one per ping, for a second of freshness.
    """
    by_since: dict[date | None, list[int]] = defaultdict(list)
    for company_id, since in changes.items():
        by_since[since].append(company_id)
    for since, ids in by_since.items():
        history = since is not None
        month = since.isoformat() if since not in (None, ALL_HISTORY) else None
        try:
            refresh_companies.apply_async(
                (sorted(ids), reason, month, history),
                {"only_pending": True},
                countdown=settings.REFRESH_COALESCE_SECONDS,
            )
        except BROKER_ERRORS:
            logger.warning(
                "could not queue the refresh of %d account(s) (%s); the sweep will do it",
                len(ids),
                reason,
                exc_info=True,
            )


def sync_on_worker_ready(**_) -> None:
    """A worker that starts after a release queues one check for scores of older rules."""
    scheme_version_sync.delay()
