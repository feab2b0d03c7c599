"""The rows of the Product Usage Reporting dashboard, and the "no usage data" rule it filters on.

``dashboard_accounts()`` is the selector: every company with the figures of the dashboard, read
from the account's stored listing (``Company.listing_*``: its current scorecard's figures and
colours, its instance counts by type and its last ping, kept by ``scoring.listing``). One table,
no join but the CSM's: the count, the page's keys and the page's rows each read a few index
pages, whatever the book's size and whatever the sort (one index per sort order).

``NO_USAGE_DATA`` (over the ``snap`` alias of ``current_snapshot()``) is the data-quality
report's list of accounts without usage data; ``NO_USAGE_DATA_LISTED`` is the same rule over the
listing, which copies those two figures from the same snapshot, so both pages name the same
accounts.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import (
    CharField,
    Exists,
    F,
    FilteredRelation,
    Func,
    OuterRef,
    Q,
    QuerySet,
)

from accounts.models import LISTING_RANKS, Company
from instances.models import Instance
from usage_portal.web.kit.tables import PlaceIn

#: Dashboard annotation → the listing field it reads.
FIGURES = {
    "licensed_seats": "listing_licensed_seats",
    "billable_users": "listing_billable_users",
    "license_utilization": "listing_license_utilization",
    "product_usage_value": "listing_product_usage",
    "last_ping_at": "listing_last_ping_at",
    "n_production": "listing_production",
    "n_non_production": "listing_non_production",
    "n_unknown": "listing_unknown",
    "n_other": "listing_other",
}
#: Colour annotation → the listing's rank of that colour (its filter and its sort key).
RANKS = {
    "lu_color": "listing_lu_rank",
    "ue_color": "listing_ue_rank",
    "scm_color": "listing_scm_rank",
    "ci_color": "listing_ci_rank",
    "cd_color": "listing_cd_rank",
    "devsecops_color": "listing_devsecops_rank",
    "product_usage_color": "listing_product_usage_rank",
    "overall_color": "listing_overall_rank",
}

#: Accounts whose usage could not be scored: no current scorecard, or one in which neither
#: License Utilization nor Overall product usage has a value (no fresh ping from an included
#: Production instance, too early to score, nothing measurable in the pings). An account that
#: shows a usage score is never among them: GitLab before 14.0 reports no billable users, yet
#: its CD and DevSecOps still make a product usage score. Reads the ``snap`` alias of
#: ``current_snapshot()``; ``NO_USAGE_DATA_HELP`` says it in words, on the filter.
NO_USAGE_DATA = Q(snap__id__isnull=True) | Q(
    snap__license_utilization__isnull=True, snap__product_usage_value__isnull=True
)
#: ``NO_USAGE_DATA`` over the account's listing: an account without a current scorecard lists
#: neither figure.
NO_USAGE_DATA_LISTED = Q(
    listing_license_utilization__isnull=True, listing_product_usage__isnull=True
)
NO_USAGE_DATA_HELP = (
    "Neither License Utilization nor Overall product usage could be scored: not scored yet, "
    "no recent ping from a Production instance, or too early to score."
)


def current_snapshot() -> FilteredRelation:
    """The company's current score snapshot, to join as the ``snap`` alias."""
    return FilteredRelation("score_snapshots", condition=Q(score_snapshots__is_current=True))


def company_instances(**filters) -> QuerySet[Instance]:
    """The outer company's instances (for a correlated subquery), unordered."""
    return Instance.objects.filter(company=OuterRef("pk"), **filters).order_by()


class RankColor(Func):
    """The colour a listing rank stands for (rank 3: NA, also for an account never scored).

    One node with the rank as its only source: a ``Case`` of ``When``s is copied clause by
    clause each time a query is built from it, eight of them on every dashboard query.
    """

    template = (
        "CASE %(expressions)s "
        + " ".join(f"WHEN {rank} THEN '{color}'" for rank, color in enumerate(LISTING_RANKS))
        + " END"
    )
    output_field = CharField()


def owners_by_name() -> list[int]:
    """The ids of the people who own accounts, in the order the CSM column sorts them (by
    first name, last name, username): one small query."""
    owners = get_user_model().objects.filter(Exists(Company.objects.filter(csm=OuterRef("pk"))))
    return list(
        owners.order_by("first_name", "last_name", "username", "pk").values_list("pk", flat=True)
    )


def csm_order(*, descending: bool) -> tuple:
    """The dashboard's CSM sort: the owner's place by name (unowned accounts last), then the
    account. Ranks the owners in one small query rather than joining them to every account and
    sorting 50,000 rows on three names; the paginator then reads a page from the owners it
    spans only (``kit.tables.TwoStepPaginator``)."""
    if not (owners := owners_by_name()):
        return ("-pk",) if descending else ("pk",)
    place = PlaceIn(F("csm_id"), owners)
    if descending:
        return (place.desc(), F("pk").desc())
    return (place.asc(), F("pk").asc())


def dashboard_accounts() -> QuerySet[Company]:
    """Every company with the figures of the dashboard, as annotations (see module docstring)."""
    return (
        Company.objects.select_related("csm")
        .annotate(**{name: F(field) for name, field in FIGURES.items()})
        .annotate(**{name: RankColor(F(field)) for name, field in RANKS.items()})
    )
