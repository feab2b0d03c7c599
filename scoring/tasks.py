"""Scoring's Celery tasks: thin shells that take ids, call a service, and can run twice safely."""

import logging
from datetime import date, timedelta

from celery import Task, group, shared_task
from django.db import DatabaseError, transaction
from django.utils import timezone

from scoring import alerts, exports, services
from scoring.models import RecomputeRun
from usage_portal.celery import BROKER_ERRORS

logger = logging.getLogger(__name__)

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
    company_ids: list[int],
    reason: str = "",
    since: str | None = None,
    history: bool = True,
    only_pending: bool = False,
) -> int:
    """Recompute scores for these companies (queued by ``scoring.listeners`` after a change).

    ``history``: rescore monthly history too, from ``since``'s month on (ISO date; all of it
    when absent). Messages queued before ``history`` existed rebuild history, as they did.
    ``only_pending``: skip what an earlier run already brought up to date (coalescing).
    """
    return services.companies_refresh(
        company_ids=company_ids,
        reason=reason,
        history=history,
        since=date.fromisoformat(since) if since else None,
        only_pending=only_pending,
    )


@shared_task(acks_late=True, **RETRY)
def recompute_all(reason: str = "scheduled", history: bool = False) -> int:
    """Beat, daily: every company, fanned out as one ``recompute_chunk`` task per chunk.

    Returns the companies planned; the chunks complete in ``RecomputeRun``. Delivered twice (a
    worker killed after publishing), it plans a second run, whose chunks find the first one's
    scores current and write nothing.
    """
    # A release that changed the rules rebuilds everything once (the daily run catches it).
    if services.scheme_version_sync() is not None:
        return 0
    return recompute_fan_out(reason=reason, history=history).companies


@shared_task(acks_late=True, **RETRY)
def recompute_chunk(
    company_ids: list[int],
    reason: str = "recompute",
    history: bool = False,
    as_of: str | None = None,
    run_id: int | None = None,
    index: int | None = None,
    changed: bool = False,
) -> int:
    """One chunk of a fanned-out full recompute (routed to the ``recompute`` queue).

    Scores at most ``FAN_OUT_SCORE`` changed accounts and queues the chunk's other changed ones
    (``changed``) as a task of their own, behind what was queued meanwhile: each task stays
    short, so the refresh queue is served within a second. Safe to run twice: the second run
    finds the hashes current and writes nothing, and the chunk is stamped done once, by the
    task that leaves nothing. ``as_of``: the run's scoring date (ISO), the same for every chunk
    however late one runs.
    """
    written, rest = services.recompute_chunk(
        company_ids,
        reason=reason,
        history=history,
        as_of=date.fromisoformat(as_of) if as_of else timezone.now().date(),
        limit=services.FAN_OUT_SCORE,
        changed=changed,
        run=(run_id, index) if run_id is not None else None,
    )
    if rest:
        recompute_chunk.apply_async(
            (rest, reason, history, as_of, run_id, index), {"changed": True}
        )
    return written


def recompute_fan_out(
    *, reason: str, history: bool = False, size: int | None = None
) -> RecomputeRun:
    """Plan the full recompute and publish its chunk tasks, once the plan is committed.

    A plain group, no chord: the chord's callback would need a result backend, which the
    portal does not run (``CELERY_RESULT_BACKEND = None``); each chunk stamps its own row in
    the run instead, and whoever needs to know (``recompute_scores --all --fan-out``) waits on
    ``RecomputeRun.finished_at``.
    """
    run, chunks = services.recompute_plan(reason=reason, history=history, size=size)
    as_of = run.as_of.isoformat()
    chunk_tasks = group(
        recompute_chunk.si(ids, reason, history, as_of, run.pk, index)
        for index, ids in enumerate(chunks)
    )
    if chunks:
        # After the commit: a chunk must find its run's rows to stamp them.
        transaction.on_commit(chunk_tasks.apply_async)
    return run


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
    """Beat, every minute: accounts whose refresh was lost on the way (see the service), and
    admin jobs whose task was lost (published again, first; a worker runs them, not this)."""
    for job_id in services.admin_jobs_lost(older_than=timedelta(seconds=older_than_seconds)):
        admin_job_publish(job_id)
    return services.pending_refreshes_drain(older_than=timedelta(seconds=older_than_seconds))


class AdminJobTask(Task):
    """A job whose retries are spent says so on its progress page instead of staying "running"
    (the service marks the errors it does not retry itself)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = kwargs.get("job_id", args[0] if args else None)
        try:
            services.admin_job_fail(job_id, run_id=task_id, error=f"{type(exc).__name__}: {exc}")
        except DatabaseError:
            # The database is away: the job stays running, and the sweep queues it again once
            # its progress is stale.
            logger.warning("could not mark admin job %s failed", job_id, exc_info=True)


@shared_task(bind=True, base=AdminJobTask, acks_late=True, **RETRY)
def run_admin_job(self, job_id: int) -> str:
    """A long admin action (``AdminJob``): safe to deliver twice, or again after a kill."""
    return services.admin_job_run(job_id, run_id=self.request.id, retry=bool(self.request.retries))


def admin_job_publish(job_id: int) -> bool:
    """Queue the job's run, best-effort: with the broker down the job waits, queued in the
    database, for the sweep to publish it again."""
    try:
        run_admin_job.delay(job_id)
    except BROKER_ERRORS:
        logger.warning(
            "could not queue admin job %s; the sweep will publish it again", job_id, exc_info=True
        )
        return False
    return True


def admin_job_queue(job_id: int) -> None:
    """Publish the job's run once the transaction that recorded it commits (never before: a
    worker must find the row, and a rolled-back request queues nothing)."""
    transaction.on_commit(lambda: admin_job_publish(job_id))
