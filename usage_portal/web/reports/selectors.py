"""Selectors of the cross-account instance reports: querysets with what each report shows.

Each selector returns a lazy queryset with everything its report shows as annotations, so a page
costs a fixed number of queries whatever the size of the book: CSM Burn-Down, GitLab version
details, and the data-quality lists. Their filter sets are in ``filters``; the stale threshold is
``scoring.services.stale_ping_days()`` and "included in health" is
``Instance.objects.health_eligible()``, the engine's own rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import (
    Count,
    Exists,
    F,
    FloatField,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from accounts.models import Company, Deployment, Subscription, csm_owned_q
from instances.models import (
    Instance,
    InstanceKind,
    InstanceType,
    LabelChange,
    LabelField,
    LicenseMappingChange,
    RejectedPayload,
    UsagePing,
)
from instances.versions import Release, release_of
from scoring.services import stale_ping_days
from usage_portal.web.dashboard.selectors import (
    NO_USAGE_DATA,
    company_instances,
    current_snapshot,
)
from usage_portal.web.kit.expressions import SubqueryCount

# --------------------------------------------------------------------------------------------------
# GitLab versions


def newest_release() -> Release | None:
    """The newest GitLab release any self-managed instance reports (one query)."""
    newest = Instance.objects.filter(kind=InstanceKind.SELF_MANAGED).aggregate(
        v=Max("version_sort")
    )["v"]
    return release_of(newest)


def self_managed_versions() -> QuerySet[Instance]:
    """Every self-managed instance that reported a version, with its account and CSM."""
    return Instance.objects.filter(
        kind=InstanceKind.SELF_MANAGED, version_sort__isnull=False
    ).select_related("company", "company__csm", "subscription")


def version_counts(queryset: QuerySet[Instance]) -> list[dict]:
    """Instances per (major.minor, instance type) of ``queryset``, oldest release first."""
    return list(
        queryset.order_by()
        .annotate(release=F("version_sort") / 1_000)
        .values("release", "instance_type")
        .annotate(n=Count("pk"))
        .order_by("release", "instance_type")
    )


# --------------------------------------------------------------------------------------------------
# CSM Burn-Down


def _stale_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=stale_ping_days())


def _latest_ping(field: str) -> Subquery:
    """``field`` of the instance's newest ping (``last_ping_at`` is its ``recorded_at``)."""
    return Subquery(
        UsagePing.objects.filter(instance=OuterRef("pk"), recorded_at=OuterRef("last_ping_at"))
        .order_by()
        .values(field)[:1]
    )


def _account_billable_users(cutoff: datetime) -> Subquery:
    """Billable users over the account's reporting instances (this one always counted)."""
    pings = (
        UsagePing.objects.filter(
            instance__company=OuterRef("company"), recorded_at=F("instance__last_ping_at")
        )
        .filter(Q(instance__last_ping_at__gte=cutoff) | Q(instance=OuterRef("pk")))
        .order_by()
        .values("instance__company")
        .annotate(total=Sum("billable_users"))
        .values("total")
    )
    return Subquery(pings)


def csm_owned_unknown_instances() -> QuerySet[Instance]:
    """Unknown instances on CSM-owned accounts (Strategic/Growth with a CSM)."""
    return Instance.objects.unknown().filter(csm_owned_q("company__"))


def _pending_type(field: str) -> Subquery:
    """``field`` of the instance's pending instance-type change (at most one is pending)."""
    return Subquery(
        LabelChange.objects.pending()
        .filter(instance=OuterRef("pk"), field=LabelField.INSTANCE_TYPE)
        .order_by()
        .values(field)[:1]
    )


def burndown_instances(now: datetime | None = None) -> QuerySet[Instance]:
    """The CSM Burn-Down rows with the evidence needed to label each instance.

    ``first_seen`` is the first ping (or when the instance was created), ``billable`` and
    ``umau`` come from its newest ping, and ``usage_share`` is its billable users over those of
    every instance of the account that reported in the last ``STALE_INSTANCE_DAYS`` days.
    ``pending_type`` and ``pending_at`` are a pending type change and when it applies: the
    instance stays Unknown (and listed) until then.
    """
    cutoff = _stale_cutoff(now)
    return (
        csm_owned_unknown_instances()
        .select_related("company", "company__csm", "subscription")
        .annotate(
            first_seen=Coalesce("first_ping_at", "created_at"),
            billable=_latest_ping("billable_users"),
            umau=_latest_ping("umau"),
            account_billable=_account_billable_users(cutoff),
            pending_type=_pending_type("new_value"),
            pending_at=_pending_type("effective_at"),
        )
        .annotate(
            usage_share=Cast(F("billable"), FloatField())
            / NullIf(Cast(F("account_billable"), FloatField()), Value(0.0))
        )
    )


def burndown_counts_by_csm() -> list[dict]:
    """Unknown CSM-owned instances per CSM: how many, on how many accounts, the oldest."""
    return list(
        csm_owned_unknown_instances()
        .order_by()
        .values(
            "company__csm",
            "company__csm__username",
            "company__csm__first_name",
            "company__csm__last_name",
        )
        .annotate(
            instances=Count("pk"),
            accounts=Count("company", distinct=True),
            oldest=Min(Coalesce("first_ping_at", "created_at")),
        )
        .order_by("-instances", "company__csm__username")
    )


# --------------------------------------------------------------------------------------------------
# Data quality


def unmapped_licenses() -> QuerySet:
    """Pings whose license maps to no subscription, grouped by license (dicts, one per license)."""
    return (
        UsagePing.objects.unmapped()
        .filter(license__isnull=False)
        .values("license")
        .annotate(
            md5=F("license__md5"),
            sha256=F("license__sha256"),
            subscription_name=F("license__subscription_name"),
            plan=F("license__plan"),
            pings=Count("pk"),
            instances=Count("instance", distinct=True),
            first_seen=Min("recorded_at"),
            last_seen=Max("recorded_at"),
        )
        .order_by("-last_seen", "license")
    )


def unmapped_license_instances(license_ids) -> dict[int, list[dict]]:
    """The instances that sent each license's unmapped pings (one query)."""
    rows = (
        UsagePing.objects.unmapped()
        .filter(license_id__in=list(license_ids))
        .order_by()
        .values("license_id", "instance_id", "instance__hostname", "instance__uuid")
        .distinct()
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row["license_id"], []).append(row)
    for instances in found.values():
        instances.sort(key=lambda r: (r["instance__hostname"], r["instance_id"]))
    return found


def unlinked_namespaces() -> QuerySet[Instance]:
    """SaaS namespaces whose pings name no known subscription, so no account sees them."""
    return Instance.objects.filter(kind=InstanceKind.SAAS, subscription__isnull=True).annotate(
        subscription_seen=Subquery(
            UsagePing.objects.filter(instance=OuterRef("pk"))
            .exclude(license_subscription_id="")
            .order_by("-recorded_at")
            .values("license_subscription_id")[:1]
        ),
        ping_count=Subquery(
            UsagePing.objects.filter(instance=OuterRef("pk"))
            .order_by()
            .values("instance")
            .annotate(n=Count("pk"))
            .values("n"),
            output_field=IntegerField(),
        ),
    )


def _count(queryset: QuerySet) -> Subquery:
    return Subquery(queryset.annotate(n=SubqueryCount()).values("n"), output_field=IntegerField())


def _snapshot_text(*keys: str) -> KeyTextTransform:
    """A text value inside the current snapshot's ``detail`` JSON.

    Built from ``F("snap__detail")``: ``KT("snap__detail__…")`` does not resolve through a
    ``FilteredRelation`` on PostgreSQL.
    """
    expression = F("snap__detail")
    for key in keys[:-1]:
        expression = KeyTransform(key, expression)
    return KeyTextTransform(keys[-1], expression)


def accounts_without_usage(now: datetime | None = None) -> QuerySet[Company]:
    """Accounts whose product usage cannot be measured, with what explains it.

    The same rule as the dashboard's "No usage data" filter. Annotations feed
    ``viewmodels.no_usage_reason``: instance counts (all, labeled Production, included in health
    by the engine's rule, those included with a ping in the last ``STALE_INSTANCE_DAYS`` days),
    the oldest version among those, SaaS subscriptions and namespaces, and the scorecard's own
    NA reason.
    """
    cutoff = _stale_cutoff(now)
    included = company_instances().health_eligible()
    fresh = included.filter(last_ping_at__gte=cutoff)
    return (
        Company.objects.alias(snap=current_snapshot())
        .filter(NO_USAGE_DATA)
        .select_related("csm")
        .annotate(
            n_instances=_count(company_instances()),
            n_production=_count(company_instances(instance_type=InstanceType.PRODUCTION)),
            n_included=_count(included),
            n_fresh=_count(fresh),
            n_saas=_count(company_instances(kind=InstanceKind.SAAS)),
            has_saas_subscription=Exists(
                Subscription.objects.filter(company=OuterRef("pk"), deployment=Deployment.SAAS)
            ),
            oldest_fresh_version=Subquery(
                fresh.filter(kind=InstanceKind.SELF_MANAGED)
                .values("company")
                .annotate(v=Min("version_sort"))
                .values("v")
            ),
            last_ping_at=Subquery(
                company_instances().values("company").annotate(m=Max("last_ping_at")).values("m")
            ),
            snapshot_id=F("snap__id"),
            lu_reason=_snapshot_text("measures", "license_utilization", "reason"),
            usage_reason=_snapshot_text("product_usage", "reason"),
        )
    )


def stale_instances() -> QuerySet[Instance]:
    """Instances silent for ``STALE_INSTANCE_DAYS`` days (Obsolete ones are expected to be)."""
    return (
        Instance.objects.stale(stale_ping_days())
        .exclude(instance_type=InstanceType.OBSOLETE)
        .select_related("company", "company__csm", "subscription")
    )


def rejected_payloads() -> QuerySet[RejectedPayload]:
    """Payloads ingest refused, without their (large) raw body."""
    return RejectedPayload.objects.defer("raw")


def license_mapping_changes(license_id: int | None = None) -> QuerySet[LicenseMappingChange]:
    """The audit of license mappings, newest first (one license's alone, given its id)."""
    rows = LicenseMappingChange.objects.select_related(
        "license",
        "from_subscription__company",
        "to_subscription__company",
        "changed_by",
    )
    return rows if license_id is None else rows.filter(license_id=license_id)
