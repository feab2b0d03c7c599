"""What the drops worklist reads: alerts narrowed by scope, measure, status and age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from scoring.drops import MEASURE_LABELS
from scoring.models import AlertStatus, HealthAlert

AGES = {"": "any age", "7": "open 7 days or more", "30": "open 30 days or more"}
LIMIT = 500  # a worklist, not an archive: the newest first


@dataclass(frozen=True, slots=True)
class Narrowing:
    mine: bool
    measure: str
    status: str
    age: str
    account: int | None

    @classmethod
    def of(cls, params, *, csm: bool) -> Narrowing:
        measure = params.get("measure", "")
        status = params.get("status", AlertStatus.OPEN)
        age = params.get("age", "")
        account = params.get("account", "")
        return cls(
            mine=csm and params.get("who", "mine") != "all",
            measure=measure if measure in MEASURE_LABELS else "",
            status=status if status in AlertStatus.values else AlertStatus.OPEN,
            age=age if age in AGES else "",
            account=int(account) if account.isdigit() else None,
        )


def alerts_list(user, narrowing: Narrowing) -> QuerySet[HealthAlert]:
    """The alerts to show, newest first, with their account, CSM and closer (one query)."""
    rows = HealthAlert.objects.select_related("company", "company__csm", "closed_by").filter(
        status=narrowing.status
    )
    if narrowing.mine:
        rows = rows.filter(company__csm=user)
    if narrowing.measure:
        rows = rows.filter(measure=narrowing.measure)
    if narrowing.account is not None:
        rows = rows.filter(company_id=narrowing.account)
    if narrowing.age:
        rows = rows.filter(raised_at__lte=timezone.now() - timedelta(days=int(narrowing.age)))
    return rows.order_by("-raised_at", "-pk")[:LIMIT]
