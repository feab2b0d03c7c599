"""The last successful run of each periodic job, for the Prometheus endpoint.

Celery beat marks what it sends (the ``celery_beat_task`` header); when such a task succeeds
in the worker, ``beat_task_succeeded`` (connected to Celery's ``task_success`` in
``ScoringConfig.ready``) records the time against the job's name in ``CELERY_BEAT_SCHEDULE``.
A manual run (``recompute_scores``, an ops "apply now") is not the schedule and is not recorded:
the point is to see the schedule stop.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from scoring.models import JobRun
from usage_portal.celery import task_header

logger = logging.getLogger(__name__)

#: The header celery beat (5.5+) puts on every message it sends.
BEAT_HEADER = "celery_beat_task"


def beat_jobs(task_name: str) -> list[str]:
    """The schedule's entries that run ``task_name``."""
    return [
        name
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if entry.get("task") == task_name
    ]


def job_success_record(task_name: str, *, at: datetime | None = None) -> list[str]:
    """Record a success of every scheduled job running ``task_name``; returns their names."""
    jobs = beat_jobs(task_name)
    for name in jobs:
        JobRun.objects.update_or_create(
            name=name, defaults={"task": task_name, "last_success_at": at or timezone.now()}
        )
    return jobs


def beat_task_succeeded(sender=None, **kwargs) -> None:
    """Celery ``task_success``: the sender is the task, its request the message's context."""
    if sender is None or not task_header(sender.request, BEAT_HEADER):
        return
    try:
        job_success_record(sender.name)
    except DatabaseError as exc:
        # The job did its work; a lost timestamp must not turn it into a failure (the next run
        # records it), and the metric going stale is the alarm.
        logger.warning("could not record the success of %s: %s", sender.name, exc)
