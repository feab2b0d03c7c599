"""The data tables under the C360 charts: the numbers behind each figure, as plain cells.

Plain HTML tables (``templates/accounts/_data_table.html``, inside ``_chart_block.html``), not
django-tables2: they are unsorted and unpaginated, one per chart. A chart's table is rendered
once, when its ``sections.ChartBlock`` is built, and cached with it: the largest (NOT
Production, 81 instances × 24 months, ~2,000 cells) took ~10 ms cold as a template, measured
against ~5 ms with ``format_html``; the cache makes either a once-per-data-version cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from usage_portal.web.c360.catalogue import RatioReport
from usage_portal.web.c360.charts import Point, Series
from usage_portal.web.c360.series import RatioRow
from usage_portal.web.c360.viewmodels import format_number, format_value, metric_ref


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    color: str | None = None
    num: bool = False


Table = tuple[tuple[Cell, ...], list[list[Cell]]]


def table_html(headers: Sequence[Cell], rows: Sequence[Sequence[Cell]]) -> SafeString:
    """The ``<thead>`` and ``<tbody>`` of a data table; the first cell of a row heads it."""
    return render_to_string(
        "accounts/_data_table.html",
        {"headers": headers, "rows": [(row[0], row[1:]) for row in rows if row]},
    )


def series_table(series: Sequence[Series], months: Sequence[date]) -> Table:
    """Month × series values, newest month first."""
    headers = (Cell("Month"), *(Cell(s.name, num=True) for s in series))
    values = [{p.month: p.value for p in s.points} for s in series]
    rows = [
        [Cell(f"{m:%b %Y}"), *(Cell(format_number(v.get(m)), num=True) for v in values)]
        for m in reversed(months)
    ]
    return headers, rows


def points_table(points: Sequence[Point], unit: str, label: str) -> Table:
    """Month, value and health colour, newest month first."""
    rows = [
        [
            Cell(f"{p.month:%b %Y}"),
            Cell(format_value(p.value, unit), num=True),
            Cell(p.color or "NA", color=p.color or "NA"),
        ]
        for p in reversed(points)
    ]
    return (Cell("Month"), Cell(label, num=True), Cell("Colour")), rows


def ratio_table(report: RatioReport, rows: Sequence[RatioRow]) -> Table:
    """Numerator, denominator, ratio, colour and NA reason per month, newest first."""
    headers = (
        Cell("Month"),
        Cell(" + ".join(metric_ref(m).label for m in report.numerator), num=True),
        Cell(" + ".join(metric_ref(m).label for m in report.denominator), num=True),
        Cell(report.tab, num=True),
        Cell("Colour"),
        Cell("Note"),
    )
    body = [
        [
            Cell(f"{r.month:%b %Y}"),
            Cell(format_number(r.numerator), num=True),
            Cell(format_number(r.denominator), num=True),
            Cell(format_value(r.value, report.unit), num=True),
            Cell(r.color or "—", color=r.color),
            Cell(r.reason or ""),
        ]
        for r in reversed(rows)
    ]
    return headers, body
