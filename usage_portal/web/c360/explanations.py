"""The Scorecard page's explanation of a score: every measure with what it was computed from.

From the engine's stored scorecard alone (``ScoreSnapshot.detail``): each measure's value,
colour, numerator and denominator with their metrics, thresholds, the instances and pings used,
and each roll-up's weights. Nothing is recomputed; ``templates/accounts/_explanation.html``
writes it out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from instances.models import Instance
from scoring.methodology import account_age, account_age_months
from scoring.schemes import OVERALL_GROUP_LABELS, USE_CASE_LABELS, Scheme
from scoring.scorecard import MeasureResult, Scorecard
from usage_portal.web.c360.selectors import scheme_for
from usage_portal.web.c360.viewmodels import (
    KIND_LABELS,
    TYPE_LABELS,
    MetricRef,
    format_number,
    format_value,
    measure_unit,
    metric_ref,
    score_anchor,
    sentence,
)


@dataclass(frozen=True, slots=True)
class InstanceRef:
    id: int
    name: str
    type_label: str
    kind_label: str


@dataclass(frozen=True, slots=True)
class PingRef:
    id: int
    instance_name: str
    recorded_at: datetime | None
    version: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """One measure or roll-up, with everything needed to recompute it by hand."""

    key: str
    anchor: str
    label: str
    color: str
    value_text: str
    points: float | None
    reason: str | None
    thresholds: str
    numerator_text: str = ""
    denominator_text: str = ""
    numerator_metrics: tuple[MetricRef, ...] = ()
    denominator_metrics: tuple[MetricRef, ...] = ()
    instances: tuple[InstanceRef, ...] = ()
    pings: tuple[PingRef, ...] = ()
    account_age_months: int | None = None
    parts: tuple[tuple[str, str], ...] = ()  # roll-ups: (what, value) lines
    notes: tuple[str, ...] = ()  # how the engine read its inputs, where that is not obvious


@dataclass(frozen=True, slots=True)
class UseCaseExplanation:
    key: str
    label: str
    rollup: Explanation | None
    measures: tuple[Explanation, ...]


def instance_ref(instance: Instance) -> InstanceRef:
    return InstanceRef(
        instance.pk,
        str(instance),
        TYPE_LABELS.get(instance.instance_type, instance.instance_type),
        KIND_LABELS.get(instance.kind, instance.kind),
    )


def _explain_measure(
    result: MeasureResult,
    scheme: Scheme | None,
    instances: Mapping[int, InstanceRef],
    pings: Mapping[int, dict],
) -> Explanation:
    inputs = result.inputs
    unit = measure_unit(result.key, scheme, inputs)
    used_instances = tuple(instances[i] for i in inputs.get("instance_ids", ()) if i in instances)
    used_pings = []
    for ping_id in inputs.get("ping_ids", ()):
        ping = pings.get(ping_id)
        if ping is None:
            continue
        owner = instances.get(ping["instance_id"])
        used_pings.append(
            PingRef(
                ping_id, owner.name if owner else "—", ping["recorded_at"], ping["version"] or "—"
            )
        )
    return Explanation(
        key=result.key,
        anchor=score_anchor(result.key),
        label=result.label,
        color=result.color,
        value_text=format_value(result.value, unit),
        points=result.points,
        reason=sentence(result.reason),
        thresholds=str(inputs.get("thresholds", "")),
        numerator_text=format_number(inputs.get("numerator")),
        denominator_text=format_number(inputs.get("denominator")),
        numerator_metrics=tuple(metric_ref(m) for m in inputs.get("numerator_metrics", ())),
        denominator_metrics=tuple(metric_ref(m) for m in inputs.get("denominator_metrics", ())),
        instances=used_instances,
        pings=tuple(used_pings),
        account_age_months=inputs.get("account_age_months"),
        notes=_notes(inputs),
    )


def _notes(inputs: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    if plans := inputs.get("plan_only"):
        names = " or ".join(p.title() for p in plans)
        notes.append(f"Computed over the {names} instances only; the others do not dilute it.")
    if unknown := inputs.get("unknown_metrics"):
        names = ", ".join(metric_ref(m).label for m in unknown)
        notes.append(f"Unknown, so counted as not in use: {names}.")
    return tuple(notes)


def _group_parts(result: MeasureResult) -> list[tuple[str, str]]:
    """What an overall-health group was computed from, in words."""
    inputs = result.inputs
    if result.key == "outcomes":
        return [("Success-plan ROI", inputs.get("roi") or "not recorded")]
    if result.key == "voice_of_customer":
        month = inputs.get("month")
        tickets = inputs.get("tickets")
        return [("Newest month", month[:7] if month else "—"), ("Tickets", _count_text(tickets))]
    parts_colors = inputs.get("parts", {})
    days = inputs.get("days_since_meeting")
    met = inputs.get("personas_met", [])
    return [
        ("CSM prioritization", str(inputs.get("prioritization") or "not set")),
        ("Last meeting", inputs.get("last_meeting") or "none recorded"),
        ("Days since", _count_text(days)),
        ("Meeting cadence", parts_colors.get("meeting_cadence", "NA")),
        ("Personas met", ", ".join(met) if met else "none"),
        ("Persona engagement", parts_colors.get("persona_engagement", "NA")),
    ]


def _count_text(value) -> str:
    return "—" if value is None else f"{value:,}"


def _points_text(value: float | None) -> str:
    return "NA" if value is None else f"{round(value, 1):g} pts"


def _explain_rollup(result: MeasureResult, parts: Sequence[tuple[str, str]]) -> Explanation:
    return Explanation(
        key=result.key,
        anchor=score_anchor(result.key),
        label=result.label,
        color=result.color,
        value_text=format_value(result.value, "points"),
        points=result.points,
        reason=sentence(result.reason),
        thresholds=str(result.inputs.get("thresholds", "")),
        parts=tuple(parts),
    )


def _weights_parts(inputs: Mapping[str, Any], points_key: str, labels: Mapping[str, str]) -> list:
    used = inputs.get("weights_used", {})
    parts = []
    for key, weight in inputs.get("weights", {}).items():
        if not weight:
            continue
        points = inputs.get(points_key, {}).get(key)
        share = used.get(key)
        effective = f"{share * 100:.1f}% after spreading NA weights" if share else "left out (NA)"
        parts.append(
            (labels.get(key, key), f"{_points_text(points)} · weight {weight:g} → {effective}")
        )
    return parts


@dataclass(frozen=True, slots=True)
class ScorecardExplanation:
    scheme: str
    as_of: date | None
    computed_for: date
    account_age_months: int | None
    overall: Explanation
    product_usage: Explanation
    sentiment: Explanation
    use_cases: tuple[UseCaseExplanation, ...]
    warnings: tuple[str, ...]
    included: tuple[InstanceRef, ...]
    stale: tuple[InstanceRef, ...]
    pings: tuple[PingRef, ...]
    groups: tuple[Explanation, ...] = ()  # outcomes, voice of the customer, engagement


def explain_scorecard(
    card: Scorecard,
    *,
    customer_since: date | None,
    instances: Sequence[Instance],
    pings: Mapping[int, dict],
) -> ScorecardExplanation:
    scheme = scheme_for(card.scheme)
    refs = {i.pk: instance_ref(i) for i in instances}
    by_use_case: dict[str, list[Explanation]] = defaultdict(list)
    for result in card.measures.values():
        by_use_case[result.use_case].append(_explain_measure(result, scheme, refs, pings))
    use_cases = []
    for key, label in USE_CASE_LABELS.items():
        rollup = card.use_cases.get(key)
        rollup_expl = None
        if rollup is not None:
            parts = [
                (card.measures[k].label if k in card.measures else k, _points_text(p))
                for k, p in rollup.inputs.get("measure_points", {}).items()
            ]
            rollup_expl = _explain_rollup(rollup, parts)
        use_cases.append(UseCaseExplanation(key, label, rollup_expl, tuple(by_use_case[key])))

    product = card.product_usage
    overall = card.overall_health
    overall_parts = _weights_parts(overall.inputs, "group_points", OVERALL_GROUP_LABELS)
    if overall.inputs.get("forced_red_by_sentiment"):
        overall_parts.append(("Override", "Red CSM sentiment forces Red overall"))
    sentiment = card.csm_sentiment
    sentiment_parts = [
        ("Sentiment", sentiment.inputs.get("sentiment") or "not set"),
        ("Set on", sentiment.inputs.get("sentiment_date") or "—"),
        (
            "Age",
            f"{sentiment.inputs['age_days']} days"
            if sentiment.inputs.get("age_days") is not None
            else "—",
        ),
    ]
    all_pings = []
    for ping_id in card.ping_ids:
        ping = pings.get(ping_id)
        if ping:
            owner = refs.get(ping["instance_id"])
            all_pings.append(
                PingRef(
                    ping_id,
                    owner.name if owner else "—",
                    ping["recorded_at"],
                    ping["version"] or "—",
                )
            )
    return ScorecardExplanation(
        scheme=card.scheme,
        as_of=card.as_of,
        computed_for=card.computed_for,
        account_age_months=(
            account_age(customer_since, card.computed_for, scheme)
            if scheme
            else account_age_months(customer_since, card.computed_for)
        ),
        overall=_explain_rollup(overall, overall_parts),
        product_usage=_explain_rollup(
            product, _weights_parts(product.inputs, "component_points", USE_CASE_LABELS)
        ),
        sentiment=_explain_rollup(sentiment, sentiment_parts),
        use_cases=tuple(use_cases),
        groups=tuple(_explain_rollup(g, _group_parts(g)) for g in card.groups.values()),
        warnings=tuple(sentence(w) for w in card.warnings),
        included=tuple(refs[i] for i in card.instance_ids if i in refs),
        stale=tuple(refs[i] for i in card.stale_instance_ids if i in refs),
        pings=tuple(all_pings),
    )
