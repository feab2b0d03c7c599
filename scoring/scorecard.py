"""What the methodology reads and what it produces, as frozen plain data.

:class:`CompanyInputs` (a company and its :class:`InstanceCandidate` rows) go into
:func:`scoring.methodology.score_company`; a :class:`Scorecard` of :class:`MeasureResult` comes
out. ``to_dict()``/``from_dict()`` make a scorecard JSON-safe for storage, and
:func:`api_health_payload` is its public API shape. No Django, no I/O, no rules: the rules are
in ``scoring/methodology.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .schemes import NA, Color

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class InstanceCandidate:
    """One instance or SaaS namespace of a company, with its latest ping (if any).

    ``instance_type`` is the *applied* type; ``health_inclusion`` is ``"included"``,
    ``"opt_out"`` or ``""`` (automatic). ``plan`` (lower-case), ``licensed_seats`` and the
    ``subscription_*`` status and dates are its subscription's. ``metrics`` maps metric names
    to values, ``None`` meaning unknown; ``failed`` names those the ping reported a failure
    value for (unknown too, but sent).
    """

    instance_id: int
    name: str
    is_saas: bool
    instance_type: str
    health_inclusion: str
    subscription_id: int | None
    plan: str | None
    licensed_seats: int | None
    ping_id: int | None
    recorded_at: datetime | None
    version: str | None
    metrics: Mapping[str, int | float | None]
    failed: frozenset[str] = frozenset()
    subscription_name: str | None = None
    subscription_status: str | None = None
    subscription_start: date | None = None
    subscription_end: date | None = None


@dataclass(frozen=True, slots=True)
class CompanyInputs:
    """Everything needed to score one company on ``as_of`` (the scoring date).

    ``period_start`` is the first day of the period scored (a month of history), ``None`` for a
    single day; a subscription counts if it is active at any point of it. ``csm_owned`` says
    whether a CSM owns the account (sentiment counts only then).
    """

    company_id: int
    customer_since: date | None
    sentiment: str | None
    sentiment_date: date | None
    candidates: tuple[InstanceCandidate, ...]
    as_of: date
    csm_owned: bool = True
    period_start: date | None = None
    #: The success plan's ROI (Red/Yellow/Green) as the CSM judged it.
    roi: str | None = None
    #: The newest month of support tickets: (first day of the month, tickets).
    tickets: tuple[date, int] | None = None
    #: CSM prioritization (1 or 2 have meeting-cadence targets).
    prioritization: int | None = None
    #: Meetings: (day, personas met), any order.
    meetings: tuple[tuple[date, frozenset[str]], ...] = ()


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome of :func:`select_instances`.

    ``included`` are the instances whose pings are used; ``stale`` were eligible but their
    latest ping is too old; ``excluded`` pairs an instance id with why it does not count.
    ``na_reason`` is set when nothing can be scored.
    """

    included: tuple[InstanceCandidate, ...]
    stale: tuple[InstanceCandidate, ...]
    excluded: tuple[tuple[int, str], ...]
    warnings: tuple[str, ...]
    na_reason: str | None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class MeasureResult:
    """A coloured value with its explanation.

    ``value`` is a fraction or ratio for measures and 0–100 points for roll-ups; ``points``
    is what the value contributes to roll-ups (``None`` when NA). ``inputs`` is JSON-safe and
    says how the value was obtained (numerator, denominator, instances, pings, thresholds).
    """

    key: str
    label: str
    use_case: str
    color: Color
    value: int | float | None
    points: int | float | None
    reason: str | None
    inputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; :meth:`from_dict` is its inverse."""
        return {
            "key": self.key,
            "label": self.label,
            "use_case": self.use_case,
            "color": self.color,
            "value": self.value,
            "points": self.points,
            "reason": self.reason,
            "inputs": self.inputs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasureResult:
        return cls(
            key=data["key"],
            label=data["label"],
            use_case=data["use_case"],
            color=data["color"],
            value=data["value"],
            points=data["points"],
            reason=data["reason"],
            inputs=dict(data["inputs"]),
        )


@dataclass(frozen=True, slots=True)
class Scorecard:
    """A company's complete score under one scheme.

    ``as_of`` is the date of the newest ping used; ``computed_for`` the scoring date.
    ``measures`` holds every individual measure of the scheme, ``use_cases`` the SCM, CI, CD
    and DevSecOps roll-ups.
    """

    scheme: str
    as_of: date | None
    computed_for: date
    measures: dict[str, MeasureResult]
    use_cases: dict[str, MeasureResult]
    product_usage: MeasureResult
    csm_sentiment: MeasureResult
    overall_health: MeasureResult
    health_score_value: float | None
    adoption_count: int | None
    instance_ids: tuple[int, ...]
    ping_ids: tuple[int, ...]
    warnings: tuple[str, ...]
    stale_instance_ids: tuple[int, ...]
    #: The other groups of overall health: outcomes, voice_of_customer, engagement.
    groups: dict[str, MeasureResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (dates as ISO strings); :meth:`from_dict` is its inverse."""
        return {
            "scheme": self.scheme,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "computed_for": self.computed_for.isoformat(),
            "measures": {k: m.to_dict() for k, m in self.measures.items()},
            "use_cases": {k: m.to_dict() for k, m in self.use_cases.items()},
            "product_usage": self.product_usage.to_dict(),
            "csm_sentiment": self.csm_sentiment.to_dict(),
            "overall_health": self.overall_health.to_dict(),
            "health_score_value": self.health_score_value,
            "adoption_count": self.adoption_count,
            "instance_ids": list(self.instance_ids),
            "ping_ids": list(self.ping_ids),
            "warnings": list(self.warnings),
            "stale_instance_ids": list(self.stale_instance_ids),
            "groups": {k: m.to_dict() for k, m in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorecard:
        as_of = data["as_of"]
        return cls(
            scheme=data["scheme"],
            as_of=date.fromisoformat(as_of) if as_of else None,
            computed_for=date.fromisoformat(data["computed_for"]),
            measures={k: MeasureResult.from_dict(m) for k, m in data["measures"].items()},
            use_cases={k: MeasureResult.from_dict(m) for k, m in data["use_cases"].items()},
            product_usage=MeasureResult.from_dict(data["product_usage"]),
            csm_sentiment=MeasureResult.from_dict(data["csm_sentiment"]),
            overall_health=MeasureResult.from_dict(data["overall_health"]),
            health_score_value=data["health_score_value"],
            adoption_count=data["adoption_count"],
            instance_ids=tuple(data["instance_ids"]),
            ping_ids=tuple(data["ping_ids"]),
            warnings=tuple(data["warnings"]),
            stale_instance_ids=tuple(data["stale_instance_ids"]),
            # Scores stored before these groups existed have none.
            groups={k: MeasureResult.from_dict(m) for k, m in data.get("groups", {}).items()},
        )


# --------------------------------------------------------------------------- output

#: Decimals each figure keeps on its way out (the API, the health CSV, the page downloads),
#: documented in docs/methodology.md §10. Scores are stored unrounded and coloured unrounded.
PRECISION: dict[str, int] = {
    # Fractions: three decimals are the pages' percentages (one decimal) to the digit.
    "license_utilization": 3,
    "user_engagement": 3,
    "scm": 1,
    "ci": 1,
    "cd": 1,
    "devsecops": 1,
    "overall_product_usage": 1,
    "csm_sentiment": 1,
    "overall_health": 1,
    "health_score_value": 1,
    "adoption_count": 0,
    "license_utilization_percent": 1,
    "product_usage_score": 1,
    "usage_share_percent": 1,
    "count": 0,
}


def figure(field: str, value: float | None) -> float | int | None:
    """``value`` rounded to ``PRECISION[field]`` decimals (an int at 0); None stays None.

    An undocumented ``field`` is a KeyError: a new exported figure gets its row first.
    """
    places = PRECISION[field]
    if value is None:
        return None
    return round(value) if places == 0 else round(value, places)


def percent_figure(field: str, fraction: float | None) -> float | None:
    """A fraction as the percentage ``field`` exports: ``0.69902…`` → ``69.9``."""
    return None if fraction is None else figure(field, fraction * 100)


_NA_MEASURE = {"color": NA, "value": None, "reason": "not part of this scheme"}


def _api_measure(key: str, result: MeasureResult | None) -> dict[str, Any]:
    if result is None:
        return dict(_NA_MEASURE)
    return {"color": result.color, "value": figure(key, result.value), "reason": result.reason}


def api_health_payload(scorecard: Scorecard, *, crm_account_id: str) -> dict[str, Any]:
    """The ``GET /api/v1/accounts/<crm_account_id>/health`` body (product spec §6).

    Measure values are fractions/ratios for License Utilization and User Engagement, 0–100
    points for use cases, product usage and overall health, each rounded as ``PRECISION`` says.
    """
    measures = scorecard.measures
    use_cases = scorecard.use_cases
    parts = {
        "license_utilization": measures.get("license_utilization"),
        "user_engagement": measures.get("user_engagement"),
        "scm": use_cases.get("scm"),
        "ci": use_cases.get("ci"),
        "cd": use_cases.get("cd"),
        "devsecops": use_cases.get("devsecops"),
        "overall_product_usage": scorecard.product_usage,
        "csm_sentiment": scorecard.csm_sentiment,
        "overall_health": scorecard.overall_health,
    }
    return {
        "crm_account_id": crm_account_id,
        "as_of": scorecard.as_of.isoformat() if scorecard.as_of else None,
        "scheme": scorecard.scheme,
        "measures": {key: _api_measure(key, result) for key, result in parts.items()},
        "health_score_value": figure("health_score_value", scorecard.health_score_value),
        "adoption_count": figure("adoption_count", scorecard.adoption_count),
    }
