"""View-models of the Account C360 pages: engine output and rows shaped for the templates.

Pure shaping, no query: formatting of values and deltas, the Summary's score rows with their
trends, which instances count for health (asked of ``scoring.methodology``, never decided
here), label changes as people read them, and the rows of the Instances and NOT Production
tables. The markup itself is in ``templates/accounts/``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.utils import timezone

from instances.metrics import METRICS_BY_NAME
from instances.models import (
    HealthInclusion,
    Instance,
    InstanceKind,
    InstanceType,
    LabelChange,
    LabelField,
)
from scoring.methodology import NO_PING, health_exclusion, select_instances
from scoring.schemes import LICENSED_SEATS, USE_CASE_LABELS, MeasureSpec, Scheme
from scoring.scorecard import InstanceCandidate, MeasureResult, Scorecard
from usage_portal.web.timezones import day_of, moment_text

COLOR_RANK = {"Red": 0, "Yellow": 1, "Green": 2}
# ``get_FOO_display`` without its per-call work (81 rows × 3 fields).
TYPE_LABELS = dict(InstanceType.choices)
KIND_LABELS = dict(InstanceKind.choices)
INCLUSION_LABELS = dict(HealthInclusion.choices)


# --------------------------------------------------------------------------------------------------
# Formatting


def measure_unit(key: str, scheme: Scheme | None, inputs: Mapping[str, Any] | None = None) -> str:
    """``fraction``, ``ratio`` or ``count`` for a measure; ``points`` for roll-ups."""
    if key in USE_CASE_LABELS and key not in ("license_utilization", "user_engagement"):
        return "points"
    if key in ("product_usage", "overall_health", "csm_sentiment"):
        return "points"
    spec = measure_spec(scheme, key)
    if spec is not None:
        return spec.unit
    if inputs is not None and not inputs.get("denominator_metrics"):
        return "count"
    return "ratio" if "per_" in key else "fraction"


def measure_spec(scheme: Scheme | None, key: str) -> MeasureSpec | None:
    """The scheme's definition of measure ``key``, if it has one."""
    if scheme is None:
        return None
    return next((m for m in scheme.measures if m.key == key), None)


@dataclass(frozen=True, slots=True)
class _UnitFormat:
    scale: int  # shown multiplied by this (fractions as percentages)
    spec: str  # the format spec of the shown number
    suffix: str
    delta_suffix: str
    digits: int  # decimal places of the stored value that the shown precision keeps


_UNIT_FORMATS = {
    "fraction": _UnitFormat(100, ".1f", "%", " pp", 3),
    "ratio": _UnitFormat(1, ",.2f", "", "", 2),
    "points": _UnitFormat(1, ".1f", " pts", " pts", 1),
}
_COUNT_FORMAT = _UnitFormat(1, ",.0f", "", "", 0)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    fmt = _UNIT_FORMATS.get(unit, _COUNT_FORMAT)
    return f"{value * fmt.scale:{fmt.spec}}{fmt.suffix}"


def format_number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _rounds_to_zero(delta: float, unit: str) -> bool:
    """Whether a change is too small to show at the precision values are shown with."""
    return round(delta, _UNIT_FORMATS.get(unit, _COUNT_FORMAT).digits) == 0


def _delta_text(delta: float, unit: str) -> str:
    fmt = _UNIT_FORMATS.get(unit, _COUNT_FORMAT)
    return f"{delta * fmt.scale:+{fmt.spec}}{fmt.delta_suffix}"


@dataclass(frozen=True, slots=True)
class MetricRef:
    name: str
    label: str
    in_dictionary: bool


def metric_ref(name: str) -> MetricRef:
    """A metric as pages name it, and whether the metrics dictionary explains it."""
    if name == LICENSED_SEATS:
        return MetricRef(
            name, "Licensed seats (subscriptions; ping's licensed users if unknown)", False
        )
    metric = METRICS_BY_NAME.get(name)
    return MetricRef(name, metric.label if metric else name, metric is not None)


# --------------------------------------------------------------------------------------------------
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


def sentence(text: str | None) -> str | None:
    """``text`` shown on its own, as a sentence: the engine's reasons and warnings are
    lower-case fragments ("no Production instance") so that they read inside others ("NA
    months: …", "a; b"); every page capitalises them here, once."""
    return text[:1].upper() + text[1:] if text else text


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
                reason=sentence(result.reason),
                trend=trend(result, before, unit) if previous is not None else None,
                anchor=score_anchor(key),
            )
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Instances: which count for health, now and once pending changes apply


@dataclass(frozen=True, slots=True)
class HealthStatus:
    state: str  # included, stale, waiting, excluded
    text: str


def _candidates(instances: Sequence[Instance]) -> list[InstanceCandidate]:
    """The instances as the engine's selection sees them, under their applied labels."""
    out = []
    for i in instances:
        sub = i.subscription
        out.append(
            InstanceCandidate(
                instance_id=i.pk,
                name=str(i),
                is_saas=i.is_saas,
                instance_type=i.instance_type,
                health_inclusion=i.health_inclusion,
                subscription_id=i.subscription_id,
                plan=sub.plan if sub else None,
                licensed_seats=sub.licensed_seats if sub else None,
                # Inclusion depends on whether a latest ping exists and its date, not its id.
                ping_id=0 if i.last_ping_at else None,
                recorded_at=i.last_ping_at,
                version=i.version,
                metrics={},
                subscription_name=sub.name if sub else None,
                subscription_status=sub.status if sub else None,
                subscription_start=sub.start_date if sub else None,
                subscription_end=sub.end_date if sub else None,
            )
        )
    return out


def _eligible(
    instances: Sequence[Instance], overrides: Mapping[tuple[int, str], str] | None = None
) -> tuple[int, ...]:
    """Instances the health rule admits by their labels (``overrides``: pending new values),
    whatever the age of their pings."""
    overrides = overrides or {}
    return tuple(
        i.pk
        for i in instances
        if health_exclusion(
            instance_type=overrides.get((i.pk, LabelField.INSTANCE_TYPE), i.instance_type),
            health_inclusion=overrides.get((i.pk, LabelField.HEALTH_INCLUSION), i.health_inclusion),
            is_saas=i.is_saas,
        )
        is None
    )


#: The engine's reason for an Opt-Out instance (``health_exclusion``'s own words).
_OPTED_OUT = health_exclusion(
    instance_type=InstanceType.PRODUCTION, health_inclusion=HealthInclusion.OPT_OUT, is_saas=False
)


def _exclusion_status(instance: Instance, reason: str) -> HealthStatus:
    """Why the engine left ``instance`` out (``reason``), said with the labels people see.

    Labels first (``health_exclusion``, the engine's rule): an Opt-Out, or a type that is not
    Production, is named with its label. Admitted by its labels, it lacks a ping.
    """
    by_labels = health_exclusion(
        instance_type=instance.instance_type,
        health_inclusion=instance.health_inclusion,
        is_saas=instance.is_saas,
    )
    if by_labels == _OPTED_OUT:
        return HealthStatus("excluded", "Opt-Out: not in health measures")
    if by_labels is not None:
        label = TYPE_LABELS.get(instance.instance_type, instance.instance_type)
        return HealthStatus("excluded", f"{label}: not in health measures")
    if reason == NO_PING:
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
    today = timezone.now().date()
    selection = select_instances(_candidates(instances), as_of=today, scheme=scheme)
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
    return HealthOverview(
        statuses=statuses,
        warnings=selection.warnings,
        eligible_now=_eligible(instances),
        eligible_after_pending=_eligible(instances, overrides),
    )


@dataclass(frozen=True, slots=True)
class ChangeView:
    """A label change with its values as people read them."""

    change: LabelChange
    field_label: str
    old_label: str
    new_label: str
    #: ``requested``, ``effective``, ``applied``, ``closed`` as "5 Dec 2026 14:03 CET", in the
    #: reader's zone ("" if unset). An f-string (``moment_text``) costs a 30th of the ``date``
    #: filter, and a large account shows hundreds.
    when: Mapping[str, str]

    @classmethod
    def of(cls, change: LabelChange) -> ChangeView:
        return cls(
            change,
            change.get_field_display(),
            change.value_display(change.old_value) or "—",
            change.value_display(change.new_value) or "—",
            {moment: moment_text(getattr(change, f"{moment}_at")) for moment in _MOMENTS},
        )

    @property
    def requested_on(self) -> str:
        return day_text(self.change.requested_at)

    @property
    def summary(self) -> str:
        """One line for an instance's menu: "5 Dec 2026: Instance type Unknown → Production by
        csm1 (applied)". A string (escaped where shown): the largest account shows ~400."""
        change = self.change
        return (
            f"{self.requested_on}: {self.field_label} {self.old_label} → {self.new_label} "
            f"by {change.author} ({change.get_status_display().lower()})"
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


_MOMENTS = ("requested", "effective", "applied", "closed")


def day_text(when: datetime | date | None) -> str:
    """A day, or a moment's day in the reader's zone: "5 Dec 2026"."""
    return f"{day_of(when):%-d %b %Y}" if when else ""


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


def outside_health(instances: Sequence[Instance]) -> list[Instance]:
    """Instances whose usage no health measure or Production trend shows: those the health
    rule (``health_exclusion``) keeps out by their labels."""
    return [
        i
        for i in instances
        if health_exclusion(
            instance_type=i.instance_type, health_inclusion=i.health_inclusion, is_saas=i.is_saas
        )
        is not None
    ]


# --------------------------------------------------------------------------------------------------
# Table rows (``templates/accounts/_instance_rows.html``, ``_outside_rows.html``)


@dataclass(frozen=True, slots=True)
class PendingNote:
    """A pending label change shown inline; ``apply_url`` when the visitor may apply it now."""

    change: ChangeView
    apply_url: str | None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """A row of the Instances table: ⋮ menu, name, type, health inclusion, version, pings.

    ``pending`` maps a field (``instance_type``, ``health_inclusion``) to its pending note.
    """

    instance: Instance
    name: str
    kind_label: str
    type_label: str
    inclusion_label: str
    status: HealthStatus | None
    pending: Mapping[str, PendingNote]
    history: Sequence[ChangeView]
    edit_url: str | None
    usage_url: str
    is_stale: bool

    @property
    def first_ping_text(self) -> str:
        return day_text(self.instance.first_ping_at)

    @property
    def last_ping_text(self) -> str:
        return day_text(self.instance.last_ping_at)

    @classmethod
    def of(cls, i: Instance, **parts) -> InstanceRow:
        return cls(
            instance=i,
            name=str(i),
            kind_label=KIND_LABELS.get(i.kind, i.kind),
            type_label=TYPE_LABELS.get(i.instance_type, i.instance_type),
            inclusion_label=INCLUSION_LABELS.get(i.health_inclusion, i.health_inclusion),
            **parts,
        )


@dataclass(frozen=True, slots=True)
class OutsideRow:
    """A row of the NOT Production table: an instance outside health measures, latest month."""

    instance: Instance
    name: str
    type_label: str
    opt_out: bool
    billable: str
    umau: str
    ci_builds: str
    share: str  # its billable users as a share of the Production instances'
    selected: bool
    edit_url: str | None
    identity: str = ""
    last_ping_text: str = ""

    @classmethod
    def of(
        cls,
        i: Instance,
        latest: Mapping[str, Any],
        production_billable: int | None,
        *,
        selected: bool,
        edit_url: str | None,
    ) -> OutsideRow:
        billable = latest.get("billable_users")
        return cls(
            instance=i,
            name=str(i),
            type_label=TYPE_LABELS.get(i.instance_type, i.instance_type),
            opt_out=i.health_inclusion == HealthInclusion.OPT_OUT,
            billable=_count(billable),
            umau=_count(latest.get("umau")),
            ci_builds=_count(latest.get("ci_builds_l28")),
            share=f"{billable / production_billable * 100:.0f}%"
            if billable is not None and production_billable
            else "—",
            selected=selected,
            edit_url=edit_url,
            identity=i.identity,
            last_ping_text=day_text(i.last_ping_at),
        )


def _count(value) -> str:
    return "—" if value is None else f"{value:,}"
