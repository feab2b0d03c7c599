"""Why a C360 chart is empty: the engine's NA reason, and what the handbook's FAQ says to do.

The hints are matched on the words of the scoring engine's NA reasons (``scoring.methodology``)
and written for a CSM: what the reason means for the customer and what to check. Numbers that
are settings (the stale limit) are formatted in, never written here.
"""

from __future__ import annotations

from collections.abc import Iterable

from usage_portal.web.c360.selectors import MONTHS_SHOWN, MonthlyHistory

FAQ_HINTS: tuple[tuple[str, str], ...] = (  # the first whose words the reason holds wins
    (
        "on an active subscription",
        "Usage counts only while it is tied to an active subscription, and every production "
        "instance's subscription has ended or not started yet: check its dates in the CRM "
        "(renewals map to a new subscription).",
    ),
    (
        "first 30 days",
        "GitLab leaves every product measure empty for an account's first 30 days; scores "
        "start once the account is a month old. CSM sentiment counts from day one.",
    ),
    (
        "failure value",
        "The instance sent one of GitLab's failure values (-1, -2, -3, -1000) for this metric: "
        "it could not compute it. The instance's Service Ping error reports, under Data "
        "quality, usually say why; a timeout on a large instance is the common cause.",
    ),
    (
        "no Production instance",
        "None of this account's instances is labeled Production, or every one is Opt-Out. Label "
        "the production instance under Instance and Namespace Details (⋮ → Edit); other instance "
        "types appear only in the NOT Production Instance Usage report.",
    ),
    (
        "billable users not available before 14.0",
        "Billable users were instrumented in GitLab 14.0: on older versions billable users, "
        "License Utilization and every ratio over billable users are NULL until the instance "
        "is upgraded.",
    ),
    (
        "no data for",
        "The production instance has sent no usage ping for {stale_days} days: Service Ping may "
        "have been turned off or blocked. Air-gapped instances can upload payloads by hand.",
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


def explain_reason(reason: str | None, *, stale_days: int) -> str:
    """An engine NA reason followed by what the handbook's FAQ says to do about it.

    ``stale_days`` is the active scheme's stale limit (``scoring.services.stale_ping_days``).
    """
    if not reason:
        return "No data to chart for these months."
    hint = next((text for key, text in FAQ_HINTS if key in reason), "")
    hint = hint.format(stale_days=stale_days)
    first = reason[0].upper() + reason[1:]
    return f"{first}. {hint}".strip()


def empty_reason(
    history: MonthlyHistory, *, stale_days: int, reasons: Iterable[str | None] = ()
) -> str:
    """Why a chart has nothing to draw: no months at all, or the engine's latest NA reason."""
    if not history.months:
        return NO_HISTORY.format(months=MONTHS_SHOWN)
    known = [r for r in reasons if r]
    if known:
        return explain_reason(known[-1], stale_days=stale_days)
    latest = history.card(history.months[-1])
    return explain_reason(latest.get("product_usage", {}).get("reason"), stale_days=stale_days)
