"""The data tables under the C360 charts: the numbers behind each figure, as plain cells.

Plain HTML tables, not django-tables2: they are unsorted and unpaginated, one per chart, and
rendered once, when a ``sections.ChartBlock`` is built, then cached with it. ``table_html``
writes them in Python with Django's ``escape`` on every text: the largest (NOT Production, 81
instances × 24 months, ~2,000 cells) took 13.3 ms per cold view through a template and 1.9 ms
this way (in-process, the bench book's largest account) — the biggest part of that page's
first view after a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape as _html_escape
from typing import NamedTuple

from django.utils.safestring import SafeString, mark_safe

from usage_portal.web.c360.catalogue import RatioReport
from usage_portal.web.c360.charts import Point, Series
from usage_portal.web.c360.series import RatioRow
from usage_portal.web.c360.viewmodels import format_number, format_value, metric_ref


class Cell(NamedTuple):
    # A tuple, not a frozen dataclass: a table builds thousands, at a third of the cost.
    text: str
    color: str | None = None
    num: bool = False


Table = tuple[tuple[Cell, ...], list[list[Cell]]]


def escape(text: object) -> str:
    """As ``django.utils.html.escape`` writes it (``html.escape(str(text))``), without its
    lazy-string wrapper: a fifth of the cost, over thousands of cells."""
    return _html_escape(str(text))


def table_html(headers: Sequence[Cell], rows: Sequence[Sequence[Cell]]) -> SafeString:
    """The ``<thead>`` and ``<tbody>`` of a data table; the first cell of a row heads it."""
    out = ["<thead><tr>"]
    out += [f'<th scope="col"{_NUM if h.num else ""}>{escape(h.text)}</th>' for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        if not row:
            continue
        out.append(f'<tr><th scope="row">{escape(row[0].text)}</th>')
        out += [_cell(c) for c in row[1:]]
        out.append("</tr>")
    out.append("</tbody>")
    return mark_safe("".join(out))  # noqa: S308 - every text above went through escape()


_NUM = ' class="num"'


def _cell(cell: Cell) -> str:
    text = escape(cell.text)
    if cell.color:
        return f'<td><span class="pill pill-{escape(cell.color)}">{text}</span></td>'
    return f"<td{_NUM if cell.num else ''}>{text}</td>"


def series_table(series: Sequence[Series], months: Sequence[date]) -> Table:
    """Month × series values, newest month first."""
    headers = (Cell("Month"), *(Cell(s.name, num=True) for s in series))
    values = [{p.month: p.value for p in s.points} for s in series]
    rows = [
        [Cell(f"{m:%b %Y}"), *(Cell(format_number(v.get(m)), num=True) for v in values)]
        for m in reversed(months)
    ]
    return headers, rows


def series_table_html(series: Sequence[Series], months: Sequence[date]) -> SafeString:
    """``table_html(*series_table(...))`` in one pass, for the widest tables (NOT Production:
    one column per instance): no cells in between, 4.6 ms → 2.4 ms per cold view there. Most
    cells repeat a value (no ping: "—", small counts), so each integer's cell is written once
    (→ 0.7 ms)."""
    values = [{p.month: p.value for p in s.points} for s in series]
    out = ['<thead><tr><th scope="col">Month</th>']
    out += [f'<th scope="col"{_NUM}>{escape(s.name)}</th>' for s in series]
    out.append("</tr></thead><tbody>")
    cells: dict[int | None, str] = {}
    for m in reversed(months):
        out.append(f'<tr><th scope="row">{m:%b %Y}</th>')
        for v in values:
            value = v.get(m)
            # ints and None only: 1 == 1.0 == True as keys, and -0.0 prints otherwise than 0
            kept = value is None or type(value) is int
            cell = cells.get(value) if kept else None
            if cell is None:
                # An int is written in digits and commas: nothing in it to escape.
                text = format_number(value) if kept else escape(format_number(value))
                cell = f"<td{_NUM}>{text}</td>"
                if kept:
                    cells[value] = cell
            out.append(cell)
        out.append("</tr>")
    out.append("</tbody>")
    return mark_safe("".join(out))  # noqa: S308 - every text above went through escape()


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
