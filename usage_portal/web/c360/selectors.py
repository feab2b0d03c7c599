"""Reads for the Account C360 pages.

Each page loads what it needs in a fixed number of queries, whatever the account's size: the
company, its snapshots, subscriptions, instances, label changes and monthly rows are one query
each. Below the queries everything is pure shaping of rows into what the templates show.

Scores are never recomputed here. Values, colours, NA reasons and which instances counted come
from the scoring engine's own output (``ScoreSnapshot.detail`` for the current score,
``MonthlyScore.detail`` per month); ``select_instances`` is only asked which instance *would*
count, by the same rule.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db.models import Count, F
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Company, SubscriptionStatus
from accounts.permissions import can_edit
from instances.metrics import METRIC_NAMES, METRICS_BY_NAME, SCAN_METRICS
from instances.models import (
    HealthInclusion,
    Instance,
    InstanceKind,
    InstanceType,
    LabelChange,
    LabelField,
    MonthlyUsage,
    UsagePing,
)
from scoring.methodology import (
    InstanceCandidate,
    MeasureResult,
    Scorecard,
    account_age_months,
    select_instances,
)
from scoring.models import MonthlyScore, SchemeChange, ScoreSnapshot
from scoring.schemes import (
    LICENSED_SEATS,
    OVERALL_GROUP_LABELS,
    PRESETS,
    USE_CASE_LABELS,
    Band,
    MeasureSpec,
    Scheme,
    get_scheme,
)
from usage_portal.web.c360.charts import BandRange, Marker, Point, Series

#: Trends and adoption charts show this many calendar months, ending with the current one.
MONTHS_SHOWN = 24
COLOR_RANK = {"Red": 0, "Yellow": 1, "Green": 2}
TYPE_ORDER = {value: n for n, value in enumerate(InstanceType.values)}
TYPE_LABELS = dict(InstanceType.choices)
KIND_LABELS = dict(InstanceKind.choices)
INCLUSION_LABELS = dict(HealthInclusion.choices)


# ==================================================================================================
# Queries (one each)


def company_get(pk: int) -> Company:
    """The account with its CSM and sentiment author, or 404."""
    return get_object_or_404(Company.objects.select_related("csm", "sentiment_by"), pk=pk)


def company_is_editable(company: Company, user) -> bool:
    """Whether ``user`` may label instances and set sentiment here (``editable_by``'s rule)."""
    return can_edit(user, company)


def snapshots_recent(company: Company) -> tuple[ScoreSnapshot | None, ScoreSnapshot | None]:
    """The current score snapshot and the one before it (for trends)."""
    rows = list(
        ScoreSnapshot.objects.filter(company=company).order_by("-is_current", "-computed_at")[:2]
    )
    current = rows[0] if rows and rows[0].is_current else None
    previous = rows[1] if current is not None and len(rows) > 1 else None
    return current, previous


def subscriptions_list(company: Company) -> list:
    subs = list(company.subscriptions.all())
    subs.sort(key=lambda s: (s.status != SubscriptionStatus.ACTIVE, s.name))
    return subs


def instances_list(company: Company) -> list[Instance]:
    """Every instance and namespace of the account: Production first, then by name.

    Subscriptions are prefetched (a second query), not joined: an account has a few, and
    building one per instance row cost three times the instances themselves.
    """
    rows = list(Instance.objects.filter(company=company).prefetch_related("subscription"))
    rows.sort(key=lambda i: (TYPE_ORDER.get(i.instance_type, 99), str(i).lower(), i.pk))
    return rows


def instance_type_counts(company: Company) -> dict[str, int]:
    rows = Instance.objects.filter(company=company).values("instance_type")
    return {r["instance_type"]: r["n"] for r in rows.annotate(n=Count("id")).order_by()}


def label_changes_pending(
    company: Company,
    *,
    instance: Instance | None = None,
    instances: Mapping[int, Instance] | None = None,
) -> list:
    """Pending label changes on the account (or one instance), soonest first.

    ``instances`` (the account's, by id) are attached instead of joined when the page has them.
    """
    changes = LabelChange.objects.pending().filter(instance__company=company)
    if instance is not None:
        changes = changes.filter(instance=instance)
    return _with_instances(changes.order_by("effective_at", "id"), instances)


def label_changes_recent(
    company: Company,
    *,
    instance: Instance | None = None,
    instances: Mapping[int, Instance] | None = None,
    limit: int = 40,
) -> list:
    """The audit trail: the latest label changes on the account (or one instance)."""
    changes = LabelChange.objects.filter(instance__company=company)
    if instance is not None:
        changes = changes.filter(instance=instance)
    changes = changes.select_related("applied_by").order_by("-requested_at")[:limit]
    return _with_instances(changes, instances)


def _with_instances(changes, instances: Mapping[int, Instance] | None) -> list:
    if instances is None:
        return list(changes.select_related("instance"))
    rows = list(changes)
    for change in rows:
        change.instance = instances[change.instance_id]
    return rows


def scheme_markers() -> list[Marker]:
    """Where the scoring scheme changed, as chart markers."""
    return [
        Marker(at=at, text=f"scheme → {to}")
        for at, to in SchemeChange.objects.order_by("changed_at").values_list(
            "changed_at", "to_scheme"
        )
    ]


def pings_by_id(ids: Iterable[int]) -> dict[int, dict]:
    """Date and version of the pings a score used (never the raw payload)."""
    ids = {i for i in ids if i}
    if not ids:
        return {}
    rows = UsagePing.objects.filter(id__in=ids).values(
        "id", "instance_id", "recorded_at", "version"
    )
    return {r["id"]: r for r in rows}


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class MonthlyHistory:
    """An account's monthly scorecards over ``months``, and the per-instance usage asked for.

    ``scores`` maps a month to its ``MonthlyScore`` row: ``detail`` is the engine's scorecard for
    that month, ``totals`` each metric summed over the instances it scored. ``usage`` maps
    ``(instance_id, month)`` to that instance's last ping of the month, for the instances and
    metrics ``monthly_history`` was asked for (and for any month scored before totals were
    stored, which is summed from it).
    """

    months: tuple[date, ...]
    scores: Mapping[date, dict]
    usage: Mapping[tuple[int, date], dict]
    as_of: date | None
    scheme: Scheme | None

    def card(self, month: date) -> dict:
        return self.scores[month]["detail"]

    def included(self, month: date) -> tuple[int, ...]:
        """The instances the engine scored that month (applied Production, not Opt-Out)."""
        return tuple(self.card(month).get("instance_ids", ()))

    def totals(self, month: date, metrics: Sequence[str]) -> dict[str, float | None]:
        """Each metric summed over that month's included instances; NULL anywhere → None."""
        stored = self.scores[month].get("totals")
        if stored is not None and all(m in stored for m in metrics):
            return {m: stored[m] for m in metrics}
        rows = [self.usage.get((i, month)) for i in self.included(month)]
        rows = [r for r in rows if r is not None]
        out: dict[str, float | None] = {}
        for metric in metrics:
            values = [r.get(metric) for r in rows]
            out[metric] = None if not rows or None in values else sum(values)
        return out


def monthly_history(
    company: Company,
    *,
    today: date | None = None,
    card_paths: Sequence[str] | None = None,
    usage_of: Iterable[int] | None = None,
    fields: Sequence[str] = METRIC_NAMES,
) -> MonthlyHistory:
    """The last ``MONTHS_SHOWN`` monthly scorecards, in one query.

    ``card_paths`` (dotted, e.g. ``"measures.license_utilization"``) limits each month's
    scorecard to those parts, read from the JSON in the database: a whole scorecard is ~9 kB,
    most of it measures a page does not show. Charts of the scored instances read the stored
    monthly ``totals``. ``usage_of`` asks for those instances' own monthly usage ``fields`` too
    (a second query; ask only for what the page shows: 24 months of a large account is
    thousands of rows). Months scored before totals were stored are summed from every
    instance's usage instead (all metrics).
    """
    today = today or timezone.now().date()
    start = _month_start(today, MONTHS_SHOWN - 1)
    parts = {} if card_paths is None else _card_parts(card_paths)
    scores = {
        r["month"]: r
        for r in MonthlyScore.objects.filter(company=company, month__gte=start)
        .order_by("month")
        .values(
            "month",
            "scheme",
            "as_of",
            "totals",
            "billable_users",
            "licensed_seats",
            "license_utilization",
            "license_utilization_color",
            *(() if card_paths is not None else ("detail",)),
            **parts,
        )
    }
    if card_paths is not None:
        for row in scores.values():
            row["detail"] = _card_of(row, parts)
    usage: dict[tuple[int, date], dict] = {}
    if any(r["totals"] is None for r in scores.values()):
        usage = _monthly_usage(company, start, None, METRIC_NAMES)
    if usage_of is not None:
        for key, row in _monthly_usage(company, start, usage_of, fields).items():
            usage[key] = {**usage.get(key, {}), **row}
    months = tuple(sorted(scores))
    as_of = max((r["as_of"] for r in scores.values() if r["as_of"]), default=None)
    scheme = scheme_for(scores[months[-1]]["scheme"]) if months else None
    return MonthlyHistory(months, scores, usage, as_of, scheme)


#: What every history chart reads of a month's scorecard: which instances it scored, and why not.
HISTORY_CARD_PATHS = ("instance_ids", "product_usage.reason")


def _card_parts(paths: Sequence[str]) -> dict[str, F]:
    """``values()`` aliases reading each dotted path out of the scorecard JSON."""
    return {f"_card_{n}": F("detail__" + path.replace(".", "__")) for n, path in enumerate(paths)}


def _card_of(row: dict, parts: Mapping[str, F]) -> dict:
    """The partial scorecard: each path's value (when present) nested as in the whole one."""
    card: dict = {}
    for alias, expression in parts.items():
        *parents, leaf = expression.name.removeprefix("detail__").split("__")
        node = card
        for key in parents:
            node = node.setdefault(key, {})
        value = row.pop(alias)
        if value is not None:
            node[leaf] = value
    return card


def _monthly_usage(
    company: Company, start: date, instance_ids: Iterable[int] | None, fields: Sequence[str]
) -> dict[tuple[int, date], dict]:
    rows = MonthlyUsage.objects.filter(company_id=company.pk, month__gte=start)
    if instance_ids is not None:
        rows = rows.filter(instance_id__in=list(instance_ids))
    return {(r["instance_id"], r["month"]): r for r in rows.values("instance_id", "month", *fields)}


# ==================================================================================================
# Formatting


def scheme_for(label: str | None) -> Scheme | None:
    """The preset a score was computed with, if it still exists."""
    try:
        return get_scheme(label) if label else None
    except KeyError:
        return None


def measure_unit(key: str, scheme: Scheme | None, inputs: Mapping[str, Any] | None = None) -> str:
    """``fraction``, ``ratio`` or ``count`` for a measure; ``points`` for roll-ups."""
    if key in USE_CASE_LABELS and key not in ("license_utilization", "user_engagement"):
        return "points"
    if key in ("product_usage", "overall_health", "csm_sentiment"):
        return "points"
    spec = _spec(scheme, key)
    if spec is not None:
        return spec.unit
    if inputs is not None and not inputs.get("denominator_metrics"):
        return "count"
    return "ratio" if "per_" in key else "fraction"


def _spec(scheme: Scheme | None, key: str) -> MeasureSpec | None:
    if scheme is None:
        return None
    return next((m for m in scheme.measures if m.key == key), None)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if unit == "ratio":
        return f"{value:,.2f}"
    if unit == "points":
        return f"{value:.1f} pts"
    return f"{value:,.0f}"


def format_number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _rounds_to_zero(delta: float, unit: str) -> bool:
    """Whether a change is too small to show at the precision values are shown with."""
    digits = {"fraction": 3, "points": 1, "ratio": 2}.get(unit, 0)
    return round(delta, digits) == 0


def _delta_text(delta: float, unit: str) -> str:
    if unit == "fraction":
        return f"{delta * 100:+.1f} pp"
    if unit == "points":
        return f"{delta:+.1f} pts"
    if unit == "ratio":
        return f"{delta:+,.2f}"
    return f"{delta:+,.0f}"


# ==================================================================================================
# Summary: the scorecard with trends


@dataclass(frozen=True, slots=True)
class Trend:
    direction: str  # up, down, same, changed, new
    text: str

    @property
    def symbol(self) -> str:
        return {"up": "▲", "down": "▼", "same": "=", "changed": "◆", "new": "•"}[self.direction]


@dataclass(frozen=True, slots=True)
class ScoreRow:
    key: str
    label: str
    group: str
    color: str
    value_text: str
    reason: str | None
    trend: Trend | None
    anchor: str


# (key, where in the scorecard, label on the summary)
SUMMARY_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("overall_health", "rollup", "Overall health"),
    ("product_usage", "rollup", "Overall product usage"),
    ("license_utilization", "measure", "License Utilization"),
    ("user_engagement", "measure", "User Engagement"),
    ("scm", "use_case", "SCM"),
    ("ci", "use_case", "CI"),
    ("cd", "use_case", "CD"),
    ("devsecops", "use_case", "DevSecOps"),
    ("csm_sentiment", "rollup", "CSM sentiment"),
)


def score_anchor(key: str) -> str:
    return f"score-{key}"


def _result(card: Scorecard, key: str, where: str) -> MeasureResult | None:
    if where == "measure":
        return card.measures.get(key)
    if where == "use_case":
        return card.use_cases.get(key)
    return getattr(card, key, None)


def trend(current: MeasureResult, previous: MeasureResult | None, unit: str) -> Trend:
    """How a result moved since the previous snapshot (higher is better for every measure)."""
    if previous is None:
        return Trend("new", "new measure")
    if current.color != previous.color:
        if current.color in COLOR_RANK and previous.color in COLOR_RANK:
            up = COLOR_RANK[current.color] > COLOR_RANK[previous.color]
            return Trend("up" if up else "down", f"was {previous.color}")
        return Trend("changed", f"was {previous.color}")
    if current.value is None or previous.value is None:
        return Trend("same", "no change")
    delta = current.value - previous.value
    if _rounds_to_zero(delta, unit):
        return Trend("same", "no change")
    return Trend("up" if delta > 0 else "down", _delta_text(delta, unit))


def score_rows(
    current: Scorecard, previous: Scorecard | None, scheme: Scheme | None
) -> list[ScoreRow]:
    rows = []
    for key, where, label in SUMMARY_MEASURES:
        result = _result(current, key, where)
        if result is None:
            continue
        unit = measure_unit(key, scheme, result.inputs)
        before = _result(previous, key, where) if previous is not None else None
        rows.append(
            ScoreRow(
                key=key,
                label=label,
                group=where,
                color=result.color,
                value_text=format_value(result.value, unit),
                reason=result.reason,
                trend=trend(result, before, unit) if previous is not None else None,
                anchor=score_anchor(key),
            )
        )
    return rows


# ==================================================================================================
# Scorecard explanation


@dataclass(frozen=True, slots=True)
class MetricRef:
    name: str
    label: str
    in_dictionary: bool


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


@dataclass(frozen=True, slots=True)
class UseCaseExplanation:
    key: str
    label: str
    rollup: Explanation | None
    measures: tuple[Explanation, ...]


def metric_ref(name: str) -> MetricRef:
    if name == LICENSED_SEATS:
        return MetricRef(
            name, "Licensed seats (subscriptions; ping's licensed users if unknown)", False
        )
    metric = METRICS_BY_NAME.get(name)
    return MetricRef(name, metric.label if metric else name, metric is not None)


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
        reason=result.reason,
        thresholds=str(inputs.get("thresholds", "")),
        numerator_text=format_number(inputs.get("numerator")),
        denominator_text=format_number(inputs.get("denominator")),
        numerator_metrics=tuple(metric_ref(m) for m in inputs.get("numerator_metrics", ())),
        denominator_metrics=tuple(metric_ref(m) for m in inputs.get("denominator_metrics", ())),
        instances=used_instances,
        pings=tuple(used_pings),
        account_age_months=inputs.get("account_age_months"),
    )


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
        reason=result.reason,
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
        account_age_months=account_age_months(customer_since, card.computed_for),
        overall=_explain_rollup(overall, overall_parts),
        product_usage=_explain_rollup(
            product, _weights_parts(product.inputs, "component_points", USE_CASE_LABELS)
        ),
        sentiment=_explain_rollup(sentiment, sentiment_parts),
        use_cases=tuple(use_cases),
        warnings=card.warnings,
        included=tuple(refs[i] for i in card.instance_ids if i in refs),
        stale=tuple(refs[i] for i in card.stale_instance_ids if i in refs),
        pings=tuple(all_pings),
    )


# ==================================================================================================
# Instances: which count for health, now and once pending changes apply


@dataclass(frozen=True, slots=True)
class HealthStatus:
    state: str  # included, stale, waiting, excluded
    text: str


def _candidates(
    instances: Sequence[Instance], overrides: Mapping[tuple[int, str], str], now: datetime
) -> list[InstanceCandidate]:
    out = []
    for i in instances:
        sub = i.subscription
        out.append(
            InstanceCandidate(
                instance_id=i.pk,
                name=str(i),
                is_saas=i.is_saas,
                instance_type=overrides.get((i.pk, LabelField.INSTANCE_TYPE), i.instance_type),
                health_inclusion=overrides.get(
                    (i.pk, LabelField.HEALTH_INCLUSION), i.health_inclusion
                ),
                subscription_id=i.subscription_id,
                plan=sub.plan if sub else None,
                licensed_seats=sub.licensed_seats if sub else None,
                # Inclusion depends on whether a latest ping exists and its date, not its id.
                ping_id=0 if i.last_ping_at else None,
                recorded_at=i.last_ping_at,
                version=i.version,
                metrics={},
            )
        )
    return out


def _eligible(candidates: Sequence[InstanceCandidate], scheme: Scheme, today: date) -> list[int]:
    """Instances the health rule admits by label alone (whatever the age of their pings)."""
    fresh = [dataclasses.replace(c, ping_id=0, recorded_at=timezone.now()) for c in candidates]
    return [c.instance_id for c in select_instances(fresh, as_of=today, scheme=scheme).included]


def _exclusion_status(instance: Instance, reason: str) -> HealthStatus:
    """The engine's exclusion reason, said with the labels people see."""
    if instance.health_inclusion == HealthInclusion.OPT_OUT:
        return HealthStatus("excluded", "Opt-Out: not in health measures")
    if instance.instance_type != InstanceType.PRODUCTION and not instance.is_saas:
        label = TYPE_LABELS.get(instance.instance_type, instance.instance_type)
        return HealthStatus("excluded", f"{label}: not in health measures")
    if instance.last_ping_at is None:
        return HealthStatus("waiting", "counts once it sends a usage ping")
    return HealthStatus("excluded", reason)


@dataclass(frozen=True, slots=True)
class HealthOverview:
    statuses: Mapping[int, HealthStatus]
    warnings: tuple[str, ...]
    eligible_now: tuple[int, ...]
    eligible_after_pending: tuple[int, ...]


def health_overview(
    instances: Sequence[Instance], pending: Sequence[LabelChange], *, scheme: Scheme
) -> HealthOverview:
    """Each instance's part in health measures under the applied labels, and after pending ones."""
    now = timezone.now()
    today = now.date()
    candidates = _candidates(instances, {}, now)
    selection = select_instances(candidates, as_of=today, scheme=scheme)
    statuses: dict[int, HealthStatus] = {}
    for c in selection.included:
        statuses[c.instance_id] = HealthStatus("included", "used in health measures")
    for c in selection.stale:
        age = (today - c.recorded_at.date()).days if c.recorded_at else 0
        statuses[c.instance_id] = HealthStatus(
            "stale", f"left out: latest ping {age} days old (limit {scheme.stale_ping_days})"
        )
    by_id = {i.pk: i for i in instances}
    for instance_id, reason in selection.excluded:
        statuses[instance_id] = _exclusion_status(by_id[instance_id], reason)
    overrides = {(c.instance_id, c.field): c.new_value for c in pending}
    after = _candidates(instances, overrides, now) if overrides else candidates
    return HealthOverview(
        statuses=statuses,
        warnings=selection.warnings,
        eligible_now=tuple(_eligible(candidates, scheme, today)),
        eligible_after_pending=tuple(_eligible(after, scheme, today)),
    )


@dataclass(frozen=True, slots=True)
class ChangeView:
    """A label change with its values as people read them."""

    change: LabelChange
    field_label: str
    old_label: str
    new_label: str

    @classmethod
    def of(cls, change: LabelChange) -> ChangeView:
        return cls(
            change,
            change.get_field_display(),
            change.value_display(change.old_value) or "—",
            change.value_display(change.new_value) or "—",
        )

    @property
    def pk(self) -> int:
        return self.change.pk

    @property
    def instance_id(self) -> int:
        return self.change.instance_id

    @property
    def field(self) -> str:
        return self.change.field


def pending_by_instance(pending: Sequence[ChangeView]) -> dict[int, dict[str, ChangeView]]:
    out: dict[int, dict[str, ChangeView]] = defaultdict(dict)
    for change in pending:
        out[change.instance_id][change.field] = change
    return out


def history_by_instance(changes: Sequence[ChangeView]) -> dict[int, list[ChangeView]]:
    out: dict[int, list[ChangeView]] = defaultdict(list)
    for change in changes:
        out[change.instance_id].append(change)
    return out


# ==================================================================================================
# Monthly series: adoption ratios and usage trends


@dataclass(frozen=True, slots=True)
class RatioReport:
    """A contextual ratio charted by month (User Adoption Metrics)."""

    key: str
    tab: str
    title: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    unit: str  # fraction or ratio
    y_title: str
    description: str


ADOPTION_REPORTS: tuple[RatioReport, ...] = (
    RatioReport(
        "pipeline_umau",
        "Pipeline users ÷ UMAU",
        "Users who ran a pipeline ÷ monthly active users",
        ("pipeline_users",),
        ("umau",),
        "fraction",
        "% of monthly active users",
        "How much of the active team builds with CI: a low share is an enablement opportunity.",
    ),
    RatioReport(
        "git_billable",
        "Git users ÷ billable",
        "Git-operation users ÷ billable users",
        ("git_operation_users",),
        ("billable_users",),
        "fraction",
        "% of billable users",
        "Users who read, wrote or pushed with Git in the last 28 days, per billable user (SCM).",
    ),
    RatioReport(
        "umau_billable",
        "UMAU ÷ billable",
        "Unique monthly active users ÷ billable users",
        ("umau",),
        ("billable_users",),
        "fraction",
        "% of billable users",
        "How many paid-for users were active in the last 28 days (User Engagement).",
    ),
    RatioReport(
        "ci_builds_per_user",
        "CI builds per user",
        "CI builds (last 28 days) per billable user",
        ("ci_builds_l28",),
        ("billable_users",),
        "ratio",
        "builds per user (28 days)",
        "Depth of CI use: builds run in the last 28 days for each billable user (CI).",
    ),
    RatioReport(
        "pipeline_billable",
        "Pipeline users ÷ billable",
        "Pipeline users ÷ billable users",
        ("pipeline_users",),
        ("billable_users",),
        "fraction",
        "% of billable users",
        "Breadth of CI use: users who triggered a pipeline, per billable user.",
    ),
    RatioReport(
        "deployment_billable",
        "Deployment users ÷ billable",
        "Deployment users ÷ billable users",
        ("deployment_users",),
        ("billable_users",),
        "fraction",
        "% of billable users",
        "Users who triggered a deployment in the last 28 days, per billable user (CD).",
    ),
    RatioReport(
        "scanner_billable",
        "Scanner users ÷ billable",
        "Secure-scanner users ÷ billable users",
        ("secure_scanner_users",),
        ("billable_users",),
        "fraction",
        "% of billable users",
        "Users who ran any security scanner in the last 28 days, per billable user (DevSecOps).",
    ),
)
ADOPTION_BY_KEY = {r.key: r for r in ADOPTION_REPORTS}


def _label(metric: str) -> str:
    return metric_ref(metric).label


def band_ranges(band_list: Sequence[Band]) -> tuple[BandRange, ...]:
    out, lower = [], None
    for band in band_list:
        out.append(BandRange(lower, band.upper, band.color))
        lower = band.upper
    return tuple(out)


def matching_measure(scheme: Scheme | None, report: RatioReport) -> MeasureSpec | None:
    """The scheme's health measure computing the same ratio, if there is one."""
    if scheme is None:
        return None
    return next(
        (
            m
            for m in scheme.measures
            if m.numerator == report.numerator and m.denominator == report.denominator
        ),
        None,
    )


def ratio_card_paths(report: RatioReport) -> tuple[str, ...]:
    """The scorecard parts ``ratio_rows`` and ``empty_reason`` read, for any preset's measure."""
    keys = sorted(
        {spec.key for scheme in PRESETS.values() if (spec := matching_measure(scheme, report))}
    )
    return (*HISTORY_CARD_PATHS, *(f"measures.{key}" for key in keys))


def trend_card_paths(report: TrendReport) -> tuple[str, ...]:
    """The scorecard parts a Product Usage Trends report reads."""
    paths = list(HISTORY_CARD_PATHS)
    if report.key == "license":
        paths.append("measures.license_utilization")
    if report.use_case:
        paths.append(f"use_cases.{report.use_case}")
    return tuple(paths)


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
        num = _sum_or_none(totals, report.numerator)
        den = _sum_or_none(totals, report.denominator)
        reason = None
        if not history.included(month):
            reason = history.card(month).get("product_usage", {}).get("reason") or (
                "no Production instance"
            )
        elif num is None or den is None:
            missing = next(m for m in report.numerator + report.denominator if totals[m] is None)
            reason = f"{_label(missing).lower()} not reported"
        elif not den:
            reason = f"no {_label(report.denominator[0]).lower()}"
        value = num / den if reason is None else None
        rows.append(RatioRow(month, num, den, value, None, reason))
    return spec, rows


def _sum_or_none(totals: Mapping[str, float | None], metrics: Sequence[str]) -> float | None:
    values = [totals[m] for m in metrics]
    return None if None in values else sum(values)


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
    spec = _spec(history.scheme, "license_utilization")
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


@dataclass(frozen=True, slots=True)
class MetricChartSpec:
    title: str
    metrics: tuple[str, ...]
    kind: str  # lines or stacked
    y_title: str
    colors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrendReport:
    key: str
    tab: str
    title: str
    use_case: str | None
    charts: tuple[MetricChartSpec, ...]
    description: str


TREND_REPORTS: tuple[TrendReport, ...] = (
    TrendReport(
        "scm",
        "SCM",
        "Source Code Management",
        "scm",
        (
            MetricChartSpec(
                "Git-operation users vs billable users",
                ("git_operation_users", "billable_users"),
                "lines",
                "users",
            ),
        ),
        "Users who performed Git operations in the last 28 days, against billable users.",
    ),
    TrendReport(
        "ci",
        "CI",
        "Continuous Integration",
        "ci",
        (
            MetricChartSpec(
                "CI users",
                ("pipeline_users", "ci_build_users", "umau"),
                "lines",
                "users (last 28 days)",
            ),
            MetricChartSpec(
                "CI builds and pipelines",
                ("ci_builds_l28", "ci_internal_pipelines_l28"),
                "lines",
                "builds / pipelines (last 28 days)",
            ),
        ),
        "Who runs pipelines and how much CI runs, month over month.",
    ),
    TrendReport(
        "cd",
        "CD",
        "Continuous Delivery",
        "cd",
        (
            MetricChartSpec(
                "Deployments by outcome",
                ("successful_deployments_l28", "failed_deployments_l28"),
                "stacked",
                "deployments (last 28 days)",
                {"successful_deployments_l28": "#2e7d32", "failed_deployments_l28": "#c62828"},
            ),
            MetricChartSpec(
                "Deployment users vs billable users",
                ("deployment_users", "billable_users"),
                "lines",
                "users",
            ),
        ),
        "Deployments and the users who trigger them.",
    ),
    TrendReport(
        "devsecops",
        "DevSecOps",
        "DevSecOps",
        "devsecops",
        (
            MetricChartSpec(
                "Security scans by scanner", SCAN_METRICS, "stacked", "scans (last 28 days)"
            ),
            MetricChartSpec(
                "Secure-scanner users vs billable users",
                ("secure_scanner_users", "billable_users"),
                "lines",
                "users",
            ),
        ),
        "Scanner adoption. DevSecOps is scored for Ultimate subscriptions only.",
    ),
    TrendReport(
        "license",
        "License Utilization",
        "License Utilization",
        None,
        (),
        "Billable users against licensed seats, and the License Utilization colour by month.",
    ),
)
TREND_BY_KEY = {r.key: r for r in TREND_REPORTS}
NOT_PRODUCTION = "not_production"


# ==================================================================================================
# NOT Production Instance Usage


NOT_PRODUCTION_METRICS = (
    "billable_users",
    "umau",
    "git_operation_users",
    "pipeline_users",
    "ci_builds_l28",
    "deployments_l28",
)
#: The latest month's figures in the table of instances outside health measures.
NOT_PRODUCTION_TABLE = ("billable_users", "umau", "ci_builds_l28")


def outside_health(instances: Sequence[Instance]) -> list[Instance]:
    """Instances whose usage no health measure or Production trend shows."""
    return [
        i
        for i in instances
        if i.instance_type != InstanceType.PRODUCTION
        or i.health_inclusion == HealthInclusion.OPT_OUT
    ]


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
    """Billable users per month for each instance, plus the Production total the engine used."""
    months = sorted({m for (_, m) in history.usage} | set(history.months))
    series = [
        Series(
            f"{i} ({TYPE_LABELS.get(i.instance_type, i.instance_type)})",
            [Point(m, (history.usage.get((i.pk, m)) or {}).get("billable_users")) for m in months],
        )
        for i in instances
    ]
    production = Series(
        "Production (health measures)",
        [
            Point(m, history.scores[m]["billable_users"] if m in history.scores else None)
            for m in months
        ],
        color="#1f1f2e",
        dash=True,
        right_axis=True,  # usually far above any other instance: their lines keep their scale
    )
    return months, [*series, production]


# ==================================================================================================
# Why a chart is empty (the seed's FAQ)

FAQ_HINTS: tuple[tuple[str, str], ...] = (
    (
        "no Production instance",
        "None of this account's instances is labeled Production, or every one is Opt-Out. Label "
        "the production instance under Instance and Namespace Details (⋮ → Edit); other instance "
        "types appear only in the NOT Production Instance Usage report.",
    ),
    (
        "not reported before 14.0",
        "Billable users were instrumented in GitLab 14.0: on older versions billable users, "
        "License Utilization and every ratio over billable users are NULL until the instance "
        "is upgraded.",
    ),
    (
        "no data for",
        "The production instance has sent no usage ping for 60 days: Service Ping may have been "
        "turned off or blocked. Air-gapped instances can upload payloads by hand.",
    ),
    (
        "no usage ping received",
        "No usage ping has arrived from the production instance yet: the customer may not be "
        "opted into Service Ping, or blocks it.",
    ),
    (
        "not measured for SaaS",
        "This metric is only collected from self-managed instances.",
    ),
    (
        "applies to Ultimate only",
        "DevSecOps is scored only when an instance in health measures is on an Ultimate "
        "subscription.",
    ),
    (
        "not available before",
        "The metric was added in a later GitLab release than the instance runs.",
    ),
)
NO_HISTORY = (
    "No usage data in the last {months} months. Self-managed: the customer is not opted into "
    "Service Ping, turned it off, or blocks it (air-gapped instances can upload payloads). SaaS: "
    "the namespace may not be tied to the subscription yet."
)


def explain_reason(reason: str | None) -> str:
    """An engine NA reason followed by what the seed's FAQ says to do about it."""
    if not reason:
        return "No data to chart for these months."
    hint = next((text for key, text in FAQ_HINTS if key in reason), "")
    first = reason[0].upper() + reason[1:]
    return f"{first}. {hint}".strip()


def empty_reason(history: MonthlyHistory, *, reasons: Iterable[str | None] = ()) -> str:
    """Why a chart has nothing to draw: no months at all, or the engine's latest NA reason."""
    if not history.months:
        return NO_HISTORY.format(months=MONTHS_SHOWN)
    known = [r for r in reasons if r]
    if known:
        return explain_reason(known[-1])
    latest = history.card(history.months[-1])
    return explain_reason(latest.get("product_usage", {}).get("reason"))
