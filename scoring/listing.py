"""The account's listing: its current scorecard's figures and its instances, stored on it.

The dashboard sorts and filters every account (50,000 of them) on its scorecard's colours and
figures, its instance counts by type and its last ping. Read through a join to the current
snapshot and a correlated subquery per count, one page of a sort costs the whole book; stored
on ``Company`` (the ``listing_*`` fields) each sort order reads an index (see
``accounts.models._listing_indexes``).

``listings_refresh`` is their one writer and their one definition. ``_score_locked`` runs it
for every account whose snapshot it writes, in the same transaction under the same row locks,
and that is enough to keep them true: a snapshot is written exactly when the account's inputs
hash changes, and the hash covers each of its instances (id, applied type) and the newest ping
of each (``scoring.services.inputs_hash``) — all that the counts and the last ping are made
of. Whatever else writes current snapshots (a backfill, the tests' hand-made books) runs it too.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Case, Count, IntegerField, Max, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce

from accounts.models import LISTING_NA_RANK, LISTING_RANKS, Company
from instances.models import Instance, InstanceType
from scoring.models import ScoreSnapshot

#: Company field → the current snapshot's figure it copies.
FIGURES = {
    "listing_license_utilization": "license_utilization",
    "listing_product_usage": "product_usage_value",
    "listing_licensed_seats": "licensed_seats",
    "listing_billable_users": "billable_users",
}
#: Company field → the current snapshot's colour it ranks (``LISTING_RANKS``).
RANKS = {
    "listing_lu_rank": "license_utilization_color",
    "listing_ue_rank": "user_engagement_color",
    "listing_scm_rank": "scm_color",
    "listing_ci_rank": "ci_color",
    "listing_cd_rank": "cd_color",
    "listing_devsecops_rank": "devsecops_color",
    "listing_product_usage_rank": "product_usage_color",
    "listing_overall_rank": "overall_color",
}
#: Company field → the instance types it counts ("Other": obsolete and Geo secondary nodes).
COUNTS = {
    "listing_production": (InstanceType.PRODUCTION,),
    "listing_non_production": (InstanceType.NON_PRODUCTION,),
    "listing_unknown": (InstanceType.UNKNOWN,),
    "listing_other": (InstanceType.OBSOLETE, InstanceType.GEO_SECONDARY),
}
LAST_PING = "listing_last_ping_at"


def color_rank(color: str | None) -> int:
    """``"Red"`` → 0, ``"Yellow"`` → 1, ``"Green"`` → 2; NA, blank or none → 3."""
    return LISTING_RANKS.index(color) if color in LISTING_RANKS else LISTING_NA_RANK


def _rank_of(field: str) -> Case:
    return Case(
        *(When(**{field: color}, then=Value(rank)) for rank, color in enumerate(LISTING_RANKS)),
        default=Value(LISTING_NA_RANK),
        output_field=IntegerField(),
    )


def listing_expressions() -> dict:
    """Each listing field as an expression over the outer company (for ``update``)."""
    current = ScoreSnapshot.objects.filter(company=OuterRef("pk"), is_current=True).order_by()
    instances = Instance.objects.filter(company=OuterRef("pk")).order_by()
    per_company = instances.values("company")  # GROUP BY the one outer company
    values = {field: Subquery(current.values(figure)) for field, figure in FIGURES.items()}
    for field, color in RANKS.items():
        ranked = current.annotate(rank=_rank_of(color)).values("rank")
        values[field] = Coalesce(Subquery(ranked), Value(LISTING_NA_RANK))
    for field, types in COUNTS.items():
        counted = per_company.filter(instance_type__in=types).annotate(n=Count("pk")).values("n")
        values[field] = Coalesce(Subquery(counted), Value(0))
    values[LAST_PING] = Subquery(per_company.annotate(m=Max("last_ping_at")).values("m"))
    return values


def listings_refresh(company_ids: Iterable[int] | None = None) -> int:
    """Rewrite these accounts' listing (every account's: ``None``) from their current snapshot
    and their instances, in one statement; returns the accounts written.

    An account without a current snapshot lists no figures and NA colours, as its scorecard
    page says; its instance counts are its instances' all the same.
    """
    companies = Company.objects.all()
    if company_ids is not None:
        companies = companies.filter(id__in=list(company_ids))
    return companies.update(**listing_expressions())
