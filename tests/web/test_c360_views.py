"""Account C360 pages: what they show, that it is the scoring engine's numbers, who may change
what, and that each page costs a fixed number of queries however big the account is."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company, Subscription
from instances.labels import label_change_apply, label_change_request
from instances.metrics import METRIC_NAMES, METRICS_BY_NAME, SCAN_METRICS
from instances.models import Instance, LabelChange, MonthlyUsage, UsagePing
from instances.services.monthly import monthly_refresh
from scoring.methodology import account_age_months, score_company
from scoring.models import MonthlyScore, SchemeChange, ScoreSnapshot
from scoring.services import active_scheme, companies_refresh, load_inputs
from usage_portal.web.c360.viewmodels import format_value

MAX_QUERIES = 12
TYPES = ("non_production", "unknown", "obsolete", "geo_secondary")


def _metrics(n: int, week: int) -> dict:
    billable = 40 + n + week // 4
    values = dict.fromkeys(METRIC_NAMES, 0)
    values.update(
        billable_users=billable,
        licensed_users=100,
        active_users=billable + 2,
        historical_max_users=billable,
        umau=round(billable * 0.8),
        git_operation_users=round(billable * 0.4),
        pipeline_users=round(billable * 0.3),
        ci_build_users=round(billable * 0.28),
        ci_builds_l28=billable * 12,
        ci_internal_pipelines_l28=billable * 2,
        deployments_l28=billable,
        successful_deployments_l28=round(billable * 0.9),
        failed_deployments_l28=billable - round(billable * 0.9),
        deployment_users=round(billable * 0.1),
        secure_scanner_users=round(billable * 0.12),
        sast_scans_l28=billable,
        dependency_scanning_scans_l28=week % 3,
        merge_requests_all=billable * 10 * (week + 1),
    )
    return values


def build_account(
    name: str,
    *,
    instances: int,
    pings: int,
    csm=None,
    production: int = 1,
    plan: str = "ultimate",
    customer_since_days: int = 900,
) -> Company:
    """A company with ``instances`` self-managed instances sending ``pings`` weekly pings each
    (the first ``production`` are Production), stored and scored through the real services."""
    now = timezone.now()
    company = Company.objects.create(
        name=name,
        crm_account_id=f"crm-{name}",
        segment="Strategic",
        csm=csm,
        customer_since=(now - timedelta(days=customer_since_days)).date(),
    )
    sub = Subscription.objects.create(
        name=f"A-S-{name}",
        company=company,
        plan=plan,
        licensed_seats=100,
        deployment="self-managed",
    )
    rows = Instance.objects.bulk_create(
        Instance(
            kind="self-managed",
            uuid=f"{name}-uuid-{n:03d}",
            hostname=f"gitlab{n}.{name}.example.com",
            company=company,
            subscription=sub,
            version="16.5.1-ee",
            instance_type="production" if n < production else TYPES[n % len(TYPES)],
            first_ping_at=now - timedelta(weeks=pings - 1),
            last_ping_at=now - timedelta(hours=n + 1),
        )
        for n in range(instances)
    )
    stored = UsagePing.objects.bulk_create(
        UsagePing(
            instance=inst,
            recorded_at=inst.last_ping_at - timedelta(weeks=pings - 1 - week),
            source="bulk",
            version="16.5.1-ee",
            subscription=sub,
            **_metrics(n, week),
        )
        for n, inst in enumerate(rows)
        for week in range(pings)
    )
    monthly_refresh(pings=stored)
    companies_refresh(company_ids=[company.pk], reason="test")
    return company


@pytest.fixture
def small(db, csm):
    return build_account("small", instances=2, pings=3, csm=csm)


@pytest.fixture
def large(db, csm):
    """30 instances × 100 pings, two in health measures, pending label changes on several."""
    company = build_account("large", instances=30, pings=100, csm=csm, production=2)
    for inst in Instance.objects.filter(company=company, instance_type="unknown")[:5]:
        label_change_request(
            instance=inst, field="instance_type", value="non_production", by=csm, schedule=False
        )
    return company


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _html(response) -> str:
    return response.content.decode()


def _figures(html: str) -> dict[str, dict]:
    """Every chart's Plotly figure on a page, by chart id."""
    out = {}
    for chart_id, data_id in re.findall(r'id="([^"]+)" data-plotly-figure="([^"]+)"', html):
        match = re.search(
            rf'<script id="{re.escape(data_id)}" type="application/json">(.*?)</script>', html, re.S
        )
        out[chart_id] = json.loads(match.group(1))
    return out


def _row(html: str, measure: str) -> str:
    match = re.search(rf'data-measure="{measure}">(.*?)</tr>', html, re.S)
    assert match, f"no scorecard row for {measure}"
    return match.group(1)


def _section_urls(company: Company, instance: Instance) -> dict[str, str]:
    pk = company.pk
    return {
        "summary": reverse("account_summary", args=[pk]),
        "scorecard": reverse("account_scorecard", args=[pk]),
        "adoption": reverse("account_adoption", args=[pk]),
        "adoption_measure": reverse("account_adoption", args=[pk]) + "?report=git_billable",
        "trends": reverse("account_trends", args=[pk]),
        "trends_license": reverse("account_trends", args=[pk]) + "?report=license",
        "trends_devsecops": reverse("account_trends", args=[pk]) + "?report=devsecops",
        "not_production": reverse("account_trends", args=[pk]) + "?report=not_production",
        "not_production_instance": reverse("account_trends", args=[pk])
        + f"?report=not_production&instance={instance.pk}",
        "instances": reverse("account_instances", args=[pk]),
        "instance_edit": reverse("instance_edit", args=[pk, instance.pk]),
    }


# --------------------------------------------------------------------------------------------------
# Reading


def test_every_section_renders_for_every_role(small, ops, csm, other_csm, viewer):
    instance = small.instances.order_by("id").last()
    for user in (ops, csm, other_csm, viewer):
        client = _client(user)
        for name, url in _section_urls(small, instance).items():
            response = client.get(url)
            expected = 403 if name == "instance_edit" and user in (other_csm, viewer) else 200
            assert response.status_code == expected, (user.username, name)


def test_anonymous_users_are_sent_to_sign_in(small):
    response = Client().get(reverse("account_summary", args=[small.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_unknown_account_report_or_instance_is_404(small, viewer):
    client = _client(viewer)
    assert client.get(reverse("account_summary", args=[999_999])).status_code == 404
    assert (
        client.get(reverse("account_adoption", args=[small.pk]) + "?report=nope").status_code == 404
    )
    assert (
        client.get(reverse("account_trends", args=[small.pk]) + "?report=nope").status_code == 404
    )
    trends = reverse("account_trends", args=[small.pk])
    assert client.get(trends + "?report=not_production&instance=abc").status_code == 404
    other = build_account("other", instances=1, pings=1)
    foreign = other.instances.get()
    response = client.get(trends + f"?report=not_production&instance={foreign.pk}")
    assert response.status_code == 404


def test_header_and_navigation_name_the_account_segment_and_csm(small, viewer):
    html = _html(_client(viewer).get(reverse("account_adoption", args=[small.pk])))
    header = html[html.index('class="topbar-context"') : html.index('class="topbar-user"')]
    assert "small" in header and "Strategic" in header and "Csm_User" in header
    for name in ("account_summary", "account_scorecard", "account_trends", "account_instances"):
        assert reverse(name, args=[small.pk]) in html
    assert 'aria-current="page">User Adoption Metrics' in html


SECTIONS = (
    "summary",
    "scorecard",
    "adoption",
    "adoption_measure",
    "trends",
    "trends_license",
    "trends_devsecops",
    "not_production",
    "not_production_instance",
    "instances",
    "instance_edit",
)


def test_each_page_runs_the_same_few_queries_for_a_small_and_a_large_account(
    small, large, csm, django_assert_max_num_queries
):
    """30 instances × 100 pings (and pending changes) cost what 2 instances × 3 pings cost."""
    client = _client(csm)
    client.get(reverse("metrics_dictionary"))  # a session exists; no section is cached yet
    counts: dict[str, dict[str, int]] = {}
    for section in SECTIONS:
        for company in (small, large):
            url = _section_urls(company, company.instances.order_by("id").last())[section]
            with django_assert_max_num_queries(MAX_QUERIES) as captured:
                assert client.get(url).status_code == 200
            counts.setdefault(section, {})[company.name] = len(captured.captured_queries)
    assert not {s: c for s, c in counts.items() if c["small"] != c["large"]}


def test_pages_never_load_raw_payloads(large, csm):
    client = _client(csm)
    instance = large.instances.order_by("id").last()
    for url in _section_urls(large, instance).values():
        with CaptureQueriesContext(connection) as ctx:
            client.get(url)
        assert not any("raw_payload" in q["sql"] for q in ctx.captured_queries), url


# --------------------------------------------------------------------------------------------------
# Summary


def test_summary_shows_the_scoring_engines_numbers(small, viewer):
    card = score_company(
        load_inputs([small.pk], as_of=timezone.now().date())[small.pk], active_scheme()
    )
    snapshot = ScoreSnapshot.objects.get(company=small, is_current=True)
    html = _html(_client(viewer).get(reverse("account_summary", args=[small.pk])))

    lu = card.measures["license_utilization"]
    assert f'data-testid="lu-value">{format_value(lu.value, "fraction")}<' in html
    assert f'data-testid="billable-users">{round(lu.inputs["numerator"])}<' in html
    assert f'data-testid="licensed-seats">{round(lu.inputs["denominator"])}<' in html
    assert 'data-testid="licenses-sold">100<' in html
    assert snapshot.license_utilization == pytest.approx(lu.value)

    expected = {
        "overall_health": card.overall_health,
        "product_usage": card.product_usage,
        "license_utilization": lu,
        "user_engagement": card.measures["user_engagement"],
        **{k: card.use_cases[k] for k in ("scm", "ci", "cd", "devsecops")},
    }
    for key, result in expected.items():
        row = _row(html, key)
        assert f"pill pill-{result.color}" in row, key
        unit = (
            "points"
            if key in ("overall_health", "product_usage", "scm", "ci", "cd", "devsecops")
            else "fraction"
        )
        assert format_value(result.value, unit) in row, key
        assert f"{reverse('account_scorecard', args=[small.pk])}#score-{key}" in row
    assert f"Data as of {card.as_of:%-d %b %Y}" in html
    assert card.scheme in html


def test_summary_trend_compares_with_the_previous_snapshot(small, viewer):
    Company.objects.filter(pk=small.pk).update(
        sentiment="Red", sentiment_note="Escalation", sentiment_at=timezone.now()
    )
    companies_refresh(company_ids=[small.pk], reason="sentiment")
    html = _html(_client(viewer).get(reverse("account_summary", args=[small.pk])))
    row = _row(html, "csm_sentiment")
    assert "pill pill-Red" in row and "was NA" in row
    assert "trend-" in _row(html, "overall_health")
    assert "Red CSM sentiment forces Red overall" in _row(html, "overall_health")


def test_na_measures_show_their_reason(db, viewer):
    young = build_account("young", instances=1, pings=2, customer_since_days=45, plan="premium")
    html = _html(_client(viewer).get(reverse("account_summary", args=[young.pk])))
    assert "Too early to score" in _row(html, "license_utilization")
    assert "pill pill-NA" in _row(html, "devsecops")
    assert "applies to Ultimate only" in _row(html, "devsecops")


def test_an_account_in_its_first_30_days_says_so_on_every_product_measure(db, viewer):
    new = build_account("brandnew", instances=1, pings=2, customer_since_days=20)
    html = _html(_client(viewer).get(reverse("account_summary", args=[new.pk])))
    for key in ("license_utilization", "user_engagement", "scm", "ci", "cd", "devsecops"):
        row = _row(html, key)
        assert "pill pill-NA" in row and "Too early to score: first 30 days" in row, key


def test_summary_lists_subscriptions_and_pending_label_changes(small, csm, viewer):
    unknown = small.instances.exclude(instance_type="production").get()
    change = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, schedule=False
    )
    html = _html(_client(viewer).get(reverse("account_summary", args=[small.pk])))
    assert "A-S-small" in html and "Ultimate" in html
    assert "1 label change pending" in html
    assert f"{change.effective_at:%-d %b %Y %H:%M} UTC" in html


# --------------------------------------------------------------------------------------------------
# CSM sentiment


def test_owner_sets_sentiment_with_a_note(small, csm):
    url = reverse("account_sentiment", args=[small.pk])
    response = _client(csm).post(url, {"sentiment": "Yellow", "note": "Champion left."})
    assert response.status_code == 302
    small.refresh_from_db()
    assert (small.sentiment, small.sentiment_note, small.sentiment_by) == (
        "Yellow",
        "Champion left.",
        csm,
    )
    assert any("Yellow" in str(m) for m in get_messages(response.wsgi_request))


def test_sentiment_without_a_note_is_refused_and_explained(small, csm):
    url = reverse("account_sentiment", args=[small.pk])
    response = _client(csm).post(url, {"sentiment": "Green", "note": "  "})
    assert response.status_code == 400
    assert "Add a note saying why" in _html(response)
    small.refresh_from_db()
    assert small.sentiment == ""


def test_only_the_owner_or_ops_may_set_sentiment(small, ops, other_csm, viewer):
    url = reverse("account_sentiment", args=[small.pk])
    for user in (other_csm, viewer):
        assert _client(user).post(url, {"sentiment": "Red", "note": "x"}).status_code == 403
    small.refresh_from_db()
    assert small.sentiment == ""
    assert _client(ops).post(url, {"sentiment": "Red", "note": "ops"}).status_code == 302
    small.refresh_from_db()
    assert small.sentiment == "Red"
    assert _client(ops).get(url).status_code == 405


def test_sentiment_form_is_rendered_only_for_those_who_may_use_it(small, csm, other_csm, viewer):
    url = reverse("account_summary", args=[small.pk])
    action = reverse("account_sentiment", args=[small.pk])
    assert action in _html(_client(csm).get(url))
    for user in (other_csm, viewer):
        assert action not in _html(_client(user).get(url))


def test_writes_need_a_csrf_token(small, csm):
    client = Client(enforce_csrf_checks=True)
    client.force_login(csm)
    url = reverse("account_sentiment", args=[small.pk])
    assert client.post(url, {"sentiment": "Red", "note": "x"}).status_code == 403
    small.refresh_from_db()
    assert small.sentiment == ""


# --------------------------------------------------------------------------------------------------
# Scorecard explanation


def test_scorecard_explains_every_measure_with_its_inputs(small, viewer):
    snapshot = ScoreSnapshot.objects.get(company=small, is_current=True)
    html = _html(_client(viewer).get(reverse("account_scorecard", args=[small.pk])))
    assert f'data-testid="scheme">{snapshot.scheme}<' in html
    metrics_url = reverse("metrics_dictionary")
    for key, measure in snapshot.detail["measures"].items():
        assert f'id="score-{key}"' in html
        inputs = measure["inputs"]
        if inputs["numerator"] is not None:
            assert f'data-testid="numerator-{key}">{inputs["numerator"]:,.0f}<' in html
        for metric in inputs["numerator_metrics"] + inputs["denominator_metrics"]:
            if metric != "licensed_seats":
                assert f'href="{metrics_url}#{metric}"' in html
        assert inputs["thresholds"].replace(">", "&gt;").replace("<", "&lt;") in html
    for key in ("scm", "ci", "cd", "devsecops", "overall_health", "product_usage", "csm_sentiment"):
        assert f'id="score-{key}"' in html
    ping = UsagePing.objects.get(pk=snapshot.detail["ping_ids"][0])
    assert f"{ping.recorded_at:%-d %b %Y %H:%M} UTC" in html
    age = account_age_months(small.customer_since, snapshot.as_of)
    assert f"{age} months" in html


def test_scorecard_lists_warnings_and_stale_instances(db, viewer):
    company = build_account("twoprod", instances=2, pings=1, production=2)
    stale = company.instances.order_by("id").last()
    long_ago = timezone.now() - timedelta(days=90)
    Instance.objects.filter(pk=stale.pk).update(last_ping_at=long_ago)
    UsagePing.objects.filter(instance=stale).update(recorded_at=long_ago)
    # The inputs hash does not cover ping dates (they never change in real life): start over.
    ScoreSnapshot.objects.filter(company=company).delete()
    companies_refresh(company_ids=[company.pk], reason="test")
    html = _html(_client(viewer).get(reverse("account_scorecard", args=[company.pk])))
    assert "More than one instance in health measures (2)" in html
    assert "Stale instances" in html and str(stale) in html


# --------------------------------------------------------------------------------------------------
# Charts


def test_adoption_ratio_that_is_a_measure_uses_the_engines_monthly_values(small, viewer):
    url = reverse("account_adoption", args=[small.pk]) + "?report=git_billable"
    html = _html(_client(viewer).get(url))
    figure = _figures(html)["adoption-git_billable"]
    scores = MonthlyScore.objects.filter(company=small).order_by("month")
    expected = [s.detail["measures"]["scm_git_operations"]["value"] * 100 for s in scores]
    assert figure["data"][0]["y"] == pytest.approx(expected)
    colors = {"Red": "#c62828", "Yellow": "#e0a800", "Green": "#2e7d32"}
    assert figure["data"][0]["marker"]["color"] == [
        colors[s.detail["measures"]["scm_git_operations"]["color"]] for s in scores
    ]
    fills = {shape.get("fillcolor", "")[:15] for shape in figure["layout"]["shapes"]}
    assert {"rgba(198, 40, 4", "rgba(224, 168, ", "rgba(46, 125, 5"} <= fills  # R/Y/G bands
    for score in scores:
        assert f"{score.detail['measures']['scm_git_operations']['value'] * 100:.1f}%" in html


def test_adoption_context_ratio_is_computed_over_the_instances_the_engine_scored(small, viewer):
    html = _html(_client(viewer).get(reverse("account_adoption", args=[small.pk])))
    figure = _figures(html)["adoption-pipeline_umau"]
    included = set(ScoreSnapshot.objects.get(company=small, is_current=True).detail["instance_ids"])
    expected = []
    for score in MonthlyScore.objects.filter(company=small).order_by("month"):
        rows = MonthlyUsage.objects.filter(
            month=score.month, instance_id__in=score.detail["instance_ids"]
        )
        assert {r.instance_id for r in rows} <= included
        expected.append(sum(r.pipeline_users for r in rows) / sum(r.umau for r in rows) * 100)
    assert figure["data"][0]["y"] == pytest.approx(expected)


def test_charts_have_month_ticks_axis_titles_and_a_scheme_change_marker(small, viewer):
    SchemeChange.objects.create(
        from_scheme="gitlab-handbook-2025", to_scheme="gitlab-dbt-2024", changed_at=timezone.now()
    )
    html = _html(_client(viewer).get(reverse("account_trends", args=[small.pk]) + "?report=ci"))
    figures = _figures(html)
    assert len(figures) == 3
    for chart_id, figure in figures.items():
        xaxis = figure["layout"]["xaxis"]
        assert xaxis["tickformat"] == "%b %Y" and xaxis["dtick"] in ("M1", "M3")
        assert figure["layout"]["yaxis"]["title"]["text"]
        # The scheme colours the score chart only: raw usage charts carry no marker.
        marked = any("gitlab-dbt-2024" in a["text"] for a in figure["layout"]["annotations"])
        assert marked == (chart_id == "trend-ci-score"), chart_id
        assert marked == any(s["type"] == "line" for s in figure["layout"]["shapes"])
    assert "CI health score by month · data as of" in html


def test_every_trend_report_draws_charts_from_production_instances_only(small, viewer):
    client = _client(viewer)
    production = small.instances.get(instance_type="production")
    other = small.instances.exclude(pk=production.pk).get()
    last = MonthlyScore.objects.filter(company=small).latest("month")
    usage = MonthlyUsage.objects.get(instance=production, month=last.month)
    for report in ("scm", "ci", "cd", "devsecops", "license"):
        html = _html(client.get(reverse("account_trends", args=[small.pk]) + f"?report={report}"))
        assert _figures(html), report
    html = _html(client.get(reverse("account_trends", args=[small.pk]) + "?report=scm"))
    series = _figures(html)["trend-scm-0"]["data"]
    # the Production instance's value alone, not summed with the Non-Production one
    other_usage = MonthlyUsage.objects.get(instance=other, month=last.month)
    assert series[0]["y"][-1] == usage.git_operation_users
    assert series[0]["y"][-1] != usage.git_operation_users + other_usage.git_operation_users


def test_devsecops_scans_are_stacked_by_scanner(small, viewer):
    html = _html(
        _client(viewer).get(reverse("account_trends", args=[small.pk]) + "?report=devsecops")
    )
    figure = _figures(html)["trend-devsecops-0"]
    assert figure["layout"]["barmode"] == "stack"
    assert all(t["type"] == "bar" for t in figure["data"])
    # scanners never used are left out of the legend
    assert [t["name"] for t in figure["data"]] == [
        METRICS_BY_NAME[m].label
        for m in SCAN_METRICS
        if m in ("sast_scans_l28", "dependency_scanning_scans_l28")
    ]


def test_not_production_report_shows_each_other_instance_and_one_in_detail(small, csm):
    other = small.instances.exclude(instance_type="production").get()
    url = reverse("account_trends", args=[small.pk]) + "?report=not_production"
    html = _html(_client(csm).get(url))
    assert str(other) in html
    assert f"instance={other.pk}" in html
    assert reverse("instance_edit", args=[small.pk, other.pk]) in html
    figure = _figures(html)["not-production-billable"]
    names = [t["name"] for t in figure["data"]]
    assert any(str(other) in n for n in names) and "Production (health measures)" in names
    # Each line has a panel of its own, so small instances are not flattened by Production.
    assert len({t["yaxis"] for t in figure["data"]}) == len(names)

    detail = _html(_client(csm).get(url + f"&instance={other.pk}"))
    figures = _figures(detail)
    users = figures[f"not-production-{other.pk}-0"]["data"]
    latest = MonthlyUsage.objects.filter(instance=other).latest("month")
    assert users[0]["name"] == "Billable users" and users[0]["y"][-1] == latest.billable_users


def test_empty_charts_say_why_in_the_words_of_the_faq(db, viewer):
    no_production = build_account("noprod", instances=1, pings=3, production=0)
    html = _html(_client(viewer).get(reverse("account_trends", args=[no_production.pk])))
    assert "No Production instance" in html
    assert "Label the production instance" in html

    silent = Company.objects.create(name="silent", crm_account_id="crm-silent", segment="Scale")
    html = _html(_client(viewer).get(reverse("account_adoption", args=[silent.pk])))
    assert "No usage data in the last 24 months" in html and "Service Ping" in html
    html = _html(_client(viewer).get(reverse("account_summary", args=[silent.pk])))
    assert "No score yet" in html


def test_old_versions_explain_missing_billable_users(db, viewer):
    company = build_account("legacy", instances=1, pings=3)
    UsagePing.objects.filter(instance__company=company).update(
        version="13.12.1-ee", billable_users=None
    )
    MonthlyUsage.objects.filter(company=company).update(version="13.12.1-ee", billable_users=None)
    Instance.objects.filter(company=company).update(version="13.12.1-ee")
    companies_refresh(company_ids=[company.pk], reason="test")
    url = reverse("account_trends", args=[company.pk]) + "?report=license"
    html = _html(_client(viewer).get(url))
    assert "Billable users were instrumented in GitLab 14.0" in html


# --------------------------------------------------------------------------------------------------
# Instance and Namespace Details, labels


def test_instances_page_lists_every_detail(small, viewer):
    html = _html(_client(viewer).get(reverse("account_instances", args=[small.pk])))
    for instance in small.instances.select_related("subscription"):
        assert instance.hostname in html and instance.uuid in html
        assert instance.get_instance_type_display() in html
        assert instance.version in html and "A-S-small" in html
        assert f"{instance.last_ping_at:%-d %b %Y}" in html
        assert f"{instance.first_ping_at:%-d %b %Y}" in html
    assert "Included in Health Measure" in html
    assert "used in health measures" in html


def test_viewer_and_other_csms_get_no_edit_controls(small, csm, other_csm, viewer):
    url = reverse("account_instances", args=[small.pk])
    instance = small.instances.first()
    edit = reverse("instance_edit", args=[small.pk, instance.pk])
    assert edit in _html(_client(csm).get(url))
    for user in (other_csm, viewer):
        html = _html(_client(user).get(url))
        assert edit not in html
        assert 'name="instance_type"' not in html
        assert "Apply now" not in html


def test_editing_records_one_pending_change_per_changed_field(small, csm, settings):
    instance = small.instances.exclude(instance_type="production").get()
    applied = instance.instance_type
    url = reverse("instance_edit", args=[small.pk, instance.pk])
    before = timezone.now()
    response = _client(csm).post(
        url, {"instance_type": "production", "health_inclusion": "opt_out"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith(f"#instance-{instance.pk}")
    changes = LabelChange.objects.filter(instance=instance, status="pending")
    assert {(c.field, c.old_value, c.new_value) for c in changes} == {
        ("instance_type", applied, "production"),
        ("health_inclusion", "", "opt_out"),
    }
    for change in changes:
        assert change.requested_by == csm
        assert change.effective_at >= before + settings.LABEL_REFRESH_DELAY
    instance.refresh_from_db()
    assert instance.instance_type == applied  # reports keep the applied value until then

    html = _html(_client(csm).get(reverse("account_instances", args=[small.pk])))
    change = changes.get(field="instance_type")
    assert "Pending" in html
    assert "reflected in reports at" in html
    assert f"{change.effective_at:%-d %b %Y %H:%M} UTC" in html
    # the form (on the edit page, reached through ⋮ → Edit) starts from the pending values
    assert f'href="{url}"' in html
    assert 'value="production" selected' in _html(_client(csm).get(url))


def test_editing_only_one_field_and_resubmitting_changes_nothing_more(small, csm):
    instance = small.instances.exclude(instance_type="production").get()
    url = reverse("instance_edit", args=[small.pk, instance.pk])
    client = _client(csm)
    client.post(url, {"instance_type": "obsolete", "health_inclusion": ""})
    client.post(url, {"instance_type": "obsolete", "health_inclusion": ""})
    assert LabelChange.objects.filter(instance=instance).count() == 1
    response = client.post(url, {"instance_type": instance.instance_type, "health_inclusion": ""})
    assert LabelChange.objects.get(instance=instance, new_value="obsolete").status == "cancelled"
    assert not LabelChange.objects.filter(instance=instance, new_value=instance.instance_type)
    assert any("cancelled" in str(m) for m in get_messages(response.wsgi_request))


def test_invalid_label_is_refused_with_an_explanation(small, csm):
    instance = small.instances.first()
    url = reverse("instance_edit", args=[small.pk, instance.pk])
    response = _client(csm).post(url, {"instance_type": "banana", "health_inclusion": ""})
    assert response.status_code == 400
    assert "Select a valid choice" in _html(response)
    assert not LabelChange.objects.filter(instance=instance).exists()


def test_edit_page_works_without_javascript(small, csm):
    instance = small.instances.first()
    response = _client(csm).get(reverse("instance_edit", args=[small.pk, instance.pk]))
    html = _html(response)
    assert response.status_code == 200
    assert f'action="{reverse("instance_edit", args=[small.pk, instance.pk])}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<select name="instance_type"' in html and '<select name="health_inclusion"' in html


def test_only_owners_and_ops_may_edit_labels(small, ops, other_csm, viewer):
    instance = small.instances.first()
    url = reverse("instance_edit", args=[small.pk, instance.pk])
    data = {"instance_type": "obsolete", "health_inclusion": ""}
    for user in (other_csm, viewer):
        assert _client(user).get(url).status_code == 403
        assert _client(user).post(url, data).status_code == 403
    assert not LabelChange.objects.exists()
    assert _client(ops).post(url, data).status_code == 302
    assert LabelChange.objects.filter(instance=instance, requested_by=ops).exists()


def test_an_instance_of_another_account_cannot_be_edited_through_this_one(small, ops):
    other = build_account("foreign", instances=1, pings=1)
    url = reverse("instance_edit", args=[small.pk, other.instances.get().pk])
    assert _client(ops).post(url, {"instance_type": "obsolete"}).status_code == 404


def test_ops_apply_a_pending_change_now(small, ops, csm, viewer):
    instance = small.instances.exclude(instance_type="production").get()
    change = label_change_request(
        instance=instance, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    url = reverse("label_apply_now", args=[change.pk])
    html = _html(_client(ops).get(reverse("account_instances", args=[small.pk])))
    assert url in html and "Apply now" in html
    assert url not in _html(_client(csm).get(reverse("account_instances", args=[small.pk])))

    for user in (csm, viewer):
        assert _client(user).post(url).status_code == 403
    assert _client(ops).get(url).status_code == 405
    change.refresh_from_db()
    assert change.status == "pending"

    response = _client(ops).post(url)
    assert response.status_code == 302
    change.refresh_from_db()
    instance.refresh_from_db()
    assert (change.status, change.applied_via, change.applied_by) == ("applied", "apply_now", ops)
    assert instance.instance_type == "obsolete"

    again = _client(ops).post(url)
    assert any("no longer pending" in str(m) for m in get_messages(again.wsgi_request))


def test_warns_when_more_than_one_instance_is_in_health_measures(large, csm):
    url = reverse("account_instances", args=[large.pk])
    html = _html(_client(csm).get(url))
    assert 'data-testid="multiple-health-warning"' in html
    assert "More than one instance is included in health measures (2)" in html
    second = large.instances.filter(instance_type="production").order_by("id").last()
    label_change_request(instance=second, field="health_inclusion", value="opt_out", by=csm)
    html = _html(_client(csm).get(url))
    assert "Once the pending changes take effect: 1 instance" in html


def test_label_history_is_shown(large, csm):
    html = _html(_client(csm).get(reverse("account_instances", args=[large.pk])))
    assert "Recent label changes" in html
    assert html.count("Unknown → Non-Production") >= 5


def test_label_history_says_how_each_change_was_applied_in_words(small, ops, csm):
    """``applied_via`` is a code ("apply_now", "schedule", "sweep"): pages say it in words."""
    instance = small.instances.exclude(instance_type="production").get()
    now_change = label_change_request(
        instance=instance, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    label_change_apply(change_id=now_change.pk, via="apply_now", by=ops, force=True)
    later = label_change_request(
        instance=instance, field="health_inclusion", value="opt_out", by=csm, schedule=False
    )
    label_change_apply(change_id=later.pk, via="schedule", force=True)
    pages = (
        reverse("account_instances", args=[small.pk]),
        reverse("instance_edit", args=[small.pk, instance.pk]),
    )
    for url in pages:
        html = _html(_client(csm).get(url))
        assert "(applied now by ops_user)" in html, url
        assert "(applied on schedule)" in html, url
        assert "applynow" not in html and "apply_now" not in html, url
