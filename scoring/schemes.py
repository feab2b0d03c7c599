"""Scoring schemes: every threshold, weight and band of the health methodology, as data.

A :class:`Scheme` is the single declarative home of the business rules described in
``docs/methodology.md``. ``scoring.methodology`` only interprets these tables; no threshold
lives anywhere else. Each score records ``Scheme.label`` (``name@version``) so history can be
recomputed under another scheme and the change shown.

Pure core: the standard library and the metric registry (``instances.metrics``) only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from instances import metrics as metric_registry
from instances.metrics import SCAN_METRICS

Color = Literal["Red", "Yellow", "Green", "NA"]
Unit = Literal["fraction", "ratio", "count"]

RED: Final = "Red"
YELLOW: Final = "Yellow"
GREEN: Final = "Green"
NA: Final = "NA"

# Pseudo-metric: the subscriptions' licensed seats (distinct subscriptions), falling back to
# the ping's ``licensed_users``. Resolved by ``scoring.methodology``, not read from a ping.
LICENSED_SEATS: Final = "licensed_seats"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """How a metric is named in NA reasons, and the GitLab release that started sending it."""

    label: str
    since: tuple[int, int] | None = None


#: What the engine knows of each metric it can read: derived from the one metric registry
#: (``instances.metrics``), plus the licensed-seats pseudo-metric.
METRICS: Final[Mapping[str, MetricInfo]] = MappingProxyType(
    {m.name: MetricInfo(m.reason_label, m.since) for m in metric_registry.METRICS}
    | {LICENSED_SEATS: MetricInfo("licensed seats")}
)

# Use cases in display order; the last four are the adoption use cases that roll up measures.
USE_CASE_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "license_utilization": "License Utilization",
        "user_engagement": "User Engagement",
        "scm": "SCM",
        "ci": "CI",
        "cd": "CD",
        "devsecops": "DevSecOps",
    }
)
ADOPTION_USE_CASES: Final = ("scm", "ci", "cd", "devsecops")

OVERALL_GROUP_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "product_usage": "Product usage",
        "csm_sentiment": "CSM sentiment",
        "outcomes": "Outcomes",
        "voice_of_customer": "Voice of customer",
        "engagement": "Engagement",
    }
)


# --------------------------------------------------------------------------- bands


@dataclass(frozen=True, slots=True)
class Band:
    """One colour band: values up to ``upper`` (``None`` = no upper bound).

    Bands are checked in order; a value falls in the first band whose upper bound it is
    below (or equal to, when ``inclusive``). The lower bound is the previous band's upper.
    """

    upper: float | None
    inclusive: bool
    color: Color


def bands(*spec: tuple[float | None, bool, Color]) -> tuple[Band, ...]:
    """Build and validate an ordered band list from ``(upper, inclusive, colour)`` triples."""
    result = tuple(Band(upper, inclusive, color) for upper, inclusive, color in spec)
    if not result or result[-1].upper is not None:
        raise ValueError("the last band must be open-ended (upper=None)")
    uppers = [b.upper for b in result[:-1]]
    if None in uppers or any(a >= b for a, b in zip(uppers, uppers[1:], strict=False)):
        raise ValueError(f"band upper bounds must strictly ascend: {uppers}")
    return result


def classify(value: float, band_list: Sequence[Band]) -> Color:
    """The colour of ``value`` under ``band_list`` (see :class:`Band`)."""
    for band in band_list:
        upper = band.upper
        if upper is None or value < upper or (band.inclusive and value == upper):
            return band.color
    raise ValueError("bands are not open-ended")  # unreachable for bands built by bands()


def _fmt(value: float, unit: Unit) -> str:
    if unit == "fraction":
        return f"{round(value * 100, 6):g}%"
    return f"{value:g}"


def describe_bands(band_list: Sequence[Band], unit: Unit) -> str:
    """Human-readable bands, e.g. ``Red ≤ 10% · Yellow > 10% – ≤ 33% · Green > 33%``."""
    parts = []
    lower: Band | None = None
    for band in band_list:
        bounds = []
        if lower is not None and lower.upper is not None:
            op = ">" if lower.inclusive else "≥"
            bounds.append(f"{op} {_fmt(lower.upper, unit)}")
        if band.upper is not None:
            op = "≤" if band.inclusive else "<"
            bounds.append(f"{op} {_fmt(band.upper, unit)}")
        parts.append(f"{band.color} {' – '.join(bounds)}")
        lower = band
    return " · ".join(parts)


def _merge_same_color(band_list: Sequence[Band]) -> tuple[Band, ...]:
    """Drop a band when the next one has the same colour (it then covers both ranges)."""
    merged = [b for b, nxt in zip(band_list, band_list[1:], strict=False) if b.color != nxt.color]
    return (*merged, band_list[-1])


@dataclass(frozen=True, slots=True)
class AgeColumn:
    """The bands that apply from ``min_age_months`` (inclusive) up to the next column."""

    min_age_months: int
    bands: tuple[Band, ...]
    thresholds: str
    age_text: str


def age_banded(
    columns: Sequence[int],
    rows: Sequence[tuple[float | None, bool, Sequence[Color]]],
    unit: Unit = "fraction",
) -> tuple[AgeColumn, ...]:
    """Turn a handbook-style table (rows = value bands, one colour per age column) into columns.

    ``columns`` are the ages in whole months where each column starts; younger than the first
    column is "too early to score". Each row is ``(upper, inclusive, colours per column)``.
    """
    result = []
    for i, start in enumerate(columns):
        column_bands = _merge_same_color(
            bands(*((upper, inclusive, colors[i]) for upper, inclusive, colors in rows))
        )
        end = columns[i + 1] if i + 1 < len(columns) else None
        age_text = f"{start} ≤ age < {end} months" if end else f"age ≥ {start} months"
        result.append(AgeColumn(start, column_bands, describe_bands(column_bands, unit), age_text))
    return tuple(result)


# --------------------------------------------------------------------------- measures


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """One health measure: ``numerator ÷ denominator`` coloured by ``bands``.

    ``numerator``/``denominator`` are metric names; several names are summed. With
    ``aggregate="count_positive"`` the value is instead the number of numerator metrics whose
    total is ≥ 1 (no denominator). ``age_bands`` replaces ``bands`` for measures coloured by
    account age (License Utilization). ``plans`` (lower-case) restricts the measure to
    companies whose included instances are on one of those plans; ``min_version`` and
    ``saas=False`` restrict it to self-managed instances of at least that version.
    """

    key: str
    use_case: str
    label: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...] = ()
    unit: Unit = "fraction"
    bands: tuple[Band, ...] = ()
    age_bands: tuple[AgeColumn, ...] = ()
    aggregate: Literal["sum", "count_positive"] = "sum"
    plans: frozenset[str] | None = None
    min_version: tuple[int, int] | None = None
    saas: bool = True
    zero_denominator_reason: str | None = None
    thresholds: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if bool(self.bands) == bool(self.age_bands):
            raise ValueError(f"{self.key}: give exactly one of bands or age_bands")
        if (self.aggregate == "sum") != bool(self.denominator):
            raise ValueError(f"{self.key}: a sum needs a denominator, a count has none")
        unknown = set(self.numerator + self.denominator) - METRICS.keys()
        if unknown:
            raise ValueError(f"{self.key}: unknown metrics {sorted(unknown)}")
        if self.bands:
            text = describe_bands(self.bands, self.unit)
        else:
            text = "; ".join(f"{c.age_text}: {c.thresholds}" for c in self.age_bands)
        object.__setattr__(self, "thresholds", text)


def measure(
    key: str,
    use_case: str,
    label: str,
    numerator: str | tuple[str, ...],
    denominator: str | tuple[str, ...] = (),
    **kwargs: object,
) -> MeasureSpec:
    """Shorthand for :class:`MeasureSpec` accepting a single metric name as a string."""
    num = (numerator,) if isinstance(numerator, str) else numerator
    den = (denominator,) if isinstance(denominator, str) else denominator
    return MeasureSpec(key, use_case, label, num, den, **kwargs)


# --------------------------------------------------------------------------- scheme


# GitLab's Customer Health Scoring: 1–5 tickets a month Green, 5–15 Yellow, over 15 Red;
# meetings every 35 days (Prioritization 1) or 65 (Prioritization 2) Green, over 60 / 90 Red.
_VOICE_BANDS = bands((5, True, GREEN), (15, True, YELLOW), (None, False, RED))
_CADENCE = MappingProxyType(
    {
        1: bands((35, True, GREEN), (60, True, YELLOW), (None, False, RED)),
        2: bands((65, True, GREEN), (90, True, YELLOW), (None, False, RED)),
    }
)


@dataclass(frozen=True, slots=True)
class Scheme:
    """A complete, named and versioned set of scoring rules.

    ``score_bands`` colour every 0–100 score (use cases, product usage, overall health).
    Weights need not sum to 100; the methodology renormalises over the parts that have data.
    """

    name: str
    version: str
    description: str
    measures: tuple[MeasureSpec, ...]
    color_points: Mapping[str, int]
    score_bands: tuple[Band, ...]
    product_usage_weights: Mapping[str, float]
    overall_weights: Mapping[str, float]
    sentiment_stale_days: int = 90
    sentiment_na_days: int = 120
    stale_ping_days: int = 60
    #: How account age is counted: "whole_months" (to the day, the handbook) or "month_starts"
    #: (month starts from the customer-since month to the scored one, the dbt model).
    age_basis: Literal["whole_months", "month_starts"] = "whole_months"
    #: Voice of the customer: support tickets in the newest month (fewer is better); NA when
    #: that month ended more than ``voice_na_days`` ago.
    voice_bands: tuple[Band, ...] = field(default_factory=lambda: _VOICE_BANDS)
    voice_na_days: int = 30
    #: Engagement: days since the last meeting, by CSM prioritization, and the personas that
    #: must have been met within ``persona_window_days``; the two parts' weights.
    cadence_bands: Mapping[int, tuple[Band, ...]] = field(default_factory=lambda: _CADENCE)
    personas: tuple[str, ...] = ("Dev Lead", "Security Lead")
    persona_window_days: int = 90
    engagement_weights: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"meeting_cadence": 50, "persona_engagement": 50})
    )
    score_thresholds: str = field(init=False, default="")

    def __post_init__(self) -> None:
        keys = [m.key for m in self.measures]
        if len(keys) != len(set(keys)):
            raise ValueError(f"{self.name}: duplicate measure keys")
        unknown = {m.use_case for m in self.measures} - USE_CASE_LABELS.keys()
        unknown |= set(self.product_usage_weights) - USE_CASE_LABELS.keys()
        unknown |= set(self.overall_weights) - OVERALL_GROUP_LABELS.keys()
        if unknown:
            raise ValueError(f"{self.name}: unknown use cases or groups {sorted(unknown)}")
        object.__setattr__(self, "score_thresholds", describe_bands(self.score_bands, "ratio"))

    # Hash by identity of the rules' name and version: the mappings inside are not hashable.
    def __hash__(self) -> int:
        return hash((self.name, self.version))

    @property
    def label(self) -> str:
        """``name@version``, the identifier recorded with every score."""
        return f"{self.name}@{self.version}"

    def measures_for(self, use_case: str) -> tuple[MeasureSpec, ...]:
        """The measures of one use case, in scheme order."""
        return tuple(m for m in self.measures if m.use_case == use_case)


# --------------------------------------------------------------------------- presets

_COLOR_POINTS = MappingProxyType({RED: 25, YELLOW: 63, GREEN: 88})
_SCORE_BANDS = bands((50, True, RED), (75, True, YELLOW), (None, False, GREEN))
_AGE_COLUMNS = (2, 6, 9)
# The dbt model counts month starts, so its columns begin one month later for the same account.
_DBT_AGE_COLUMNS = (3, 7, 10)


def _lu_table(
    first_row_inclusive: bool, columns: tuple[int, ...] = _AGE_COLUMNS
) -> tuple[AgeColumn, ...]:
    # The handbook table with the dbt model's exact edges: 50% sits in the 10–50% row and
    # 75% in the >50–75% row; whether exactly 10% is in the "< 10%" row differs by source.
    return age_banded(
        columns,
        (
            (0.10, first_row_inclusive, (RED, RED, RED)),
            (0.50, True, (YELLOW, RED, RED)),
            (0.75, True, (GREEN, YELLOW, RED)),
            (None, False, (GREEN, GREEN, GREEN)),
        ),
    )


def _license_utilization(
    first_row_inclusive: bool, columns: tuple[int, ...] = _AGE_COLUMNS
) -> MeasureSpec:
    return measure(
        "license_utilization",
        "license_utilization",
        "License utilization",
        "billable_users",
        LICENSED_SEATS,
        age_bands=_lu_table(first_row_inclusive, columns),
    )


def _git_operations(band_list: tuple[Band, ...]) -> MeasureSpec:
    # The presets agree on what SCM measures and differ on its bands.
    return measure(
        "scm_git_operations",
        "scm",
        "Git operation utilization",
        "git_operation_users",
        "billable_users",
        bands=band_list,
    )


_USER_ENGAGEMENT = measure(
    "user_engagement",
    "user_engagement",
    "Unique active users",
    "unique_active_users",
    "billable_users",
    bands=bands((0.50, False, RED), (0.80, False, YELLOW), (None, False, GREEN)),
    min_version=(15, 2),
    saas=False,
)

_CI_BUILDS_PER_USER = measure(
    "ci_builds_per_user",
    "ci",
    "CI builds per user",
    "ci_builds_l28",
    "billable_users",
    unit="ratio",
    bands=bands((2, True, RED), (40, True, YELLOW), (None, False, GREEN)),
)

_CD_AND_DEVSECOPS = (
    measure(
        "cd_deployment_users",
        "cd",
        "Deployment users",
        "deployment_users",
        "billable_users",
        bands=bands((0.05, False, RED), (0.12, True, YELLOW), (None, False, GREEN)),
    ),
    measure(
        "cd_deployments_per_user",
        "cd",
        "Deployments per user",
        "deployments_l28",
        "billable_users",
        unit="ratio",
        bands=bands((2, False, RED), (7, True, YELLOW), (None, False, GREEN)),
    ),
    measure(
        "cd_deployment_success",
        "cd",
        "Deployment success",
        "successful_deployments_l28",
        ("successful_deployments_l28", "failed_deployments_l28"),
        bands=bands((0.25, False, RED), (0.80, True, YELLOW), (None, False, GREEN)),
        zero_denominator_reason="no deployments in the last 28 days",
    ),
    measure(
        "devsecops_scanner_users",
        "devsecops",
        "Scanner utilization",
        "secure_scanner_users",
        "billable_users",
        bands=bands((0.05, True, RED), (0.20, False, YELLOW), (None, False, GREEN)),
        plans=frozenset({"ultimate"}),
    ),
    measure(
        "devsecops_scans_per_pipeline",
        "devsecops",
        "Scans per pipeline",
        SCAN_METRICS,
        "ci_internal_pipelines_l28",
        unit="ratio",
        bands=bands((0.1, False, RED), (0.5, True, YELLOW), (None, False, GREEN)),
        plans=frozenset({"ultimate"}),
        zero_denominator_reason="no internal pipelines in the last 28 days",
    ),
    measure(
        "devsecops_scanners_in_use",
        "devsecops",
        "Scanners in use",
        SCAN_METRICS,
        unit="count",
        aggregate="count_positive",
        bands=bands((1, True, RED), (2, True, YELLOW), (None, False, GREEN)),
        plans=frozenset({"ultimate"}),
    ),
)

_OVERALL_WEIGHTS = MappingProxyType(
    {
        "product_usage": 50,
        "csm_sentiment": 25,
        "outcomes": 10,
        "voice_of_customer": 5,
        "engagement": 10,
    }
)
_PRODUCT_USAGE_WEIGHTS = MappingProxyType(
    {
        "license_utilization": 30,
        "user_engagement": 10,
        "scm": 15,
        "ci": 15,
        "cd": 15,
        "devsecops": 15,
    }
)

# Version 2 (all presets): User Engagement reads unique_active_users; CI builds prefer the
# handbook's key; only active subscriptions count; the first 30 days are NA; failure values
# and unsent keys say so; DevSecOps over Ultimate instances only; unknown scan counts are not
# in use; sentiment counts on CSM-owned accounts only; the dbt preset counts age the dbt way.
HANDBOOK_2025 = Scheme(
    name="gitlab-handbook-2025",
    version="2",
    description=(
        "GitLab handbook 'Health Scoring – Calculations and Methodology' (2025-05-29), with the "
        "dbt model's exact License Utilization boundaries."
    ),
    measures=(
        _license_utilization(first_row_inclusive=False),
        _USER_ENGAGEMENT,
        _git_operations(bands((0.10, True, RED), (0.33, True, YELLOW), (None, False, GREEN))),
        _CI_BUILDS_PER_USER,
        *_CD_AND_DEVSECOPS,
    ),
    color_points=_COLOR_POINTS,
    score_bands=_SCORE_BANDS,
    product_usage_weights=_PRODUCT_USAGE_WEIGHTS,
    overall_weights=_OVERALL_WEIGHTS,
)

DBT_2024 = dataclasses.replace(
    HANDBOOK_2025,
    name="gitlab-dbt-2024",
    description=(
        "GitLab data team's dbt model rpt_product_usage_health_score.sql (2024): SCM 25%/50%, "
        "CI as pipeline users ÷ billable users, exactly 10% License Utilization is Red, "
        "account age in month starts with the columns at 3, 7 and 10."
    ),
    age_basis="month_starts",
    measures=(
        _license_utilization(first_row_inclusive=True, columns=_DBT_AGE_COLUMNS),
        _USER_ENGAGEMENT,
        _git_operations(bands((0.25, False, RED), (0.50, False, YELLOW), (None, False, GREEN))),
        measure(
            "ci_pipeline_users",
            "ci",
            "Pipeline users",
            "pipeline_users",
            "billable_users",
            bands=bands((0.10, True, RED), (0.333, True, YELLOW), (None, False, GREEN)),
        ),
        *_CD_AND_DEVSECOPS,
    ),
)

HANDBOOK_LEGACY = dataclasses.replace(
    HANDBOOK_2025,
    name="gitlab-handbook-legacy",
    description=(
        "Older handbook weighting: product usage 25% of overall health with License "
        "Utilization 40% inside it, CSM sentiment 50%. The older page gives no other weights; "
        "these keep the 2025 ones for the rest (use cases 15% each, no User Engagement, "
        "outcomes 10%, voice of customer 5%, engagement 10%)."
    ),
    product_usage_weights=MappingProxyType(
        {
            "license_utilization": 40,
            "user_engagement": 0,
            "scm": 15,
            "ci": 15,
            "cd": 15,
            "devsecops": 15,
        }
    ),
    overall_weights=MappingProxyType(
        {
            "product_usage": 25,
            "csm_sentiment": 50,
            "outcomes": 10,
            "voice_of_customer": 5,
            "engagement": 10,
        }
    ),
)

PRESETS: Final[dict[str, Scheme]] = {s.name: s for s in (HANDBOOK_2025, DBT_2024, HANDBOOK_LEGACY)}
DEFAULT_SCHEME: Final = HANDBOOK_2025.name


def get_scheme(name: str) -> Scheme:
    """The preset called ``name`` (a bare name, or a ``name@version`` label of a preset).

    Raises ``KeyError`` naming the valid presets when there is none.
    """
    scheme = PRESETS.get(name.partition("@")[0])
    if scheme is None or ("@" in name and name != scheme.label):
        raise KeyError(f"unknown scoring scheme {name!r}; valid: {', '.join(sorted(PRESETS))}")
    return scheme
