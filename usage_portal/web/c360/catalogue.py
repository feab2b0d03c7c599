"""The reports of the Account C360 charts: what each one charts, and which scorecard parts it reads.

``ADOPTION_REPORTS`` (User Adoption Metrics: a ratio by month) and ``TREND_REPORTS`` (Product
Usage Trends: metrics by month, with the use case's score) are definitions only: adding a
report is adding an entry here. ``*_card_paths`` say which parts of each month's stored
scorecard a report needs, so that the query reads only those out of the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from instances.metrics import SCAN_METRICS
from scoring.schemes import PRESETS, MeasureSpec, Scheme

# --------------------------------------------------------------------------------------------------
# User Adoption Metrics


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


#: What every history chart reads of a month's scorecard: which instances it scored, and why not.
HISTORY_CARD_PATHS = ("instance_ids", "product_usage.reason")


def ratio_card_paths(report: RatioReport) -> tuple[str, ...]:
    """The scorecard parts ``ratio_rows`` and ``empty_reason`` read, for any preset's measure."""
    keys = sorted(
        {spec.key for scheme in PRESETS.values() if (spec := matching_measure(scheme, report))}
    )
    return (*HISTORY_CARD_PATHS, *(f"measures.{key}" for key in keys))


# --------------------------------------------------------------------------------------------------
# Product Usage Trends


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


def trend_card_paths(report: TrendReport) -> tuple[str, ...]:
    """The scorecard parts a Product Usage Trends report reads."""
    paths = list(HISTORY_CARD_PATHS)
    if report.key == "license":
        paths.append("measures.license_utilization")
    if report.use_case:
        paths.append(f"use_cases.{report.use_case}")
    return tuple(paths)


# --------------------------------------------------------------------------------------------------
# NOT Production Instance Usage (a report of the trends section)

NOT_PRODUCTION = "not_production"
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
