"""Cross-account reports: CSM Burn-Down, versions, data quality, metrics dictionary.

Thin views over the selectors in ``instances.filters``; every page runs a fixed number of
queries whatever the size of the book.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_tables2 import RequestConfig

from accounts.models import Subscription
from instances.metrics import METRICS, Metric
from instances.models import License, MappingSource, RejectedPayload
from instances.services.licenses import license_map as license_map_service
from instances.versions import release_label
from scoring.schemes import (
    ADOPTION_USE_CASES,
    LICENSED_SEATS,
    OVERALL_GROUP_LABELS,
    USE_CASE_LABELS,
    Scheme,
)
from scoring.services import active_scheme, stale_ping_days
from usage_portal.web.dashboard.views import CsmDefaultFilterView
from usage_portal.web.reports import charts
from usage_portal.web.reports.selectors import (
    BurndownFilter,
    VersionsFilter,
    accounts_without_usage,
    burndown_counts_by_csm,
    burndown_instances,
    newest_release,
    self_managed_versions,
    stale_instances,
    unlinked_namespaces,
    unmapped_license_instances,
    unmapped_licenses,
    version_counts,
)
from usage_portal.web.reports.tables import (
    BurndownTable,
    NamespaceTable,
    NoUsageTable,
    RejectedTable,
    StaleTable,
    UnmappedLicenseTable,
    VersionsTable,
)

DATA_QUALITY_PAGE_SIZE = 25


def can_map_licenses(user) -> bool:
    """Ops: map licenses to subscriptions and see rejected payloads."""
    return user.has_perm("instances.map_license")


# --------------------------------------------------------------------------------------------------
# CSM Burn-Down


class BurndownView(CsmDefaultFilterView):
    table_class = BurndownTable
    filterset_class = BurndownFilter
    template_name = "instances/reports/burndown.html"
    export_name = "csm-burndown-unknown-instances"
    nav = "burndown"

    def get_queryset(self):
        return burndown_instances()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["by_csm"] = burndown_counts_by_csm()
        context["stale_days"] = stale_ping_days()
        return context


burndown = BurndownView.as_view()


# --------------------------------------------------------------------------------------------------
# Self Managed Instances – Current GitLab Version Details


class VersionsView(CsmDefaultFilterView):
    table_class = VersionsTable
    filterset_class = VersionsFilter
    template_name = "instances/reports/versions.html"
    export_name = "gitlab-version-details"
    nav = "versions"

    def get(self, request, *args, **kwargs):
        self.newest = newest_release()
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return self_managed_versions()

    def get_filterset_kwargs(self, filterset_class):
        return {**super().get_filterset_kwargs(filterset_class), "newest": self.newest}

    def get_table_kwargs(self):
        older_than = (
            self.filterset.form.cleaned_data.get("older_than")
            if self.filterset.is_valid()
            else None
        )
        return {"newest": self.newest, "older_than": older_than}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        filterset = self.filterset
        older_than = filterset.form.cleaned_data.get("older_than") if filterset.is_valid() else None
        # The chart shows every release the other filters keep, with a line where
        # "older than N" starts, so the cut is seen against the whole spread.
        chart_data = filterset.data.copy()
        chart_data.pop("older_than", None)
        chart_filter = VersionsFilter(
            chart_data, queryset=self.get_queryset(), request=self.request, newest=self.newest
        )
        figure = None
        if chart_filter.is_valid():
            figure = charts.versions_chart(
                version_counts(chart_filter.qs),
                threshold=filterset.threshold,
                older_than=int(older_than) if older_than else None,
            )
        context.update(
            chart=figure,
            newest=release_label(self.newest) if self.newest else None,
            older_than=older_than,
        )
        return context


versions = VersionsView.as_view()


# --------------------------------------------------------------------------------------------------
# Data quality


@dataclass(frozen=True)
class NoUsageReason:
    code: str
    title: str
    detail: str
    action: str
    link: str = ""  # a URL name taking the account id


def no_usage_reason(account) -> NoUsageReason:
    """Why an account from ``accounts_without_usage()`` has no usage data (the seed's FAQ)."""
    days = stale_ping_days()
    if account.has_saas_subscription and not account.n_saas:
        return NoUsageReason(
            "saas_namespace",
            "SaaS namespace not tied to a subscription",
            "The account has a SaaS subscription but no namespace reports for it.",
            "Ask the customer to link their namespace to the subscription in the Customers "
            "Portal, or open an internal support ticket.",
        )
    if not account.n_instances:
        return NoUsageReason(
            "no_pings",
            "No pings at all",
            "No instance has ever sent Service Ping for this account: Service Ping may be off, "
            "the instance air-gapped, or its license not mapped (see unmapped licenses above).",
            "Confirm Service Ping is on, or upload a downloaded payload.",
        )
    if not account.n_production:
        return NoUsageReason(
            "no_production",
            "No Production instance labeled",
            f"{account.n_instances} instance(s), none labeled Production.",
            "Label the Production instance",
            "account_instances",
        )
    if not account.n_included:
        return NoUsageReason(
            "opted_out",
            "Every Production instance is opted out",
            "Production instances are set to Opt-Out of health measures.",
            "Include one instance in health measures",
            "account_instances",
        )
    if not account.n_fresh:
        last = account.last_ping_at.date().isoformat() if account.last_ping_at else "never"
        return NoUsageReason(
            "stale",
            "All instances stale",
            f"No Production instance has pinged in {days} days (last ping from any: {last}).",
            "Check with the customer that Service Ping still reaches GitLab",
            "account_instances",
        )
    if account.oldest_fresh_version is not None and account.oldest_fresh_version < 14_000_000:
        version = release_label(divmod(account.oldest_fresh_version // 1000, 1000))
        return NoUsageReason(
            "version_too_old",
            "Version too old for billable users",
            f"The Production instance runs GitLab {version}; billable users are reported "
            "from 14.0, so License Utilization and the ratios cannot be computed.",
            "Help the customer upgrade",
            "account_instances",
        )
    # SQLite reads a JSON null as the text "null".
    reasons = (r for r in (account.lu_reason, account.usage_reason) if r and r != "null")
    detail = next(reasons, "the scorecard has not been computed")
    return NoUsageReason(
        "other",
        "Not measurable",
        f"Scorecard: {detail}.",
        "Open the scorecard",
        "account_scorecard",
    )


def _configure(request, table, per_page: int = DATA_QUALITY_PAGE_SIZE):
    RequestConfig(request, paginate={"per_page": per_page}).configure(table)
    return table


def data_quality(request: HttpRequest) -> HttpResponse:
    ops = can_map_licenses(request.user)
    licenses = UnmappedLicenseTable(
        unmapped_licenses(), request=request, exclude=() if ops else ("map",)
    )
    _configure(request, licenses)
    licenses.attach_instances(unmapped_license_instances)
    namespaces = _configure(request, NamespaceTable(unlinked_namespaces(), request=request))
    accounts = _configure(
        request,
        NoUsageTable(accounts_without_usage(), request=request, explain=_cached(no_usage_reason)),
    )
    stale = _configure(request, StaleTable(stale_instances(), request=request))
    rejected = None
    if ops:
        rejected = _configure(
            request, RejectedTable(RejectedPayload.objects.defer("raw"), request=request)
        )
    return render(
        request,
        "instances/reports/data_quality.html",
        {
            "nav": "data_quality",
            "licenses": licenses,
            "namespaces": namespaces,
            "accounts": accounts,
            "stale": stale,
            "rejected": rejected,
            "can_map": ops,
            "stale_days": stale_ping_days(),
        },
    )


def _cached(explain):
    """Explain each record once, however many columns ask."""
    memo: dict[int, NoUsageReason] = {}

    def wrapper(record):
        if record.pk not in memo:
            memo[record.pk] = explain(record)
        return memo[record.pk]

    return wrapper


class LicenseMapForm(forms.Form):
    subscription = forms.CharField(
        label="Subscription",
        max_length=64,
        help_text="The Zuora subscription name from the account's Salesforce record "
        "(e.g. A-S00012345), or its Usage Portal id.",
    )

    def __init__(self, *args, license: License, **kwargs):
        super().__init__(*args, **kwargs)
        self.license = license

    def clean_subscription(self) -> Subscription:
        value = self.cleaned_data["subscription"].strip()
        query = Q(name__iexact=value)
        if value.isdigit():
            query |= Q(pk=int(value))
        match = list(Subscription.objects.filter(query).select_related("company")[:2])
        if not match:
            raise forms.ValidationError(
                f"No subscription is named “{value}”. Use the subscription name from the "
                "account's Salesforce record (it looks like A-S00012345); if the subscription "
                "is new, import it first."
            )
        exact = [s for s in match if s.name == value or str(s.pk) == value]
        return (exact or match)[0]

    def clean(self):
        cleaned = super().clean()
        if self.license.subscription_id:
            raise forms.ValidationError(
                f"This license is already mapped to {self.license.subscription.name}; "
                "its pings are attached. Change the mapping in the admin site if it is wrong."
            )
        return cleaned


@require_http_methods(["GET", "POST"])
def license_map(request: HttpRequest, license_id: int) -> HttpResponse:
    """Map an unmapped license to a subscription (ops only); its waiting pings attach at once."""
    if not can_map_licenses(request.user):
        raise PermissionDenied("Only Customer Success Operations can map licenses.")
    license = get_object_or_404(License.objects.select_related("subscription"), pk=license_id)
    form = LicenseMapForm(
        request.POST or None, license=license, initial={"subscription": license.subscription_name}
    )
    if request.method == "POST" and form.is_valid():
        subscription = form.cleaned_data["subscription"]
        attached = license_map_service(
            license=license, subscription=subscription, by=request.user, via=MappingSource.MANUAL
        )
        messages.success(
            request,
            f"License {(license.md5 or license.sha256 or '')[:12]}… is now mapped to "
            f"{subscription.name} ({subscription.company.name}): {attached} ping"
            f"{'' if attached == 1 else 's'} attached. Scores are being recomputed.",
        )
        return redirect(f"{reverse('data_quality')}#unmapped-licenses")
    evidence = unmapped_license_instances([license.pk]).get(license.pk, [])
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "instances/reports/license_map.html",
        {"nav": "data_quality", "license": license, "form": form, "instances": evidence},
        status=status,
    )


# --------------------------------------------------------------------------------------------------
# Metrics dictionary

TIME_FRAMES = {
    "28d": (
        "Last 28 days",
        "Counted over the 28 days before the ping (GitLab's window runs from 30 to 2 days "
        "before it is recorded). A month's figure is the month's last ping.",
    ),
    "all": ("All time", "Cumulative since the instance was installed."),
    "none": ("Point in time", "A setting or a current count, not a period."),
}


@dataclass(frozen=True)
class MetricRow:
    metric: Metric
    time_frame: tuple[str, str]
    measures: tuple  # MeasureSpecs of the active scheme that read the metric
    use_cases: tuple[str, ...]


def _reads(spec, name: str) -> bool:
    metrics = spec.numerator + spec.denominator
    # Licensed seats come from the subscription and fall back to the ping's licensed users.
    return name in metrics or (name == "licensed_users" and LICENSED_SEATS in metrics)


def metric_rows(scheme: Scheme) -> list[MetricRow]:
    return [
        MetricRow(
            metric=metric,
            time_frame=TIME_FRAMES[metric.time_frame],
            measures=tuple(spec for spec in scheme.measures if _reads(spec, metric.name)),
            use_cases=tuple(USE_CASE_LABELS[key] for key in metric.used_by),
        )
        for metric in METRICS
    ]


def metrics_dictionary(request: HttpRequest) -> HttpResponse:
    scheme = active_scheme()
    use_cases = [
        {
            "key": key,
            "label": label,
            "measures": scheme.measures_for(key),
            "weight": scheme.product_usage_weights.get(key, 0),
            "rolls_up": key in ADOPTION_USE_CASES,
        }
        for key, label in USE_CASE_LABELS.items()
    ]
    return render(
        request,
        "instances/reports/metrics.html",
        {
            "nav": "metrics",
            "scheme": scheme,
            "rows": metric_rows(scheme),
            "use_cases": use_cases,
            "time_frames": TIME_FRAMES,
            "color_points": scheme.color_points.items(),
            "overall_weights": [
                (OVERALL_GROUP_LABELS[key], weight)
                for key, weight in scheme.overall_weights.items()
            ],
        },
    )
