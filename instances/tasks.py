"""Celery tasks of the instances app: labeling rules and raw-payload retention.

The label-change tasks live beside their service in ``instances.labels``.
"""

from celery import shared_task
from django.db import IntegrityError, OperationalError

from instances.retention import raw_payloads_purge
from instances.rules import labeling_rules_run


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, IntegrityError),
    max_retries=3,
    retry_backoff=True,
)
def run_labeling_rules() -> int:
    return len(labeling_rules_run())


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def purge_raw_payloads() -> int:
    """Drop raw payloads older than RAW_PAYLOAD_RETENTION_DAYS; parsed values stay."""
    return raw_payloads_purge()
