"""The C360 charts' series, from an account's monthly history (``selectors.monthly_history``).

Per month, what the scoring engine scored: its values, colours and NA reasons where it has a
measure for the figure, else the stored totals over the instances it scored (summed by
``methodology.sum_or_none``, the engine's NULL rule). Threshold bands come from the scheme.
NOT Production series are each instance's own monthly usage. ``charts`` draws them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from instances.models import Instance
from scoring.methodology import sum_or_none
from scoring.schemes import METRICS, Band, MeasureSpec, Scheme
from usage_portal.web.c360.catalogue import RatioReport, matching_measure
from usage_portal.web.c360.charts import BandRange, Point, Series
from usage_portal.web.c360.selectors import MonthlyHistory
from usage_portal.web.c360.viewmodels import TYPE_LABELS, measure_spec, metric_ref


def _label(metric: str) -> str:
    return metric_ref(metric).label


def _reason_name(metric: str) -> str:
    # How the engine names a metric in its NA reasons, so a computed month reads as a scored one.
    return METRICS[metric].label


def band_ranges(band_list: Sequence[Band]) -> tuple[BandRange, ...]:
    out, lower = [], None
    for band in band_list:
        out.append(BandRange(lower, band.upper, band.color))
        lower = band.upper
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RatioRow:
    month: date
    numerator: float | None
    denominator: float | None
    value: float | None
    color: str | None
    reason: str | None


def ratio_rows(history: MonthlyHistory, report: RatioReport) -> tuple[MeasureSpec | None, list]:
    """Per month, the ratio over the instances the engine scored.

    When the scheme has a measure for this ratio, the engine's monthly value, colour and NA
    reason are used as they are; otherwise the sums over the same instances are divided here.
    """
    spec = matching_measure(history.scheme, report)
    rows = []
    for month in history.months:
        measure = history.card(month).get("measures", {}).get(spec.key) if spec else None
        if measure is not None:
            inputs = measure.get("inputs", {})
            rows.append(
                RatioRow(
                    month,
                    inputs.get("numerator"),
                    inputs.get("denominator"),
                    measure.get("value"),
                    measure.get("color"),
                    measure.get("reason"),
                )
            )
            continue
        totals = history.totals(month, report.numerator + report.denominator)
        num = sum_or_none(totals[m] for m in report.numerator)
        den = sum_or_none(totals[m] for m in report.denominator)
        reason = None
        if not history.included(month):
            reason = history.card(month).get("product_usage", {}).get("reason") or (
                "no Production instance"
            )
        elif num is None or den is None:
            missing = next(m for m in report.numerator + report.denominator if totals[m] is None)
            reason = f"{_reason_name(missing)} not reported"
        elif not den:
            reason = f"no {_reason_name(report.denominator[0])}"
        value = num / den if reason is None else None
        rows.append(RatioRow(month, num, den, value, None, reason))
    return spec, rows


def metric_series(
    history: MonthlyHistory, metrics: Sequence[str], *, colors: Mapping[str, str] | None = None
) -> list[Series]:
    """One series per metric: its monthly total over the instances the engine scored."""
    totals = {m: history.totals(m, metrics) for m in history.months}
    colors = colors or {}
    return [
        Series(
            _label(metric),
            [Point(month, totals[month][metric]) for month in history.months],
            color=colors.get(metric),
        )
        for metric in metrics
    ]


def use_case_points(history: MonthlyHistory, use_case: str) -> list[Point]:
    """The engine's monthly use-case score (0–100 points) with its colour."""
    points = []
    for month in history.months:
        result = history.card(month).get("use_cases", {}).get(use_case, {})
        points.append(Point(month, result.get("value"), result.get("color")))
    return points


def license_points(history: MonthlyHistory) -> list[Point]:
    return [
        Point(
            month,
            history.scores[month]["license_utilization"],
            history.scores[month]["license_utilization_color"] or None,
        )
        for month in history.months
    ]


def lu_bands(history: MonthlyHistory) -> tuple[tuple[BandRange, ...], str]:
    """The License Utilization bands for the account age of the newest month, and their text."""
    spec = measure_spec(history.scheme, "license_utilization")
    if spec is None or not history.months:
        return (), ""
    inputs = history.card(history.months[-1]).get("measures", {}).get("license_utilization", {})
    age = inputs.get("inputs", {}).get("account_age_months")
    columns = [c for c in spec.age_bands if age is not None and age >= c.min_age_months]
    if not columns:
        return (), ""
    column = columns[-1]
    return band_ranges(column.bands), f"{column.age_text}: {column.thresholds}"


def score_bands(scheme: Scheme | None) -> tuple[BandRange, ...]:
    return band_ranges(scheme.score_bands) if scheme else ()


# --------------------------------------------------------------------------------------------------
# NOT Production Instance Usage


def instance_series(
    history: MonthlyHistory, instance_id: int, metrics: Sequence[str]
) -> tuple[list[date], list[Series]]:
    """One instance's monthly values (its own months, not only scored months)."""
    months = sorted(m for (i, m) in history.usage if i == instance_id)
    return months, [
        Series(
            _label(metric),
            [Point(m, history.usage[(instance_id, m)].get(metric)) for m in months],
        )
        for metric in metrics
    ]


def latest_usage(history: MonthlyHistory) -> dict[int, dict]:
    """Each instance's newest month of usage in ``history``."""
    latest: dict[int, tuple[date, dict]] = {}
    for (instance_id, month), row in history.usage.items():
        seen = latest.get(instance_id)
        if seen is None or month > seen[0]:
            latest[instance_id] = (month, row)
    return {instance_id: row for instance_id, (_, row) in latest.items()}


def billable_by_instance(
    history: MonthlyHistory, instances: Sequence[Instance]
) -> tuple[list[date], list[Series]]:
    """Billable users per month: the Production total the engine used, then each instance."""
    months = sorted({m for (_, m) in history.usage} | set(history.months))
    production = Series(
        "Production (health measures)",
        [
            Point(m, history.scores[m]["billable_users"] if m in history.scores else None)
            for m in months
        ],
        color="#1f1f2e",
    )
    # Each instance's months, once: 81 instances × 24 months of lookups in the whole usage.
    own: dict[int, dict[date, object]] = defaultdict(dict)
    for (instance_id, month), row in history.usage.items():
        own[instance_id][month] = row.get("billable_users")
    series = []
    for i in instances:
        values = own.get(i.pk, {})
        series.append(
            Series(
                f"{i} ({TYPE_LABELS.get(i.instance_type, i.instance_type)})",
                [Point(m, values.get(m)) for m in months],
            )
        )
    return months, [production, *series]
