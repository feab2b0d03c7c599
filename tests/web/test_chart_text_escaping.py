"""Text from data reaches a Plotly figure escaped, so Plotly draws it literally.

Plotly reads a subset of HTML in legend and hover names, annotations and tick labels: a hostname
``<b>x</b>`` came out bold, and ``<a href>`` would be a link. The figures must carry
``&lt;b&gt;`` instead (Plotly decodes it when drawing, showing ``<b>``).
"""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from django.urls import reverse

from instances.models import Instance
from tests.conftest import PASSWORD, login
from tests.web.test_c360_views import _client, _figures, _html, build_account
from usage_portal.web.c360 import charts

HOSTILE = '<b>x</b><a href="javascript:alert(1)">y</a>'
ESCAPED = '&lt;b&gt;x&lt;/b&gt;&lt;a href="javascript:alert(1)"&gt;y&lt;/a&gt;'
MONTHS = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]


def _texts(figure) -> list[str]:
    """Every string in a figure."""
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            out.append(node)

    walk(figure)
    return out


def _assert_no_raw_markup(figure) -> None:
    raw = [t for t in _texts(figure) if "<b>" in t or "<a" in t]
    assert raw == []


def _series(name: str) -> charts.Series:
    return charts.Series(name, [charts.Point(m, n + 1) for n, m in enumerate(MONTHS)])


def test_plot_text_escapes_what_plotly_reads_as_markup():
    assert charts.plot_text(HOSTILE) == ESCAPED
    assert charts.plot_text("a & b") == "a &amp; b"
    assert charts.plot_text("gitlab.example.com") == "gitlab.example.com"


@pytest.mark.parametrize("build", ["lines", "stacked_bars", "small_multiples"])
def test_series_names_enter_every_figure_escaped(build):
    series = [_series(HOSTILE), _series(f"{HOSTILE} (Non-Production)")]
    if build == "small_multiples":
        figure = charts.small_multiples(series)
    else:
        figure = getattr(charts, build)(series, y_title="users")
    _assert_no_raw_markup(figure)
    assert [t["name"] for t in figure["data"]] == [ESCAPED, f"{ESCAPED} (Non-Production)"]
    # The hover names the trace by its (escaped) name, not by a copy of the text.
    assert all(
        t["hovertemplate"].endswith("<extra>%{fullData.name}</extra>") for t in figure["data"]
    )
    if build == "small_multiples":
        titles = [a["text"] for a in figure["layout"]["annotations"]]
        assert titles == [ESCAPED, f"{ESCAPED}<br>(Non-Production)"]


def test_scored_line_name_and_marker_labels_are_escaped():
    figure = charts.scored_line(
        [charts.Point(m, 0.5, "Green") for m in MONTHS],
        name=HOSTILE,
        unit="fraction",
        y_title="%",
        markers=[charts.Marker(datetime(2026, 2, 10), f"scheme → {HOSTILE}")],
    )
    _assert_no_raw_markup(figure)
    assert figure["data"][0]["name"] == ESCAPED
    (note,) = figure["layout"]["annotations"]
    assert note["text"] == f"scheme → {ESCAPED}"
    assert note["hovertext"] == f"2026-02-10 00:00 UTC: scheme → {ESCAPED}"


@pytest.fixture
def hostile_account(db, csm):
    """An account whose instance outside health measures reports the hostile hostname."""
    company = build_account("escaping", instances=2, pings=3, csm=csm)
    other = company.instances.exclude(instance_type="production").get()
    Instance.objects.filter(pk=other.pk).update(hostname=HOSTILE)
    return company, other


def test_the_not_production_page_carries_the_hostname_escaped(hostile_account, csm):
    company, other = hostile_account
    url = reverse("account_trends", args=[company.pk]) + "?report=not_production"
    figures = _figures(_html(_client(csm).get(url)))
    assert figures
    for figure in figures.values():
        _assert_no_raw_markup(figure)
    names = [t["name"] for t in figures["not-production-billable"]["data"]]
    assert any(name.startswith(ESCAPED) for name in names), names
    assert HOSTILE not in json.dumps(figures)

    detail = _figures(_html(_client(csm).get(f"{url}&instance={other.pk}")))
    for figure in detail.values():
        _assert_no_raw_markup(figure)


@pytest.mark.browser
def test_the_panel_titles_and_hover_show_the_hostname_literally_and_draw_no_link(
    page, transactional_db, csm
):
    """Small multiples name each panel in a title (their legend) and in the hover box."""
    company = build_account("escaping", instances=2, pings=3, csm=csm)
    other = company.instances.exclude(instance_type="production").get()
    Instance.objects.filter(pk=other.pk).update(hostname=HOSTILE)
    login(page, csm.username, PASSWORD)
    page.goto(f"{page.base_url}/accounts/{company.pk}/trends/?report=not_production")
    page.wait_for_selector("[data-plotly-figure][data-rendered] svg.main-svg")
    chart = page.locator("#not-production-billable")
    titles = chart.locator("g.annotation").all_text_contents()
    assert any(t.startswith(HOSTILE) for t in titles), titles
    assert chart.locator("a").count() == 0
    assert chart.locator("svg b, svg [style*='font-weight:bold']").count() == 0

    # The hover box names the line by its hostname, drawn as text.
    point = chart.locator("g.scatterlayer g.trace").nth(1).locator("path.point").last
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#not-production-billable g.hoverlayer g.hovertext")
    hover = " ".join(chart.locator("g.hoverlayer g.hovertext").all_text_contents())
    assert HOSTILE in hover, hover
    assert chart.locator("a").count() == 0
