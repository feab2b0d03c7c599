"""Plotly figures for the Account C360 pages, as plain dicts.

Pure functions: plain rows in, ``{"data": [...], "layout": {...}}`` out, or ``None`` when there is
nothing to draw (the chart partial then explains why). Plain dicts rather than
``plotly.graph_objects`` skip Plotly's per-object validation; ``static/js/charts.js`` draws them.
Colours match the Red/Yellow/Green pills; other series use a palette without those hues.
Every text from data (series names, hostnames among them; marker labels) enters a figure through
``plot_text``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, NamedTuple

Unit = Literal["fraction", "ratio", "count", "points"]

COLOR_HEX = {"Red": "#c62828", "Yellow": "#e0a800", "Green": "#2e7d32", "NA": "#9e9eb0"}
BAND_FILL = {
    "Red": "rgba(198, 40, 40, 0.09)",
    "Yellow": "rgba(224, 168, 0, 0.12)",
    "Green": "rgba(46, 125, 50, 0.09)",
}
# Series colours that cannot be mistaken for a health colour.
PALETTE = (
    "#6b4fbb",
    "#1565c0",
    "#00897b",
    "#8d6e63",
    "#ad1457",
    "#455a64",
    "#5c6bc0",
    "#00838f",
)
NEUTRAL_LINE = "#6b6b80"
MARKER_COLOR = "#4b3491"


class Point(NamedTuple):
    """One month's value; ``color`` is the health colour the scoring engine gave it, if any.

    A tuple, not a frozen dataclass: the NOT Production chart builds thousands, at a third of
    the cost."""

    month: date
    value: float | None
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[Point]
    color: str | None = None
    dash: bool = False


@dataclass(frozen=True, slots=True)
class BandRange:
    """A threshold band in the measure's own unit (fractions for percentages)."""

    lower: float | None
    upper: float | None
    color: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at ``at`` (e.g. where the scoring scheme changed)."""

    at: date | datetime
    text: str


def plot_text(text: object) -> str:
    """Text from data as Plotly must be given it to draw it literally.

    Plotly reads a subset of HTML in every text it draws (legend and hover names, annotations,
    tick labels): a hostname ``<b>x</b>`` would turn bold and ``<a href="…">`` become a link.
    It decodes ``&amp;``, ``&lt;`` and ``&gt;`` when it draws, so escaping those three shows
    the text as it is. The markup the charts add themselves (``<br>``) goes in after.
    """
    return html.escape(str(text), quote=False)


# The hover box names its trace from the trace's (escaped) name, never by writing the name into
# the template: Plotly would read a "%{…}" in a hostname as one of its own variables.
_HOVER_NAME = "<extra>%{fullData.name}</extra>"


def _scale(unit: Unit) -> float:
    return 100.0 if unit == "fraction" else 1.0


def _hover_format(unit: Unit) -> str:
    return {"fraction": ".1f", "ratio": ".2f", "count": ",.0f", "points": ".1f"}[unit]


def _iso(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.isoformat()


def _stamp(moment: date | datetime) -> str:
    """A marker's moment with its zone's abbreviation, as the caller's zone gave it ("2026-02-10
    14:00 CET"; naive is UTC); a day stays a day."""
    if isinstance(moment, datetime):
        return f"{_iso(moment)} {moment.tzname() or 'UTC'}"
    return _iso(moment)


#: Scheme changes closer than this share one marker: their labels would overlap on a month axis.
MARKER_MERGE_WITHIN = timedelta(days=31)
#: Room either side of the first and last month's point (a point stands for its whole month).
AXIS_PAD = timedelta(days=15)
#: Room right of the plot for the last month's tick label, which phones draw slanted: Plotly
#: hides a label that would cross the figure's edge.
RIGHT_MARGIN = 40


def _day(moment: date | datetime) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _month_end(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1) - timedelta(days=1)


def month_axis(months: Sequence[date], *, through: date | None = None) -> dict:
    """A date x-axis with one tick per month (every third month beyond a year), its range set
    to the months charted (to ``through`` if later): Plotly would otherwise widen it to fit
    every annotation's text."""
    axis = {
        "type": "date",
        "title": {"text": "Month (last ping of each calendar month)"},
        "tickformat": "%b %Y",
        "dtick": "M1" if len(set(months)) <= 12 else "M3",
        "hoverformat": "%b %Y",
        "showgrid": False,
        "automargin": True,
    }
    if months:
        end = max(max(months) + AXIS_PAD, through or date.min)
        axis["range"] = [(min(months) - AXIS_PAD).isoformat(), end.isoformat()]
    return axis


@dataclass(frozen=True, slots=True)
class _MarkerGroup:
    at: date | datetime
    texts: tuple[str, ...]
    times: tuple[date | datetime, ...]


def _chain(texts: Sequence[str]) -> str:
    """Changes in a row read as a chain: "scheme → a", "scheme → b" → "scheme → a<br>→ b".

    ``texts`` are escaped already (``plot_text``)."""
    head = texts[0].rpartition("→ ")[0]
    if len(texts) > 1 and head and all(t.startswith(f"{head}→ ") for t in texts):
        return "<br>".join([texts[0], *(f"→ {t.removeprefix(head + '→ ')}" for t in texts[1:])])
    return "<br>".join(texts)


def _merge_markers(markers: Sequence[Marker], first: date, end: date) -> list[_MarkerGroup]:
    """The markers inside ``first``…``end``, those closer than ``MARKER_MERGE_WITHIN`` to the
    first of their group drawn as one (at that first one)."""
    groups: list[_MarkerGroup] = []
    inside = sorted(
        (m for m in markers if first <= _day(m.at) <= end),
        key=lambda m: (_day(m.at), _iso(m.at)),
    )
    for marker in inside:
        last = groups[-1] if groups else None
        if last is not None and _day(marker.at) - _day(last.at) < MARKER_MERGE_WITHIN:
            groups[-1] = _MarkerGroup(last.at, (*last.texts, marker.text), (*last.times, marker.at))
        else:
            groups.append(_MarkerGroup(marker.at, (marker.text,), (marker.at,)))
    return groups


def _marker_layout(markers: Sequence[Marker], months: Sequence[date]) -> tuple[list, list, date]:
    """Dotted vertical lines with a label, for markers inside the charted months, and the last
    day the month axis must reach to show them."""
    if not months:
        return [], [], date.min
    first, last = min(months), max(months)
    start, end = first - AXIS_PAD, _month_end(last)
    groups = _merge_markers(markers, start, end)
    reach = max((_day(g.times[-1]) + timedelta(days=3) for g in groups), default=date.min)
    middle = start + (max(last + AXIS_PAD, reach) - start) / 2
    shapes, notes = [], []
    for group in groups:
        x = _iso(group.at)
        texts = [plot_text(text) for text in group.texts]
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": x,
                "x1": x,
                "y0": 0,
                "y1": 1,
                "line": {"color": MARKER_COLOR, "width": 1.5, "dash": "dot"},
            }
        )
        notes.append(
            {
                "x": x,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "bottom",
                # A label past the middle ends at its line: it stays over the plot.
                "xanchor": "right" if _day(group.at) > middle else "left",
                "align": "right" if _day(group.at) > middle else "left",
                "text": _chain(texts),
                "hovertext": "<br>".join(
                    f"{_stamp(t)}: {text}" for t, text in zip(group.times, texts, strict=True)
                ),
                "showarrow": False,
                "font": {"size": 10, "color": MARKER_COLOR},
            }
        )
    return shapes, notes, reach


def _band_shapes(bands: Sequence[BandRange], unit: Unit, top: float) -> list[dict]:
    scale = _scale(unit)
    shapes = []
    for band in bands:
        lower = 0.0 if band.lower is None else band.lower * scale
        upper = top if band.upper is None else min(band.upper * scale, top)
        if upper <= lower or band.color not in BAND_FILL:
            continue
        shapes.append(
            {
                "type": "rect",
                "xref": "paper",
                "yref": "y",
                "x0": 0,
                "x1": 1,
                "y0": lower,
                "y1": upper,
                "fillcolor": BAND_FILL[band.color],
                "line": {"width": 0},
                "layer": "below",
            }
        )
    return shapes


def _y_top(values: Sequence[float], bands: Sequence[BandRange], unit: Unit) -> float:
    """Room above the highest value and the highest finite threshold, so every band shows."""
    scale = _scale(unit)
    if unit == "points":
        return 100.0
    highest = max(values, default=0.0)
    finite = [b.upper * scale for b in bands if b.upper is not None]
    top = max(highest * 1.12, max(finite, default=0.0) * 1.3)
    if unit == "fraction":
        top = max(top, 10.0)
    return top or 1.0


def _layout(
    months: Sequence[date],
    *,
    y_title: str,
    unit: Unit,
    show_legend: bool,
    markers: Sequence[Marker] = (),
    extra_shapes: Sequence[dict] = (),
    y_range: tuple[float, float] | None = None,
    barmode: str | None = None,
) -> dict:
    marker_shapes, notes, reach = _marker_layout(markers, months)
    lines_above = max((n["text"].count("<br>") for n in notes), default=0)
    layout: dict = {
        "xaxis": month_axis(months, through=reach),
        "yaxis": _value_axis(unit, y_title, y_range),
        "shapes": [*extra_shapes, *marker_shapes],
        "annotations": notes,
        "showlegend": show_legend,
        # Above the plot: below it, month ticks (rotated on phones) would run into it.
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        "margin": {"t": 28 + 13 * lines_above, "r": RIGHT_MARGIN, "b": 64, "l": 64},
        "height": (400 if show_legend else 340) + 13 * lines_above,
    }
    if barmode:
        layout["barmode"] = barmode
    return layout


def _value_axis(unit: Unit, title: str, y_range: tuple[float, float] | None = None) -> dict:
    axis: dict = {
        "title": {"text": title},
        "automargin": True,
        "rangemode": "tozero",
        "zeroline": True,
        "zerolinecolor": "#dcdce6",
        "gridcolor": "#ececf2",
        "tickformat": {"fraction": ".0f", "points": ".0f"}.get(unit, ",~r"),
    }
    if unit == "fraction":
        axis["ticksuffix"] = "%"
    if y_range:
        axis["range"] = list(y_range)
    return axis


def scored_line(
    points: Sequence[Point],
    *,
    name: str,
    unit: Unit,
    y_title: str,
    bands: Sequence[BandRange] = (),
    markers: Sequence[Marker] = (),
) -> dict | None:
    """One measure over months: markers coloured Red/Yellow/Green, threshold bands shaded.

    Only these charts, coloured by the scheme, carry the scheme-change ``markers``.
    """
    drawn = [p for p in points if p.value is not None]
    if not drawn:
        return None
    scale = _scale(unit)
    months = [p.month for p in points]
    values = [p.value * scale for p in drawn]
    top = _y_top(values, bands, unit)
    suffix = "%" if unit == "fraction" else ""
    trace = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": plot_text(name),
        "x": [p.month.isoformat() for p in points],
        "y": [None if p.value is None else p.value * scale for p in points],
        "customdata": [p.color or "" for p in points],
        "line": {"color": NEUTRAL_LINE, "width": 2},
        "marker": {
            "size": 10,
            "color": [COLOR_HEX.get(p.color or "", PALETTE[0]) for p in points],
            "line": {"color": "#fff", "width": 1},
        },
        "connectgaps": False,
        "hovertemplate": f"%{{y:{_hover_format(unit)}}}{suffix} %{{customdata}}{_HOVER_NAME}",
    }
    return {
        "data": [trace],
        "layout": _layout(
            months,
            y_title=y_title,
            unit=unit,
            markers=markers,
            show_legend=False,
            extra_shapes=_band_shapes(bands, unit, top),
            y_range=(0, top),
        ),
    }


def _line_trace(s: Series, n: int, unit: Unit) -> dict:
    scale = _scale(unit)
    suffix = "%" if unit == "fraction" else ""
    color = s.color or PALETTE[n % len(PALETTE)]
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": plot_text(s.name),
        "x": [p.month.isoformat() for p in s.points],
        "y": [None if p.value is None else p.value * scale for p in s.points],
        "line": {"color": color, "width": 2, "dash": "dash" if s.dash else "solid"},
        "marker": {"size": 6, "color": color},
        "connectgaps": False,
        "hovertemplate": f"%{{y:{_hover_format(unit)}}}{suffix}{_HOVER_NAME}",
    }


def _has_values(series: Sequence[Series]) -> bool:
    return any(p.value is not None for s in series for p in s.points)


def lines(series: Sequence[Series], *, y_title: str, unit: Unit = "count") -> dict | None:
    """Several series over months (users, builds, …), one line each."""
    if not _has_values(series):
        return None
    months = [p.month for s in series for p in s.points]
    return {
        "data": [_line_trace(s, n, unit) for n, s in enumerate(series)],
        "layout": _layout(months, y_title=y_title, unit=unit, show_legend=len(series) > 1),
    }


#: Small multiples: each panel's height and the gap above the next one's title, in pixels.
PANEL_HEIGHT = 92
PANEL_GAP = 50
#: How far a panel's title starts left of its plot (within the 64 px left margin).
PANEL_TITLE_INSET = 56
#: Longer titles put their "(type)" on a second line: Plotly never wraps an annotation.
PANEL_TITLE_LINE = 34


def _panel_title(name: str) -> str:
    """The series' name (escaped), its "(type)" on a line of its own when it is long."""
    head, paren, tail = name.rpartition(" (")
    if len(name) <= PANEL_TITLE_LINE or not head:
        return plot_text(name)
    return f"{plot_text(head)}<br>{paren.strip()}{plot_text(tail)}"


def small_multiples(series: Sequence[Series], *, unit: Unit = "count") -> dict | None:
    """One small panel per series, top to bottom in the order given, each on its own y scale
    and all on one month axis: a total far larger than the others (a Production total beside
    small test instances) neither flattens them nor shares an axis with them."""
    if not _has_values(series):
        return None
    months = [p.month for s in series for p in s.points]
    count = len(series)
    plot = count * PANEL_HEIGHT + (count - 1) * PANEL_GAP
    data, titles = [], []
    layout: dict = {
        "showlegend": False,
        "hovermode": "x",
        "margin": {"t": 44, "r": RIGHT_MARGIN, "b": 64, "l": 64},  # t: a two-line title
        "height": plot + 44 + 64,
    }
    for n, s in enumerate(series):
        axis = "y" if n == 0 else f"y{n + 1}"
        top = round(1 - n * (PANEL_HEIGHT + PANEL_GAP) / plot, 6)
        bottom = round(max(top - PANEL_HEIGHT / plot, 0.0), 6)
        layout["yaxis" if n == 0 else f"yaxis{n + 1}"] = {
            **_value_axis(unit, ""),
            "domain": [bottom, top],
            "nticks": 3,
            "fixedrange": True,
        }
        data.append({**_line_trace(s, n, unit), "xaxis": "x", "yaxis": axis})
        titles.append(
            {
                "text": _panel_title(s.name),
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": top,
                "xanchor": "left",
                "yanchor": "bottom",
                "align": "left",
                # From the figure's left edge, over the tick labels: a phone's plot is narrow.
                "xshift": -PANEL_TITLE_INSET,
                "yshift": 8,  # clear of the panel's top tick label
                "showarrow": False,
                "font": {"size": 12, "color": "#1f1f2e"},
            }
        )
    layout["annotations"] = titles
    layout["xaxis"] = {**month_axis(months), "anchor": "y" if count == 1 else f"y{count}"}
    return {"data": data, "layout": layout}


def stacked_bars(series: Sequence[Series], *, y_title: str) -> dict | None:
    """Counts stacked per month (deployments by outcome, scans by scanner)."""
    shown = [s for s in series if any(p.value for p in s.points)]
    if not shown:
        return None
    data = []
    for n, s in enumerate(shown):
        data.append(
            {
                "type": "bar",
                "name": plot_text(s.name),
                "x": [p.month.isoformat() for p in s.points],
                "y": [p.value for p in s.points],
                "marker": {"color": s.color or PALETTE[n % len(PALETTE)]},
                "hovertemplate": f"%{{y:,.0f}}{_HOVER_NAME}",
            }
        )
    months = [p.month for s in shown for p in s.points]
    return {
        "data": data,
        "layout": _layout(months, y_title=y_title, unit="count", show_legend=True, barmode="stack"),
    }
