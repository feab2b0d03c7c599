"""Plotly figures for the Account C360 pages, as plain dicts.

Pure functions: plain rows in, ``{"data": [...], "layout": {...}}`` out, or ``None`` when there is
nothing to draw (the chart partial then explains why). Plain dicts rather than
``plotly.graph_objects`` skip Plotly's per-object validation; ``static/js/charts.js`` draws them.
Colours match the Red/Yellow/Green pills; other series use a palette without those hues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Point:
    """One month's value; ``color`` is the health colour the scoring engine gave it, if any."""

    month: date
    value: float | None
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[Point]
    color: str | None = None
    dash: bool = False
    #: Drawn against a second y-axis on the right (a total far larger than the other series).
    right_axis: bool = False


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


def _scale(unit: Unit) -> float:
    return 100.0 if unit == "fraction" else 1.0


def _hover_format(unit: Unit) -> str:
    return {"fraction": ".1f", "ratio": ".2f", "count": ",.0f", "points": ".1f"}[unit]


def _iso(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.isoformat()


def month_axis(months: Sequence[date]) -> dict:
    """A date x-axis with one tick per month (every third month beyond a year)."""
    return {
        "type": "date",
        "title": {"text": "Month (last ping of each calendar month)"},
        "tickformat": "%b %Y",
        "dtick": "M1" if len(set(months)) <= 12 else "M3",
        "hoverformat": "%b %Y",
        "showgrid": False,
        "automargin": True,
    }


def _marker_layout(markers: Sequence[Marker], months: Sequence[date]) -> tuple[list, list]:
    """Dotted vertical lines with a label, for markers inside the charted months."""
    if not months:
        return [], []
    first, last = min(months), max(months)
    end = date(last.year + (last.month == 12), last.month % 12 + 1, 1)
    shapes, notes = [], []
    for marker in markers:
        day = marker.at.date() if isinstance(marker.at, datetime) else marker.at
        if not first <= day < end:
            continue
        x = _iso(marker.at)
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
                "xanchor": "left",
                "text": marker.text,
                "showarrow": False,
                "font": {"size": 10, "color": MARKER_COLOR},
            }
        )
    return shapes, notes


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
    markers: Sequence[Marker],
    show_legend: bool,
    extra_shapes: Sequence[dict] = (),
    y_range: tuple[float, float] | None = None,
    barmode: str | None = None,
) -> dict:
    marker_shapes, notes = _marker_layout(markers, months)
    yaxis: dict = {
        "title": {"text": y_title},
        "automargin": True,
        "rangemode": "tozero",
        "zeroline": True,
        "zerolinecolor": "#dcdce6",
        "gridcolor": "#ececf2",
        "tickformat": {"fraction": ".0f", "points": ".0f"}.get(unit, ",~r"),
    }
    if unit == "fraction":
        yaxis["ticksuffix"] = "%"
    if y_range:
        yaxis["range"] = list(y_range)
    layout: dict = {
        "xaxis": month_axis(months),
        "yaxis": yaxis,
        "shapes": [*extra_shapes, *marker_shapes],
        "annotations": notes,
        "showlegend": show_legend,
        # Above the plot: below it, month ticks (rotated on phones) would run into it.
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        "margin": {"t": 28, "r": 16, "b": 64, "l": 64},
        "height": 400 if show_legend else 340,
    }
    if barmode:
        layout["barmode"] = barmode
    return layout


def scored_line(
    points: Sequence[Point],
    *,
    name: str,
    unit: Unit,
    y_title: str,
    bands: Sequence[BandRange] = (),
    markers: Sequence[Marker] = (),
) -> dict | None:
    """One measure over months: markers coloured Red/Yellow/Green, threshold bands shaded."""
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
        "name": name,
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
        "hovertemplate": (
            f"%{{y:{_hover_format(unit)}}}{suffix} %{{customdata}}<extra>{name}</extra>"
        ),
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


def lines(
    series: Sequence[Series],
    *,
    y_title: str,
    unit: Unit = "count",
    markers: Sequence[Marker] = (),
    right_title: str = "",
) -> dict | None:
    """Several series over months (users, builds, …), one line each; ``right_axis`` series
    against a second axis titled ``right_title``."""
    if not any(p.value is not None for s in series for p in s.points):
        return None
    scale = _scale(unit)
    suffix = "%" if unit == "fraction" else ""
    data = []
    for n, s in enumerate(series):
        color = s.color or PALETTE[n % len(PALETTE)]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": s.name,
                "x": [p.month.isoformat() for p in s.points],
                "y": [None if p.value is None else p.value * scale for p in s.points],
                "line": {"color": color, "width": 2, "dash": "dash" if s.dash else "solid"},
                "marker": {"size": 6, "color": color},
                "connectgaps": False,
                "hovertemplate": f"%{{y:{_hover_format(unit)}}}{suffix}<extra>{s.name}</extra>",
                **({"yaxis": "y2"} if s.right_axis else {}),
            }
        )
    months = [p.month for s in series for p in s.points]
    layout = _layout(
        months, y_title=y_title, unit=unit, markers=markers, show_legend=len(series) > 1
    )
    if any(s.right_axis for s in series):
        layout["yaxis2"] = {
            **layout["yaxis"],
            "title": {"text": right_title},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
        }
        layout["margin"] = {**layout["margin"], "r": 64}
    return {"data": data, "layout": layout}


def stacked_bars(
    series: Sequence[Series], *, y_title: str, markers: Sequence[Marker] = ()
) -> dict | None:
    """Counts stacked per month (deployments by outcome, scans by scanner)."""
    shown = [s for s in series if any(p.value for p in s.points)]
    if not shown:
        return None
    data = []
    for n, s in enumerate(shown):
        data.append(
            {
                "type": "bar",
                "name": s.name,
                "x": [p.month.isoformat() for p in s.points],
                "y": [p.value for p in s.points],
                "marker": {"color": s.color or PALETTE[n % len(PALETTE)]},
                "hovertemplate": f"%{{y:,.0f}}<extra>{s.name}</extra>",
            }
        )
    months = [p.month for s in shown for p in s.points]
    return {
        "data": data,
        "layout": _layout(
            months,
            y_title=y_title,
            unit="count",
            markers=markers,
            show_legend=True,
            barmode="stack",
        ),
    }
