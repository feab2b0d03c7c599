"""Celery tasks for ingestion housekeeping."""

from celery import shared_task
from django.db import OperationalError


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def purge_raw_payloads() -> int:
    """Drop raw payloads older than RAW_PAYLOAD_RETENTION_DAYS; parsed values stay."""
    from .retention import raw_payloads_purge

    return raw_payloads_purge()
