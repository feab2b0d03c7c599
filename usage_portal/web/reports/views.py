"""Cross-account reports: CSM Burn-Down, versions, data quality, metrics dictionary.

Thin views: rows come from ``selectors``, narrowing from ``filters``, explanations and the
dictionary's layout from ``viewmodels``, the one write (mapping a license) from
``instances.services.licenses``. Every page runs a fixed number of queries whatever the size of
the book.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_tables2 import RequestConfig

from accounts.permissions import can_map_licenses
from instances.models import License, MappingSource
from instances.services.licenses import license_map as license_map_service
from instances.versions import release_label
from scoring.services import active_scheme, stale_ping_days
from usage_portal.web.kit.views import CsmDefaultFilterView
from usage_portal.web.reports import charts
from usage_portal.web.reports.filters import BurndownFilter, VersionsFilter
from usage_portal.web.reports.forms import LicenseMapForm
from usage_portal.web.reports.selectors import (
    accounts_without_usage,
    burndown_counts_by_csm,
    burndown_instances,
    license_mapping_changes,
    newest_release,
    rejected_payloads,
    self_managed_versions,
    stale_instances,
    unlinked_namespaces,
    unmapped_license_instances,
    unmapped_licenses,
    version_counts,
)
from usage_portal.web.reports.tables import (
    BurndownTable,
    MappingChangeTable,
    NamespaceTable,
    NoUsageTable,
    RejectedTable,
    StaleTable,
    UnmappedLicenseTable,
    VersionsTable,
)
from usage_portal.web.reports.viewmodels import (
    TIME_FRAMES,
    explain_once,
    metric_rows,
    no_usage_reason,
    overall_weights,
    use_case_rows,
)

DATA_QUALITY_PAGE_SIZE = 25


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

    def _older_than(self):
        filterset = self.filterset
        return filterset.form.cleaned_data.get("older_than") if filterset.is_valid() else None

    def get_table_kwargs(self):
        return {"newest": self.newest, "older_than": self._older_than()}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        older_than = self._older_than()
        # The chart shows every release the other filters keep, with a line where
        # "older than N" starts, so the cut is seen against the whole spread.
        chart_data = self.filterset.data.copy()
        chart_data.pop("older_than", None)
        chart_filter = VersionsFilter(
            chart_data, queryset=self.get_queryset(), request=self.request, newest=self.newest
        )
        figure = None
        if chart_filter.is_valid():
            figure = charts.versions_chart(
                version_counts(chart_filter.qs),
                threshold=self.filterset.threshold,
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
        NoUsageTable(
            accounts_without_usage(), request=request, explain=explain_once(no_usage_reason)
        ),
    )
    stale = _configure(request, StaleTable(stale_instances(), request=request))
    mapping_changes = _configure(
        request, MappingChangeTable(license_mapping_changes(), request=request)
    )
    rejected = None
    if ops:
        rejected = _configure(request, RejectedTable(rejected_payloads(), request=request))
    return render(
        request,
        "instances/reports/data_quality.html",
        {
            "nav": "data_quality",
            "licenses": licenses,
            "namespaces": namespaces,
            "accounts": accounts,
            "stale": stale,
            "mapping_changes": mapping_changes,
            "rejected": rejected,
            "can_map": ops,
            "stale_days": stale_ping_days(),
        },
    )


@require_http_methods(["GET", "POST"])
def license_map(request: HttpRequest, license_id: int) -> HttpResponse:
    """Map a license to a subscription, or correct its mapping (ops only).

    Its waiting pings attach at once; on a correction, the pings and instances that took the
    old mapping move with it. Either is recorded in the license's mapping history.
    """
    if not can_map_licenses(request.user):
        raise PermissionDenied("Only Customer Success Operations can map licenses.")
    license = get_object_or_404(
        License.objects.select_related("subscription__company"), pk=license_id
    )
    form = LicenseMapForm(
        request.POST or None, license=license, initial={"subscription": license.subscription_name}
    )
    if request.method == "POST" and form.is_valid():
        subscription = form.cleaned_data["subscription"]
        before = license.subscription.name if license.subscription_id else None
        attached = license_map_service(
            license=license, subscription=subscription, by=request.user, via=MappingSource.MANUAL
        )
        instead = f" instead of {before}" if before else ""
        messages.success(
            request,
            f"License {(license.md5 or license.sha256 or '')[:12]}… is now mapped to "
            f"{subscription.name} ({subscription.company.name}){instead}: {attached} ping"
            f"{'' if attached == 1 else 's'} {'moved' if before else 'attached'}. "
            "Scores are being recomputed.",
        )
        return redirect(f"{reverse('data_quality')}#unmapped-licenses")
    evidence = unmapped_license_instances([license.pk]).get(license.pk, [])
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "instances/reports/license_map.html",
        {
            "nav": "data_quality",
            "license": license,
            "form": form,
            "instances": evidence,
            "history": list(license_mapping_changes(license.pk)[:50]),
        },
        status=status,
    )


# --------------------------------------------------------------------------------------------------
# Metrics dictionary


def metrics_dictionary(request: HttpRequest) -> HttpResponse:
    scheme = active_scheme()
    return render(
        request,
        "instances/reports/metrics.html",
        {
            "nav": "metrics",
            "scheme": scheme,
            "rows": metric_rows(scheme),
            "use_cases": use_case_rows(scheme),
            "time_frames": TIME_FRAMES,
            "color_points": scheme.color_points.items(),
            "overall_weights": overall_weights(scheme),
        },
    )
