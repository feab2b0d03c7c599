"""The report pages read the rules from their homes: health eligibility, the stale threshold.

``accounts_without_usage`` counts "included in health" with ``Instance.objects.health_eligible()``
(the engine's rule, SaaS namespaces included); the data-quality stale list and the no-usage
reasons take their cutoff from ``STALE_INSTANCE_DAYS`` through ``stale_ping_days()``.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import Company
from instances.models import Instance, UsagePing
from scoring.schemes import USE_CASE_LABELS, get_scheme
from scoring.services import companies_refresh
from tests.web.test_reports_views import _account, _instance, client_for, names_on_page, rows_of
from usage_portal.web.reports.viewmodels import metric_rows

pytestmark = pytest.mark.django_db


def _saas_only_account(name: str = "saasonly") -> Company:
    """An account whose only instance is a never-labeled SaaS namespace that pinged yesterday."""
    company, sub = _account(name, saas=True)
    namespace = Instance.objects.create(
        kind="saas",
        namespace_id=4242,
        namespace_path=f"{name}-group",
        company=company,
        subscription=sub,
        last_ping_at=timezone.now() - timedelta(days=1),
    )
    assert namespace.instance_type == "unknown"  # never labeled
    UsagePing.objects.create(
        instance=namespace,
        recorded_at=namespace.last_ping_at,
        source="saas",
        subscription=sub,
        billable_users=8,
        umau=5,
    )
    return company


def _no_usage_row(response, name: str) -> str | None:
    match = re.search(rf">{name}</a>.*?</tr>", response.content.decode(), flags=re.DOTALL)
    return match.group(0) if match else None


def test_a_never_labeled_saas_namespace_counts_as_production_for_no_usage_data(client, viewer):
    company = _saas_only_account()
    client_for(client, viewer)
    # Not scored yet: listed, but not as an account lacking a Production instance (the engine
    # counts the namespace as Production), so nobody is sent to label it.
    page = client.get("/data-quality/?acct-per_page=50")
    row = _no_usage_row(page, company.name)
    assert row is not None
    assert "No Production instance labeled" not in row
    assert "Every Production instance is opted out" not in row
    assert "All instances stale" not in row
    assert "Label the Production instance" not in row
    # Scored: the namespace's usage is measured, so the account has usage data on both pages.
    companies_refresh(company_ids=[company.pk], history=False)
    page = client.get("/data-quality/?acct-per_page=50")
    assert company.name not in {row.record.name for row in rows_of(page, "accounts")}
    assert company.name not in names_on_page(client.get("/?no_usage_data=on"))


def test_a_labeled_non_production_namespace_still_needs_a_production_label(client, viewer):
    company = _saas_only_account("saasnonprod")
    Instance.objects.filter(company=company).update(instance_type="non_production")
    page = client_for(client, viewer).get("/data-quality/?acct-per_page=50")
    assert "No Production instance labeled" in _no_usage_row(page, company.name)


def _stale_ids(response) -> set[int]:
    return {row.record.pk for row in rows_of(response, "stale")}


@pytest.mark.parametrize(("days", "listed"), [(30, True), (60, False)])
def test_the_stale_list_follows_the_stale_setting(client, viewer, days, listed):
    company, sub = _account("quietish")
    quiet = _instance(company, sub, days_silent=45)
    fresh = _instance(company, sub, "non_production", days_silent=2)
    with override_settings(STALE_INSTANCE_DAYS=days):
        page = client_for(client, viewer).get("/data-quality/?stale-per_page=50")
        assert page.context["stale_days"] == days
    stale = _stale_ids(page)
    assert (quiet.pk in stale) is listed
    assert fresh.pk not in stale


@pytest.mark.parametrize(
    ("days", "reason"),
    [(30, "No Production instance has pinged in 30 days"), (60, "Not measurable")],
)
def test_the_no_usage_reason_follows_the_stale_setting(client, viewer, days, reason):
    company, sub = _account("silent45")
    _instance(company, sub, days_silent=45)
    with override_settings(STALE_INSTANCE_DAYS=days):
        page = client_for(client, viewer).get("/data-quality/?acct-per_page=50")
    assert reason in _no_usage_row(page, company.name)


def test_the_metrics_dictionary_names_the_use_cases_the_active_scheme_reads():
    """Use cases come from the scheme's measures, not from a second hand-kept list: under the
    handbook preset no measure reads pipeline users, so no use case is named for them."""
    for preset in ("gitlab-handbook-2025", "gitlab-dbt-2024"):
        for row in metric_rows(get_scheme(preset)):
            read_by = {spec.use_case for spec in row.measures}
            assert row.use_cases == tuple(
                label for key, label in USE_CASE_LABELS.items() if key in read_by
            )
    rows = {r.metric.name: r for r in metric_rows(get_scheme("gitlab-handbook-2025"))}
    assert rows["pipeline_users"].measures == () and rows["pipeline_users"].use_cases == ()
    assert "License Utilization" in rows["billable_users"].use_cases
