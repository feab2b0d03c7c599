"""Scoring's Celery tasks: thin shells that take ids, call a service, and can run twice safely."""

from datetime import date, timedelta

from celery import shared_task

from scoring import alerts, exports, services

# Backoff 1, 2, 4 … 120 s: eight tries span about four minutes, past a database restart or
# fail-over (three tries gave up after 7 s); what outlasts them the refresh sweep picks up.
RETRY = {
    "autoretry_for": services.RETRYABLE_ERRORS,
    "max_retries": 8,
    "retry_backoff": True,
    "retry_backoff_max": 120,
}


@shared_task(acks_late=True, **RETRY)
def refresh_companies(
    company_ids: list[int], reason: str = "", since: str | None = None, history: bool = True
) -> int:
    """Recompute scores for these companies (queued by ``scoring.listeners`` after a change).

    ``history``: rescore monthly history too, from ``since``'s month on (ISO date; all of it
    when absent). Messages queued before ``history`` existed rebuild history, as they did.
    """
    return services.companies_refresh(
        company_ids=company_ids,
        reason=reason,
        history=history,
        since=date.fromisoformat(since) if since else None,
    )


@shared_task(acks_late=True, **RETRY)
def recompute_all(reason: str = "scheduled", history: bool = False) -> int:
    # A release that changed the rules rebuilds everything once (the daily run catches it).
    if services.scheme_version_sync() is not None:
        return 0
    return services.companies_recompute_all(reason=reason, history=history)


@shared_task(acks_late=True, **RETRY)
def scheme_version_sync() -> bool:
    """Queued when a worker starts: scores of an older rule version are rebuilt at once."""
    return services.scheme_version_sync() is not None


@shared_task(acks_late=True, **RETRY)
def export_instance_types() -> str:
    return str(exports.instance_types_export_write())


@shared_task(acks_late=True, **RETRY)
def send_drop_digests() -> int:
    """Each CSM's new health drops by e-mail; a rerun the same day sends nothing again."""
    return alerts.drop_digests_send()


@shared_task(acks_late=True, **RETRY)
def refresh_sweep(older_than_seconds: int = 120) -> int:
    """Beat, every minute: accounts whose refresh was lost on the way (see the service)."""
    return services.pending_refreshes_drain(older_than=timedelta(seconds=older_than_seconds))
