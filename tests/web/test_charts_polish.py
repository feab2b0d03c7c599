"""The C360 charts and scorecard say what the Summary says, and say it legibly.

A young account's current month is coloured by the rule the Summary uses; scheme-change
markers sit on score charts only, merged when close, inside the months charted; the NOT
Production report draws one panel per instance; engine reasons and warnings read as sentences.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from scoring.models import SchemeChange, ScoreSnapshot
from tests.web.test_c360_views import _client, _figures, _html, build_account
from usage_portal.web.c360 import charts
from usage_portal.web.c360.charts import Marker, Point, Series

# A day early in a month: an account signed 6 weeks before is one month old today and two at
# the month's end, one signed 2 weeks before is 0 today and 1 at the month's end.
TODAY = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MONTHS = [date(2026, m, 1) for m in range(7, 13)]


@pytest.fixture
def small(db, csm):
    """A Production instance and one outside health measures, three weekly pings each."""
    return build_account("small", instances=2, pings=3, csm=csm)


@pytest.fixture
def frozen_now(monkeypatch):
    # The C360 sections are cached by account version, a time: under a frozen clock two tests'
    # accounts would share one.
    cache.clear()
    monkeypatch.setattr(timezone, "now", lambda: TODAY)
    yield TODAY
    cache.clear()


# --------------------------------------------------------------------------------------------------
# A young account: the current month's colours are the Summary's


@pytest.mark.parametrize("customer_days", [14, 42])
def test_a_young_accounts_current_month_is_coloured_as_the_summary(
    db, frozen_now, viewer, customer_days
):
    company = build_account(
        f"young{customer_days}", instances=1, pings=2, customer_since_days=customer_days
    )
    card = ScoreSnapshot.objects.get(company=company, is_current=True).detail
    assert card["measures"]["license_utilization"]["color"] == "NA"  # too early, says the Summary
    client = _client(viewer)
    trends = reverse("account_trends", args=[company.pk])

    for report, chart_id, expected in (
        ("license", "trend-license-lu", card["measures"]["license_utilization"]["color"]),
        ("scm", "trend-scm-score", card["use_cases"]["scm"]["color"]),
        ("cd", "trend-cd-score", card["use_cases"]["cd"]["color"]),
    ):
        html = _html(client.get(trends + f"?report={report}"))
        assert _current_color(_figures(html).get(chart_id)) == expected, report


def _current_color(figure: dict | None) -> str:
    """The colour of a score chart's newest month; no chart at all is NA in every month."""
    if figure is None:
        return "NA"
    trace = figure["data"][0]
    color = trace["customdata"][-1] or "NA"
    assert trace["marker"]["color"][-1] == charts.COLOR_HEX.get(color, charts.PALETTE[0])
    return color


# --------------------------------------------------------------------------------------------------
# Scheme-change markers


def _points(values=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7)) -> list[Point]:
    return [Point(m, v, "Green") for m, v in zip(MONTHS, values, strict=True)]


def _score_figure(markers) -> dict:
    return charts.scored_line(_points(), name="LU", unit="fraction", y_title="%", markers=markers)


def _marker_lines(figure: dict) -> list[dict]:
    return [s for s in figure["layout"]["shapes"] if s["type"] == "line"]


def test_two_scheme_changes_a_minute_apart_draw_one_marker_naming_both():
    at = datetime(2026, 10, 14, 9, 0, tzinfo=UTC)
    figure = _score_figure(
        [
            Marker(at, "scheme → gitlab-dbt-2024"),
            Marker(at + timedelta(seconds=50), "scheme → gitlab-handbook-2025@2"),
        ]
    )
    assert len(_marker_lines(figure)) == 1
    (note,) = figure["layout"]["annotations"]
    assert "gitlab-dbt-2024" in note["text"] and "gitlab-handbook-2025@2" in note["text"]


def test_scheme_changes_months_apart_keep_a_marker_each():
    figure = _score_figure(
        [
            Marker(datetime(2026, 7, 20, tzinfo=UTC), "scheme → gitlab-dbt-2024"),
            Marker(datetime(2026, 11, 3, tzinfo=UTC), "scheme → gitlab-handbook-2025"),
        ]
    )
    assert len(_marker_lines(figure)) == 2
    assert [a["text"] for a in figure["layout"]["annotations"]] == [
        "scheme → gitlab-dbt-2024",
        "scheme → gitlab-handbook-2025",
    ]


def test_the_month_axis_is_bounded_by_the_data_not_by_the_markers():
    # After the last month's point (the 1st), still in the month charted: drawn, and the axis
    # ends close after it rather than wherever Plotly would fit the label.
    late = Marker(datetime(2026, 12, 20, tzinfo=UTC), "scheme → gitlab-handbook-2025@2")
    figure = _score_figure([late])
    start, end = (date.fromisoformat(x[:10]) for x in figure["layout"]["xaxis"]["range"])
    assert MONTHS[0] - timedelta(days=20) <= start < MONTHS[0]
    assert date(2026, 12, 20) < end <= date(2027, 1, 1)
    (line,) = _marker_lines(figure)
    assert start <= date.fromisoformat(line["x0"][:10]) <= end
    # A label in the right half of the chart ends at its line, so it never overflows the axis.
    assert figure["layout"]["annotations"][0]["xanchor"] == "right"


def test_raw_usage_charts_draw_no_scheme_marker(small, viewer):
    SchemeChange.objects.create(
        from_scheme="gitlab-handbook-2025", to_scheme="gitlab-dbt-2024", changed_at=timezone.now()
    )
    client = _client(viewer)
    trends = reverse("account_trends", args=[small.pk])
    figures = {
        **_figures(_html(client.get(trends + "?report=ci"))),
        **_figures(_html(client.get(trends + "?report=license"))),
        **_figures(_html(client.get(trends + "?report=not_production"))),
        **_figures(_html(client.get(reverse("account_adoption", args=[small.pk])))),
    }
    scores = {"trend-ci-score", "trend-license-lu"} | {k for k in figures if "adoption" in k}
    for chart_id, figure in figures.items():
        marked = any("gitlab-dbt-2024" in a["text"] for a in figure["layout"]["annotations"])
        assert marked == (chart_id in scores), chart_id


# --------------------------------------------------------------------------------------------------
# NOT Production: small multiples


def test_not_production_draws_one_panel_per_instance_on_a_shared_month_axis():
    instances = [
        Series(f"inst{n} (Non-Production)", [Point(m, n * 3 + i) for i, m in enumerate(MONTHS)])
        for n in range(3)
    ]
    production = Series("Production (health measures)", [Point(m, 4_000) for m in MONTHS])
    figure = charts.small_multiples([production, *instances])
    layout = figure["layout"]
    axes = [t["yaxis"] for t in figure["data"]]
    assert len(set(axes)) == 4  # a panel each, Production's included
    assert {t["xaxis"] for t in figure["data"]} == {"x"}
    keys = ["yaxis" if a == "y" else f"yaxis{a[1:]}" for a in axes]
    assert not any("overlaying" in layout[k] for k in keys)
    domains = sorted(layout[k]["domain"] for k in keys)
    for (_, top), (bottom, _) in zip(domains, domains[1:], strict=False):
        assert top < bottom  # panels do not overlap
    # Each panel is named by its series, at the panel's top, in the order given.
    titles = [(a["text"].replace("<br>(", " ("), a["y"]) for a in layout["annotations"]]
    assert titles == [
        (s.name, layout[k]["domain"][1])
        for s, k in zip((production, *instances), keys, strict=True)
    ]
    assert [t["name"] for t in figure["data"]] == [a for a, _ in titles]
    # Production, far larger, has a scale of its own: no panel's range is fixed to another's.
    assert not any("matches" in layout[k] or "range" in layout[k] for k in keys)


def test_not_production_page_draws_the_small_multiples(small, csm):
    other = small.instances.exclude(instance_type="production").get()
    url = reverse("account_trends", args=[small.pk]) + "?report=not_production"
    figure = _figures(_html(_client(csm).get(url)))["not-production-billable"]
    names = [t["name"] for t in figure["data"]]
    assert names[0] == "Production (health measures)" and any(str(other) in n for n in names)
    assert len({t["yaxis"] for t in figure["data"]}) == len(names)
    assert "yaxis2" in figure["layout"] and "overlaying" not in figure["layout"]["yaxis2"]


# --------------------------------------------------------------------------------------------------
# Reasons and warnings are sentences

_SENTENCES = (
    r'<td data-label="Notes" class="wide">(.*?)</td>',
    r'<p class="banner banner-warning[^"]*">(.*?)</p>',
    r'<p class="na-reason"><strong>[^<]*</strong> (.*?)</p>',
)


def _sentences(html: str) -> list[str]:
    return [t.strip() for p in _SENTENCES for t in re.findall(p, html, re.S) if t.strip()]


def test_every_reason_and_warning_on_summary_and_scorecard_starts_with_a_capital(
    transactional_db, demo, viewer
):
    from accounts.models import Company

    build_account("newest", instances=2, pings=2, customer_since_days=10, production=2)
    client = _client(viewer)
    seen = []
    for company in Company.objects.all():
        for name in ("account_summary", "account_scorecard"):
            seen += _sentences(_html(client.get(reverse(name, args=[company.pk]))))
    assert len(seen) > 20
    assert any(s.startswith("Too early to score") for s in seen)  # the newest customer
    assert any(s.startswith("More than one instance") for s in seen)
    lower = sorted({s for s in seen if not s[0].isupper()})
    assert not lower
