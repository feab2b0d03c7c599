"""Celery tasks: thin shells that take ids, load, call a service, and can run twice safely."""

from datetime import date

from celery import shared_task

from instances.labels import label_change_apply, label_changes_apply_due
from instances.rules import labeling_rules_run

from . import services

RETRY = {"autoretry_for": services.RETRYABLE_ERRORS, "max_retries": 3, "retry_backoff": True}


@shared_task(acks_late=True, **RETRY)
def refresh_companies(company_ids: list[int], reason: str = "", since: str | None = None) -> int:
    """Recompute scores for these companies (after new pings, label or sentiment changes).

    ``since`` (ISO date): monthly history before that date's month is left as it is.
    """
    return services.companies_refresh(
        company_ids=company_ids,
        reason=reason,
        since=date.fromisoformat(since) if since else None,
    )


@shared_task(acks_late=True, **RETRY)
def recompute_all(reason: str = "scheduled", history: bool = False) -> int:
    return services.companies_recompute_all(reason=reason, history=history)


@shared_task(acks_late=True, **RETRY)
def apply_label_change(change_id: int) -> bool:
    """Scheduled for the change's effective time; a no-op if it was superseded or applied."""
    return label_change_apply(change_id=change_id, via="schedule")


@shared_task(acks_late=True, **RETRY)
def apply_due_label_changes() -> int:
    """The beat sweep: anything due that a lost or late task did not apply."""
    return label_changes_apply_due()


@shared_task(acks_late=True, **RETRY)
def run_labeling_rules() -> int:
    return len(labeling_rules_run())


@shared_task(acks_late=True, **RETRY)
def export_instance_types() -> str:
    from .exports import instance_types_export_write

    return str(instance_types_export_write())
