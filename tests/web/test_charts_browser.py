"""The C360 charts and scorecard as a person sees them, at 1440 and 390 px.

Screenshots are written to /tmp/c360_polish_<what>_<width>.png.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import Company
from scoring.models import SchemeChange
from tests.conftest import login

pytestmark = pytest.mark.browser

WIDTHS = (1440, 390)


@pytest.fixture
def acme(transactional_db, demo) -> Company:
    """csm1's account with two instances outside health measures."""
    return Company.objects.get(name="Acme Robotics")


def _open(page, path: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{page.base_url}{path}")
    page.wait_for_load_state("networkidle")


def _charts_drawn(page) -> None:
    page.wait_for_selector("[data-plotly-figure][data-rendered] svg.main-svg")


def _overlap(a: dict | None, b: dict | None) -> bool:
    if not a or not b:
        return False
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_mode_bar_never_covers_a_legend(page, acme, width):
    login(page, "csm1", "demo")
    _open(page, f"/accounts/{acme.pk}/trends/?report=ci", width)
    _charts_drawn(page)
    charts = page.locator("[data-plotly-figure]")
    legends = 0
    for n in range(charts.count()):
        chart = charts.nth(n)
        legend = chart.locator("g.legend")
        if not legend.count():
            continue
        legends += 1
        chart.scroll_into_view_if_needed()
        chart.locator(".nsewdrag").first.hover()  # a tap on a phone counts as a hover
        page.wait_for_timeout(150)
        modebar = chart.locator(".modebar")
        shown = modebar.count() and modebar.first.is_visible()
        if width < 640:
            assert not shown  # no mode bar on phones
        elif shown:
            assert not _overlap(modebar.first.bounding_box(), legend.first.bounding_box())
    assert legends >= 1
    page.screenshot(path=f"/tmp/c360_polish_modebar_{width}.png", full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_use_cases_sit_under_user_engagement_which_sits_with_license_utilization(page, acme, width):
    login(page, "csm1", "demo")
    _open(page, f"/accounts/{acme.pk}/", width)

    def left(measure: str) -> float:
        return page.locator(f'tr[data-measure="{measure}"] th').first.evaluate(
            "th => { const r = document.createRange(); r.selectNodeContents(th);"
            " return r.getBoundingClientRect().left; }"
        )

    assert left("user_engagement") == pytest.approx(left("license_utilization"), abs=1)
    for use_case in ("scm", "ci", "cd", "devsecops"):
        assert left(use_case) >= left("user_engagement") + 12, use_case
    page.locator("#scorecard").screenshot(path=f"/tmp/c360_polish_scorecard_{width}.png")


def _month(text: str) -> date:
    return datetime.strptime(text.strip(), "%b %Y").date()


@pytest.mark.parametrize("width", WIDTHS)
def test_two_scheme_changes_a_minute_apart_show_as_one_label_on_score_charts_only(
    page, acme, width
):
    at = timezone.now() - timedelta(days=1)
    SchemeChange.objects.create(
        from_scheme="gitlab-handbook-2025", to_scheme="gitlab-dbt-2024", changed_at=at
    )
    SchemeChange.objects.create(
        from_scheme="gitlab-dbt-2024",
        to_scheme="gitlab-handbook-2025@2",
        changed_at=at + timedelta(seconds=50),
    )
    Company.objects.filter(pk=acme.pk).touch()  # the cached sections follow
    login(page, "csm1", "demo")
    _open(page, f"/accounts/{acme.pk}/trends/?report=license", width)
    _charts_drawn(page)
    seats = page.locator("#trend-license-seats")
    lu = page.locator("#trend-license-lu")
    assert seats.locator("g.annotation").count() == 0  # raw usage: no marker
    labels = lu.locator("g.annotation")
    assert labels.count() == 1
    text = labels.first.text_content()
    assert "gitlab-dbt-2024" in text and "gitlab-handbook-2025@2" in text
    # The label stays over its chart.
    box, chart = labels.first.bounding_box(), lu.locator("svg.main-svg").first.bounding_box()
    assert chart["x"] - 1 <= box["x"] and box["x"] + box["width"] <= chart["x"] + chart["width"] + 1
    # The month axis ends with the data: no tick after the current month…
    this_month = timezone.now().date().replace(day=1)
    for chart_id in ("#trend-license-seats", "#trend-license-lu"):
        labels = page.locator(f"{chart_id} .xtick text").all()
        ticks = [t.text_content() for t in labels if t.is_visible()]
        # …and its label is drawn, not hidden for crossing the figure's edge.
        assert ticks and max(_month(t) for t in ticks) == this_month, (chart_id, ticks)
    lu.screenshot(path=f"/tmp/c360_polish_markers_{width}.png")


@pytest.mark.parametrize("width", WIDTHS)
def test_not_production_panels_are_titled_and_apart(page, acme, width):
    login(page, "csm1", "demo")
    _open(page, f"/accounts/{acme.pk}/trends/?report=not_production", width)
    _charts_drawn(page)
    chart = page.locator("#not-production-billable")
    titles = chart.locator("g.annotation")
    panels = chart.locator("g.draglayer .nsewdrag")
    assert titles.count() == panels.count() == 3  # Production and the two instances
    boxes = [titles.nth(n).bounding_box() for n in range(titles.count())]
    plots = [panels.nth(n).bounding_box() for n in range(3)]
    for n, box in enumerate(boxes):
        for other in (*boxes[n + 1 :], *plots):
            assert not _overlap(box, other)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    chart.screenshot(path=f"/tmp/c360_polish_not_production_{width}.png")
