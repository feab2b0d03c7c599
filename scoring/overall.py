"""Overall health: CSM sentiment, the other groups of GitLab's scorecard, and their roll-up.

Pure functions over plain data, as ``scoring.methodology`` (which scores the product measures
and calls these): CSM sentiment, Outcomes (the success plan's ROI), Voice of the customer
(support tickets), Engagement (meeting cadence and personas), and overall health as the
weighted mean of every group with data (``docs/methodology.md`` §8). Every band, weight and
day limit comes from the :class:`~scoring.schemes.Scheme`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from .schemes import (
    GREEN,
    NA,
    OVERALL_GROUP_LABELS,
    RED,
    YELLOW,
    Color,
    Scheme,
    classify,
    describe_bands,
)
from .scorecard import MeasureResult

SENTIMENTS = frozenset({RED, YELLOW, GREEN})


def weighted_mean(
    parts: Mapping[str, float | None], weights: Mapping[str, float]
) -> tuple[float | None, dict[str, float]]:
    """Weighted mean of the parts that have a value and a positive weight.

    The weights of missing parts are spread over the others; returns the mean and the
    renormalised weights actually used (``(None, {})`` when nothing has data).
    """
    used = {k: w for k, w in weights.items() if w > 0 and parts.get(k) is not None}
    total = sum(used.values())
    if not total:
        return None, {}
    value = sum(parts[k] * w for k, w in used.items()) / total
    return value, {k: w / total for k, w in used.items()}


def score_sentiment(
    sentiment: str | None,
    sentiment_date: date | None,
    *,
    as_of: date,
    scheme: Scheme,
    csm_owned: bool = True,
) -> MeasureResult:
    """CSM sentiment as points; flagged stale after, and NA after, the scheme's day limits.

    A sentiment without a date is scored but flagged stale, since its age cannot be shown.
    Only a CSM-owned account's sentiment counts (GitLab's weekly admin rule nulls the others):
    elsewhere it is kept in the inputs, to be shown, but NA.
    """
    age = (as_of - sentiment_date).days if sentiment_date else None
    inputs: dict[str, Any] = {
        "sentiment": sentiment,
        "sentiment_date": sentiment_date.isoformat() if sentiment_date else None,
        "age_days": age,
        "stale": False,
        "thresholds": (
            f"stale after {scheme.sentiment_stale_days} days · "
            f"NA after {scheme.sentiment_na_days} days"
        ),
    }

    def result(color: Color, reason: str | None) -> MeasureResult:
        points = scheme.color_points[color] if color != NA else None
        return MeasureResult(
            "csm_sentiment", "CSM sentiment", "csm_sentiment", color, points, points, reason, inputs
        )

    if sentiment not in SENTIMENTS:
        return result(NA, "CSM sentiment not set" if not sentiment else f"unknown {sentiment!r}")
    if not csm_owned:
        return result(NA, "not a CSM-owned account")
    if age is None:
        inputs["stale"] = True
        return result(sentiment, "CSM sentiment date unknown")
    if age > scheme.sentiment_na_days:
        return result(NA, f"CSM sentiment is {age} days old (NA after {scheme.sentiment_na_days})")
    if age > scheme.sentiment_stale_days:
        inputs["stale"] = True
        return result(
            sentiment,
            f"CSM sentiment is {age} days old (stale after {scheme.sentiment_stale_days})",
        )
    return result(sentiment, None)


def _group(
    key: str, color: Color, value: float | None, reason: str | None, inputs: dict, scheme: Scheme
) -> MeasureResult:
    """A group of overall health: its points are its 0–100 value, else its colour's points."""
    if value is None and color != NA:
        value = scheme.color_points[color]
    label = OVERALL_GROUP_LABELS[key]
    return MeasureResult(key, label, key, color, value, value, reason, inputs)


def score_outcomes(roi: str | None, *, scheme: Scheme, csm_owned: bool = True) -> MeasureResult:
    """Outcomes: the success plan's ROI as its CSM judged it (Red, Yellow or Green)."""
    inputs: dict[str, Any] = {"roi": roi, "thresholds": "the CSM's judgement of the ROI"}
    if roi not in SENTIMENTS:
        return _group("outcomes", NA, None, "no success-plan ROI recorded", inputs, scheme)
    if not csm_owned:
        return _group("outcomes", NA, None, "not a CSM-owned account", inputs, scheme)
    return _group("outcomes", roi, None, None, inputs, scheme)


def score_voice(tickets: tuple[date, int] | None, *, as_of: date, scheme: Scheme) -> MeasureResult:
    """Voice of the customer: support tickets in the newest month with data (fewer is better).

    NA when no month is recorded, or when that month ended more than ``voice_na_days`` ago.
    """
    inputs: dict[str, Any] = {
        "month": tickets[0].isoformat() if tickets else None,
        "tickets": tickets[1] if tickets else None,
        "thresholds": describe_bands(scheme.voice_bands, "count")
        + f" tickets a month; NA after {scheme.voice_na_days} days without data",
    }
    if tickets is None:
        return _group("voice_of_customer", NA, None, "no support tickets recorded", inputs, scheme)
    month, count = tickets
    ended = _month_end(month)
    age = (as_of - ended).days
    if age > scheme.voice_na_days:
        reason = f"no support-ticket data for {age} days (NA after {scheme.voice_na_days})"
        return _group("voice_of_customer", NA, None, reason, inputs, scheme)
    return _group(
        "voice_of_customer", classify(count, scheme.voice_bands), None, None, inputs, scheme
    )


def score_engagement(
    meetings: Sequence[tuple[date, frozenset[str]]],
    *,
    prioritization: int | None,
    as_of: date,
    scheme: Scheme,
    csm_owned: bool = True,
) -> MeasureResult:
    """Engagement: meeting cadence and persona engagement, weighted by the scheme (50/50).

    Cadence: days since the last meeting, banded by the account's CSM prioritization (1 or 2).
    Personas: how many of ``scheme.personas`` were met within ``persona_window_days`` — all
    Green, some Yellow, none Red. Either part is NA without data; NA on accounts no CSM owns.
    """
    past = [(day, personas) for day, personas in meetings if day <= as_of]
    last = max((day for day, _ in past), default=None)
    window_start = as_of - timedelta(days=scheme.persona_window_days)
    met = sorted(set().union(*(p for day, p in past if day >= window_start)) & set(scheme.personas))
    inputs: dict[str, Any] = {
        "prioritization": prioritization,
        "last_meeting": last.isoformat() if last else None,
        "days_since_meeting": (as_of - last).days if last else None,
        "personas_met": met,
        "personas_required": list(scheme.personas),
        "weights": dict(scheme.engagement_weights),
        "thresholds": "; ".join(
            f"Prioritization {tier}: {describe_bands(b, 'count')} days since the last meeting"
            for tier, b in scheme.cadence_bands.items()
        )
        + f"; personas within {scheme.persona_window_days} days: all Green, some Yellow, none Red",
    }
    if not csm_owned:
        return _group("engagement", NA, None, "not a CSM-owned account", inputs, scheme)
    parts: dict[str, Color] = {}
    reasons = []
    cadence = scheme.cadence_bands.get(prioritization) if prioritization else None
    if last is None:
        reasons.append("no meetings recorded")
    elif cadence is None:
        reasons.append("no meeting cadence for this prioritization")
    else:
        parts["meeting_cadence"] = classify((as_of - last).days, cadence)
    if past:
        wanted = len(scheme.personas)
        parts["persona_engagement"] = GREEN if len(met) == wanted else YELLOW if met else RED
    inputs["parts"] = dict(parts)
    points = {k: scheme.color_points[c] for k, c in parts.items()}
    value, used = weighted_mean(points, scheme.engagement_weights)
    inputs["weights_used"] = used
    if value is None:
        return _group(
            "engagement", NA, None, "; ".join(reasons) or "no meetings recorded", inputs, scheme
        )
    color = classify(value, scheme.score_bands)
    return _group("engagement", color, value, "; ".join(reasons) or None, inputs, scheme)


def _month_end(month: date) -> date:
    following = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return following - timedelta(days=1)


def overall_health(
    product_usage: MeasureResult,
    sentiment: MeasureResult,
    groups: Mapping[str, MeasureResult],
    scheme: Scheme,
) -> MeasureResult:
    # Groups without data (NA) are left out and the others' weights scaled up.
    group_points = {"product_usage": product_usage.value, "csm_sentiment": sentiment.points}
    group_points |= {key: result.points for key, result in groups.items()}
    value, weights_used = weighted_mean(group_points, scheme.overall_weights)
    forced = sentiment.color == RED
    if value is None:
        color: Color = NA
        reason: str | None = "no product usage or CSM sentiment data"
    elif forced:
        color, reason = RED, "Red CSM sentiment forces Red overall"
    else:
        color, reason = classify(value, scheme.score_bands), None
    inputs = {
        "group_points": group_points,
        "weights": dict(scheme.overall_weights),
        "weights_used": weights_used,
        "forced_red_by_sentiment": forced,
        "thresholds": scheme.score_thresholds,
    }
    return MeasureResult(
        "overall_health", "Overall health", "overall_health", color, value, value, reason, inputs
    )
