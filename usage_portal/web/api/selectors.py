"""What the health API reads: accounts' current score snapshots, one by CRM id or a page."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from accounts.models import Company
from scoring.models import ScoreSnapshot
from usage_portal.web.api.pagination import Position


def current_snapshot(crm_account_id: str) -> ScoreSnapshot | None:
    """The account's current snapshot (with its company), or None if unscored or unknown."""
    return (
        ScoreSnapshot.objects.filter(company__crm_account_id=crm_account_id, is_current=True)
        .select_related("company")
        .first()
    )


def account_exists(crm_account_id: str) -> bool:
    return Company.objects.filter(crm_account_id=crm_account_id).exists()


def current_snapshots_page(
    *, updated_since: datetime | None, after: Position | None, limit: int
) -> list[ScoreSnapshot]:
    """Up to ``limit + 1`` current snapshots in ``(computed_at, id)`` order — the one past the
    page says there is a next — in one query whatever the page size.

    ``updated_since``: only accounts whose health was computed at or after it ("changed since
    my last sync": a snapshot is written only when an account's inputs changed). Accounts
    never scored have no snapshot and are not listed.
    """
    snapshots = ScoreSnapshot.objects.filter(is_current=True)
    if updated_since is not None:
        snapshots = snapshots.filter(computed_at__gte=updated_since)
    if after is not None:
        snapshots = snapshots.filter(
            Q(computed_at__gt=after.computed_at)
            | Q(computed_at=after.computed_at, id__gt=after.snapshot_id)
        )
    return list(
        snapshots.select_related("company")
        # The payload reads the scorecard and the CRM id only: no wide company row per account.
        .only("id", "computed_at", "detail", "company__crm_account_id")
        .order_by("computed_at", "id")[: limit + 1]
    )
