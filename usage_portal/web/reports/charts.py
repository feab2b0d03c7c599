"""Plotly figures of the instance reports, as plain dicts (no ORM, no plotly objects).

``partials/chart.html`` embeds a figure as JSON and ``static/js/charts.js`` draws it with the
plotly.js the app serves itself. A figure without data renders the partial's empty state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from instances.versions import Release, release_label

#: Instance types in stacking order, with the portal's colours (purple = the app's accent).
TYPE_COLORS: Mapping[str, tuple[str, str]] = {
    "production": ("Production", "#6b4fbb"),
    "non_production": ("Non-Production", "#a58cf0"),
    "unknown": ("Unknown", "#e0a800"),
    "geo_secondary": ("Geo Secondary Node", "#1565c0"),
    "obsolete": ("Obsolete", "#9e9eb0"),
}


def versions_chart(
    counts: Iterable[Mapping], *, threshold: Release | None = None, older_than: int | None = None
) -> dict | None:
    """Self-managed instances per GitLab release (major.minor), stacked by instance type.

    ``counts`` are ``{"release": major*1000 + minor, "instance_type": …, "n": …}`` rows. With
    ``threshold`` (the oldest release kept by an "older than N releases" filter) a dashed line
    marks where "older than N" begins. Returns ``None`` when there is nothing to draw.
    """
    by_type: dict[str, dict[int, int]] = {}
    releases: set[int] = set()
    for row in counts:
        by_type.setdefault(row["instance_type"], {})[row["release"]] = row["n"]
        releases.add(row["release"])
    if not releases:
        return None
    ordered = sorted(releases)
    labels = [release_label(divmod(r, 1000)) for r in ordered]
    data = []
    for key, (name, color) in TYPE_COLORS.items():
        per_release = by_type.get(key)
        if not per_release:
            continue
        data.append(
            {
                "type": "bar",
                "name": name,
                "x": labels,
                "y": [per_release.get(r, 0) for r in ordered],
                "marker": {"color": color},
                "hovertemplate": "GitLab %{x}: %{y} " + name + " instance(s)<extra></extra>",
            }
        )
    tallest = max(sum(per.get(r, 0) for per in by_type.values()) for r in ordered)
    layout: dict = {
        "barmode": "stack",
        "hovermode": "closest",
        "xaxis": {
            "title": {"text": "GitLab version (major.minor)"},
            "automargin": True,
            "type": "category",
            "categoryorder": "array",
            "categoryarray": labels,
        },
        "yaxis": {
            "title": {"text": "Instances (count)"},
            "automargin": True,
            "rangemode": "tozero",
            "tickformat": ",d",
            # Whole instances: below ten, one tick per instance (no repeated rounded labels).
            **({"dtick": 1} if tallest <= 10 else {}),
        },
        # Above the plot: below it, a wrapped legend would cover the axis title on a phone.
        "legend": {
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": 1.02,
            "yanchor": "bottom",
            "traceorder": "normal",
        },
        "margin": {"t": 10, "r": 10, "b": 10, "l": 10},
    }
    if threshold is not None:
        # Bars left of the line are the releases the filter keeps: older than N.
        cut = threshold[0] * 1000 + threshold[1]
        position = sum(1 for r in ordered if r < cut) - 0.5
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": position,
                "x1": position,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#c62828", "dash": "dash", "width": 2},
            }
        ]
        layout["annotations"] = [
            {
                "xref": "x",
                "yref": "paper",
                "x": position,
                "y": 0.98,
                "xanchor": "right",
                "yanchor": "top",
                "showarrow": False,
                "text": f"← older than {older_than} releases",
                "font": {"color": "#c62828"},
                "bgcolor": "rgba(255,255,255,0.85)",
            }
        ]
    return {"data": data, "layout": layout}
