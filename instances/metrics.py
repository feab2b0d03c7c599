"""The one table of Service Ping metrics Usage Portal reads.

Each `Metric` maps a meaning (its `name`, also the column name on the ping model) to the payload key
paths that carry it, in fallback order: the parser takes the first path present in a payload, and a
metric is NULL when no path is present. The same table feeds the metrics dictionary page.

Sources: GitLab's Service Ping docs and metric definitions, summarised in
`docs/service-ping.md`. Which measures read a metric is the schemes' business
(`scoring/schemes.py`), not this table's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from instances.versions import Release, release

TimeFrame = Literal["28d", "all", "none"]

# GitLab's "unknown" values: -1 timeout/failure, -2 counter error, -3 SQL metric left out of a
# non-SQL export, -1000 deprecated metric. They must never be stored as numbers.
SENTINELS: frozenset[int] = frozenset({-1, -2, -3, -1000})

# Shown where GitLab's docs state no version for a key path.
UNKNOWN_VERSION = "—"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: where it lives in a payload and what it means.

    `key_paths` are dotted paths tried in order (first present wins). `time_frame` is "28d" (30 to 2
    days before recording), "all" (all time) or "none" (a setting or identity figure). `introduced`
    is the GitLab version that first sent the key ("< 13.9" when older than the docs go back,
    `UNKNOWN_VERSION` when undocumented).
    """

    name: str
    label: str
    #: How NA reasons name it ("billable users not reported before 14.0").
    reason_label: str
    description: str
    key_paths: tuple[str, ...]
    time_frame: TimeFrame
    introduced: str

    @property
    def since(self) -> Release | None:
        """The release that first sent the key, when the docs state one (``introduced``)."""
        return release(self.introduced)


# (key, label on pages, name in NA reasons)
_SCAN_TYPES: tuple[tuple[str, str, str], ...] = (
    ("sast", "SAST", "SAST"),
    ("dast", "DAST", "DAST"),
    ("dependency_scanning", "Dependency Scanning", "dependency scanning"),
    ("container_scanning", "Container Scanning", "container scanning"),
    ("secret_detection", "Secret Detection", "secret detection"),
    ("coverage_fuzzing", "Coverage Fuzzing", "coverage fuzzing"),
    ("api_fuzzing", "API Fuzzing", "API fuzzing"),
)

_SCAN_METRICS: tuple[Metric, ...] = tuple(
    Metric(
        name=f"{scan}_scans_l28",
        label=f"{label} scans (L28)",
        reason_label=f"{reason} scans (L28)",
        description=f"{label} scans run in the last 28 days.",
        key_paths=(f"usage_activity_by_stage_monthly.secure.{scan}_scans",),
        time_frame="28d",
        introduced=UNKNOWN_VERSION,
    )
    for scan, label, reason in _SCAN_TYPES
)

METRICS: tuple[Metric, ...] = (
    Metric(
        name="billable_users",
        label="Billable users",
        reason_label="billable users",
        description=(
            "Users who count against the license (active, non-bot, excluding guests on Ultimate). "
            "Not reported before GitLab 14.0."
        ),
        key_paths=("license_billable_users",),
        time_frame="all",
        introduced="14.0",
    ),
    Metric(
        name="licensed_users",
        label="Licensed seats (ping)",
        reason_label="licensed users",
        description=(
            "Seats on the license installed on the instance; the fallback when the subscription's "
            "licensed seats are unknown."
        ),
        key_paths=("license_user_count",),
        time_frame="none",
        introduced="< 13.9",
    ),
    Metric(
        name="active_users",
        label="Active users",
        reason_label="active users",
        description="Users in the active state, bots excluded.",
        key_paths=("active_user_count",),
        time_frame="none",
        introduced="< 13.9",
    ),
    Metric(
        name="historical_max_users",
        label="Historical max users",
        reason_label="historical max users",
        description=(
            "Highest number of billable users the instance has had during the license term."
        ),
        key_paths=("historical_max_users",),
        time_frame="none",
        introduced="< 13.9",
    ),
    Metric(
        name="unique_active_users",
        label="Unique active users",
        reason_label="unique active users",
        description=(
            "Distinct users active on the instance in the last 28 days (GitLab's metric "
            "20220621085114_unique_active_users_monthly): the numerator of User Engagement."
        ),
        key_paths=("redis_hll_counters.manage.unique_active_users_monthly",),
        time_frame="28d",
        introduced="15.2",
    ),
    Metric(
        name="umau",
        label="Unique monthly active users (UMAU)",
        reason_label="UMAU",
        description=(
            "Distinct users who generated a manage event in the last 28 days. Read by the "
            "labeling rule and the adoption charts; User Engagement reads unique active users."
        ),
        key_paths=("usage_activity_by_stage_monthly.manage.events",),
        time_frame="28d",
        introduced="< 13.9",
    ),
    Metric(
        name="git_operation_users",
        label="Git-operation users",
        reason_label="git-operation users",
        description="Distinct users who performed a Git read, write or push in the last 28 days.",
        key_paths=(
            "usage_activity_by_stage_monthly.create.action_monthly_active_users_project_repo",
        ),
        time_frame="28d",
        introduced="< 13.9",
    ),
    Metric(
        name="pipeline_users",
        label="Pipeline users",
        reason_label="pipeline users",
        description="Distinct users who triggered a CI pipeline in the last 28 days.",
        key_paths=("usage_activity_by_stage_monthly.verify.ci_pipelines",),
        time_frame="28d",
        introduced="12.9",
    ),
    Metric(
        name="ci_build_users",
        label="CI build users",
        reason_label="CI build users",
        description="Distinct users who ran a CI build in the last 28 days.",
        key_paths=("usage_activity_by_stage_monthly.verify.ci_builds",),
        time_frame="28d",
        introduced="12.9",
    ),
    Metric(
        name="ci_builds_l28",
        label="CI builds (L28)",
        reason_label="CI builds (L28)",
        description=(
            "CI builds created in the last 28 days: the handbook's "
            "counts.count_total_create_ci_build_monthly, else counts_monthly.ci_builds."
        ),
        key_paths=("counts.count_total_create_ci_build_monthly", "counts_monthly.ci_builds"),
        time_frame="28d",
        introduced=UNKNOWN_VERSION,
    ),
    Metric(
        name="ci_internal_pipelines_l28",
        label="Internal pipelines (L28)",
        reason_label="internal pipelines (L28)",
        description="Pipelines run from GitLab repositories in the last 28 days.",
        key_paths=("counts_monthly.ci_internal_pipelines",),
        time_frame="28d",
        introduced="15.10",
    ),
    Metric(
        name="deployments_l28",
        label="Deployments (L28)",
        reason_label="deployments (L28)",
        description="Deployments created in the last 28 days.",
        key_paths=("counts_monthly.deployments",),
        time_frame="28d",
        introduced="13.2",
    ),
    Metric(
        name="successful_deployments_l28",
        label="Successful deployments (L28)",
        reason_label="successful deployments (L28)",
        description="Deployments that succeeded in the last 28 days.",
        key_paths=("counts_monthly.successful_deployments",),
        time_frame="28d",
        introduced=UNKNOWN_VERSION,
    ),
    Metric(
        name="failed_deployments_l28",
        label="Failed deployments (L28)",
        reason_label="failed deployments (L28)",
        description="Deployments that failed in the last 28 days.",
        key_paths=("counts_monthly.failed_deployments",),
        time_frame="28d",
        introduced=UNKNOWN_VERSION,
    ),
    Metric(
        name="deployment_users",
        label="Deployment users",
        reason_label="deployment users",
        description="Distinct users who triggered a deployment in the last 28 days.",
        key_paths=("usage_activity_by_stage_monthly.release.deployments",),
        time_frame="28d",
        introduced="< 13.9",
    ),
    Metric(
        name="secure_scanner_users",
        label="Secure-scanner users",
        reason_label="secure-scanner users",
        description="Distinct users who ran any security scanner in the last 28 days.",
        key_paths=("usage_activity_by_stage_monthly.secure.user_unique_users_all_secure_scanners",),
        time_frame="28d",
        introduced="13.2",
    ),
    *_SCAN_METRICS,
    Metric(
        name="merge_requests_all",
        label="Merge requests (all time)",
        reason_label="merge requests (all time)",
        description="Merge requests ever created on the instance.",
        key_paths=("counts.merge_requests",),
        time_frame="all",
        introduced="< 13.9",
    ),
    Metric(
        name="ci_internal_pipelines_all",
        label="Internal pipelines (all time)",
        reason_label="internal pipelines (all time)",
        description="Pipelines ever run from GitLab repositories.",
        key_paths=("counts.ci_internal_pipelines",),
        time_frame="all",
        introduced="< 13.9",
    ),
    Metric(
        name="ci_external_pipelines_all",
        label="External pipelines (all time)",
        reason_label="external pipelines (all time)",
        description="Pipelines ever run for external repositories (CI/CD for external repos).",
        key_paths=("counts.ci_external_pipelines",),
        time_frame="all",
        introduced="< 13.9",
    ),
)

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

SEAT_METRICS: tuple[str, ...] = (
    "billable_users",
    "licensed_users",
    "active_users",
    "historical_max_users",
)
SCAN_METRICS: tuple[str, ...] = tuple(m.name for m in _SCAN_METRICS)

#: The column beside the metric columns that names the metrics a ping reported a failure value
#: for (comma-separated, sorted): NULL alone cannot tell "failed" from "not sent".
FAILED_FIELD = "failed_metrics"


def failed_text(names: Iterable[str]) -> str:
    """How ``FAILED_FIELD`` stores a set of metric names."""
    return ",".join(sorted(names))


def failed_names(text: str | None) -> frozenset[str]:
    """The metric names ``FAILED_FIELD`` holds."""
    return frozenset(text.split(",")) if text else frozenset()
