"""Figures, their targets, ``bench/results.json`` and the table printed at the end of a run.

Every figure is ``{"value", "unit", "target", "holds"}``: ``target`` is a string such as
``"<= 50"`` (or null for a figure measured for context only, whose ``holds`` is then null too),
``holds`` whether the value meets it. A figure that could not be measured (a page not built yet,
a command missing) has a null value, a ``note`` saying why, and ``holds: false`` when it has a
target.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
#: Figure name -> (unit, target): what a measurement reports, measured or not.
Targets = dict[str, tuple[str, str | None]]


@dataclass
class Figure:
    value: float | int | str | None
    unit: str
    target: str | None = None  # "<= 50", ">= 500", ...
    note: str = ""

    @property
    def holds(self) -> bool | None:
        if self.target is None:
            return None
        if not isinstance(self.value, int | float) or isinstance(self.value, bool):
            return False
        if isinstance(self.value, float) and math.isnan(self.value):
            return False
        op, _, bound = self.target.partition(" ")
        return _OPS[op](self.value, float(bound))

    def as_dict(self) -> dict:
        out = {"value": _round(self.value), "unit": self.unit, "target": self.target}
        out["holds"] = self.holds
        if self.note:
            out["note"] = self.note
        return out


def _round(value):
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return round(value, 3 if abs(value) < 100 else 1)
    return value


@dataclass
class Results:
    """Figures grouped by area, then by subject (a page, a command), then by name."""

    meta: dict = field(default_factory=dict)
    areas: dict[str, dict[str, dict[str, Figure]]] = field(default_factory=dict)

    def add(self, area: str, subject: str, name: str, figure: Figure) -> Figure:
        self.areas.setdefault(area, {}).setdefault(subject, {})[name] = figure
        return figure

    def measured(self, area: str, subject: str, names: Targets, values: dict[str, float | None]):
        """Record ``values`` by name, each with its unit and target from ``names``."""
        for name, value in values.items():
            unit, target = names[name]
            self.add(area, subject, name, Figure(value, unit, target))

    def missing(self, area: str, subject: str, names: Targets, why: str):
        """Record figures that could not be measured (``names``: name -> (unit, target))."""
        for name, (unit, target) in names.items():
            self.add(area, subject, name, Figure(None, unit, target, note=why))

    def figures(self):
        for area, subjects in self.areas.items():
            for subject, figures in subjects.items():
                for name, figure in figures.items():
                    yield area, subject, name, figure

    def summary(self) -> dict:
        verdicts = [f.holds for *_, f in self.figures() if f.holds is not None]
        return {"targets": len(verdicts), "hold": sum(verdicts), "fail": verdicts.count(False)}

    def as_dict(self) -> dict:
        return {
            "meta": self.meta,
            "summary": self.summary(),
            "areas": {
                area: {
                    subject: {name: fig.as_dict() for name, fig in figures.items()}
                    for subject, figures in subjects.items()
                }
                for area, subjects in self.areas.items()
            },
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")

    def table(self) -> str:
        """A plain-text table: one line per figure, grouped under area and subject headings."""
        lines = []
        header = f"{'figure':<44} {'value':>12} {'unit':<10} {'target':<10} holds"
        for area, subjects in self.areas.items():
            lines += ["", f"== {area} ".ljust(len(header) + 6, "="), header]
            for subject, figures in subjects.items():
                lines.append(f"  {subject}")
                for name, fig in figures.items():
                    verdict = {True: "yes", False: "NO", None: "-"}[fig.holds]
                    value = _fmt(fig.value)
                    line = (
                        f"    {name:<40} {value:>12} {fig.unit:<10} {fig.target or '-':<10} "
                        f"{verdict}"
                    )
                    if fig.note:
                        line += f"  ({fig.note})"
                    lines.append(line)
        s = self.summary()
        lines += ["", f"{s['hold']} of {s['targets']} targets hold, {s['fail']} do not."]
        return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
