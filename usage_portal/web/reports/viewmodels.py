"""What the report pages show, worked out in Python from selector rows and the active scheme.

``no_usage_reason`` explains an ``accounts_without_usage()`` row (the seed's FAQ, in order);
``metric_rows`` and ``use_case_rows`` lay out the metrics dictionary. No queries here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from instances.metrics import METRICS, Metric
from instances.versions import release_label
from scoring.schemes import (
    ADOPTION_USE_CASES,
    LICENSED_SEATS,
    OVERALL_GROUP_LABELS,
    USE_CASE_LABELS,
    Scheme,
)
from scoring.services import stale_ping_days
from usage_portal.web.timezones import day_of

# --------------------------------------------------------------------------------------------------
# Why an account has no usage data


@dataclass(frozen=True)
class NoUsageReason:
    code: str
    title: str
    detail: str
    action: str
    link: str = ""  # a URL name taking the account id


def no_usage_reason(account) -> NoUsageReason:
    """Why an account from ``accounts_without_usage()`` has no usage data (the seed's FAQ)."""
    days = stale_ping_days()
    if account.has_saas_subscription and not account.n_saas:
        return NoUsageReason(
            "saas_namespace",
            "SaaS namespace not tied to a subscription",
            "The account has a SaaS subscription but no namespace reports for it.",
            "Ask the customer to link their namespace to the subscription in the Customers "
            "Portal, or open an internal support ticket.",
        )
    if not account.n_instances:
        return NoUsageReason(
            "no_pings",
            "No pings at all",
            "No instance has ever sent Service Ping for this account: Service Ping may be off, "
            "the instance air-gapped, or its license not mapped (see unmapped licenses above).",
            "Confirm Service Ping is on, or upload a downloaded payload.",
        )
    # ``n_included`` is the engine's rule (a never-labeled SaaS namespace counts as Production);
    # ``n_production`` counts instances labeled Production, to tell the two cases apart.
    if not account.n_included and not account.n_production:
        return NoUsageReason(
            "no_production",
            "No Production instance labeled",
            f"{account.n_instances} instance(s), none labeled Production.",
            "Label the Production instance",
            "account_instances",
        )
    if not account.n_included:
        return NoUsageReason(
            "opted_out",
            "Every Production instance is opted out",
            "Production instances are set to Opt-Out of health measures.",
            "Include one instance in health measures",
            "account_instances",
        )
    if not account.n_fresh:
        last = day_of(account.last_ping_at).isoformat() if account.last_ping_at else "never"
        return NoUsageReason(
            "stale",
            "All instances stale",
            f"No Production instance has pinged in {days} days (last ping from any: {last}).",
            "Check with the customer that Service Ping still reaches GitLab",
            "account_instances",
        )
    if account.oldest_fresh_version is not None and account.oldest_fresh_version < 14_000_000:
        version = release_label(divmod(account.oldest_fresh_version // 1000, 1000))
        return NoUsageReason(
            "version_too_old",
            "Version too old for billable users",
            f"The Production instance runs GitLab {version}; billable users are reported "
            "from 14.0, so License Utilization and the ratios cannot be computed.",
            "Help the customer upgrade",
            "account_instances",
        )
    # SQLite reads a JSON null as the text "null".
    reasons = (r for r in (account.lu_reason, account.usage_reason) if r and r != "null")
    detail = next(reasons, "the scorecard has not been computed")
    return NoUsageReason(
        "other",
        "Not measurable",
        f"Scorecard: {detail}.",
        "Open the scorecard",
        "account_scorecard",
    )


def explain_once(explain: Callable[[object], NoUsageReason]) -> Callable[[object], NoUsageReason]:
    """``explain`` each record once, however many columns ask."""
    memo: dict[int, NoUsageReason] = {}

    def wrapper(record):
        if record.pk not in memo:
            memo[record.pk] = explain(record)
        return memo[record.pk]

    return wrapper


# --------------------------------------------------------------------------------------------------
# Metrics dictionary

TIME_FRAMES = {
    "28d": (
        "Last 28 days",
        "Counted over the 28 days before the ping (GitLab's window runs from 30 to 2 days "
        "before it is recorded). A month's figure is the month's last ping.",
    ),
    "all": ("All time", "Cumulative since the instance was installed."),
    "none": ("Point in time", "A setting or a current count, not a period."),
}


@dataclass(frozen=True)
class MetricRow:
    metric: Metric
    time_frame: tuple[str, str]
    measures: tuple  # MeasureSpecs of the active scheme that read the metric
    use_cases: tuple[str, ...]


def _reads(spec, name: str) -> bool:
    metrics = spec.numerator + spec.denominator
    # Licensed seats come from the subscription and fall back to the ping's licensed users.
    return name in metrics or (name == "licensed_users" and LICENSED_SEATS in metrics)


def metric_rows(scheme: Scheme) -> list[MetricRow]:
    """One row per metric: its time frame, the scheme's measures that read it, and their use
    cases (from the scheme, so the page says what the active scheme really reads)."""
    rows = []
    for metric in METRICS:
        measures = tuple(spec for spec in scheme.measures if _reads(spec, metric.name))
        read_by = {spec.use_case for spec in measures}
        rows.append(
            MetricRow(
                metric=metric,
                time_frame=TIME_FRAMES[metric.time_frame],
                measures=measures,
                use_cases=tuple(label for key, label in USE_CASE_LABELS.items() if key in read_by),
            )
        )
    return rows


def use_case_rows(scheme: Scheme) -> list[dict]:
    """Each use case with its measures, its weight in product usage, and whether it rolls up."""
    return [
        {
            "key": key,
            "label": label,
            "measures": scheme.measures_for(key),
            "weight": scheme.product_usage_weights.get(key, 0),
            "rolls_up": key in ADOPTION_USE_CASES,
        }
        for key, label in USE_CASE_LABELS.items()
    ]


def overall_weights(scheme: Scheme) -> list[tuple[str, float]]:
    """(group label, weight) of the overall health score, in the scheme's order."""
    return [(OVERALL_GROUP_LABELS[key], weight) for key, weight in scheme.overall_weights.items()]
