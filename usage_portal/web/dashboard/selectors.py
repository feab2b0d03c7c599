"""The rows of the Product Usage Reporting dashboard, and the "no usage data" rule it filters on.

``dashboard_accounts()`` is the selector: every company with its current score snapshot (a
``FilteredRelation`` join, at most one row per company thanks to ``one_current_snapshot``), its
CSM, and instance counts by type as correlated subqueries on the ``(company, instance_type)``
index. No ``GROUP BY``: the page costs the same few queries for 12 accounts or 5,000, and a
``LIMIT`` lets the database compute the subqueries for the 50 rows it shows only.

``NO_USAGE_DATA`` (over the ``snap`` alias of ``current_snapshot()``) is also the data-quality
report's list of accounts without usage data, so both pages name the same accounts.
"""

from __future__ import annotations

from django.db.models import (
    DateTimeField,
    F,
    FilteredRelation,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)

from accounts.models import Company
from instances.models import Instance, InstanceType
from usage_portal.web.kit.expressions import SubqueryCount, SubqueryMax

#: Instance-count columns: annotation → the instance types it counts.
INSTANCE_COUNTS = {
    "n_production": (InstanceType.PRODUCTION,),
    "n_non_production": (InstanceType.NON_PRODUCTION,),
    "n_unknown": (InstanceType.UNKNOWN,),
    "n_other": (InstanceType.OBSOLETE, InstanceType.GEO_SECONDARY),
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


def _count(types) -> Subquery:
    counted = company_instances(instance_type__in=types).annotate(n=SubqueryCount())
    return Subquery(counted.values("n"), output_field=IntegerField())


def _last_ping() -> Subquery:
    newest = company_instances().annotate(newest=SubqueryMax("last_ping_at"))
    return Subquery(newest.values("newest"), output_field=DateTimeField())


def dashboard_accounts() -> QuerySet[Company]:
    """Every company with the figures of the dashboard, as annotations (see module docstring)."""
    return (
        Company.objects.alias(snap=current_snapshot())
        .select_related("csm")
        .annotate(
            snapshot_id=F("snap__id"),
            licensed_seats=F("snap__licensed_seats"),
            billable_users=F("snap__billable_users"),
            license_utilization=F("snap__license_utilization"),
            lu_color=F("snap__license_utilization_color"),
            ue_color=F("snap__user_engagement_color"),
            scm_color=F("snap__scm_color"),
            ci_color=F("snap__ci_color"),
            cd_color=F("snap__cd_color"),
            devsecops_color=F("snap__devsecops_color"),
            product_usage_value=F("snap__product_usage_value"),
            product_usage_color=F("snap__product_usage_color"),
            overall_color=F("snap__overall_color"),
            as_of=F("snap__as_of"),
            last_ping_at=_last_ping(),
            **{name: _count(types) for name, types in INSTANCE_COUNTS.items()},
        )
    )
