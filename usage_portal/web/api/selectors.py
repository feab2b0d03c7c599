"""What the health API reads: an account's current score snapshot, by its CRM id."""

from __future__ import annotations

from accounts.models import Company
from scoring.models import ScoreSnapshot


def current_snapshot(crm_account_id: str) -> ScoreSnapshot | None:
    """The account's current snapshot (with its company), or None if unscored or unknown."""
    return (
        ScoreSnapshot.objects.filter(company__crm_account_id=crm_account_id, is_current=True)
        .select_related("company")
        .first()
    )


def account_exists(crm_account_id: str) -> bool:
    return Company.objects.filter(crm_account_id=crm_account_id).exists()
