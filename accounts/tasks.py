"""Celery tasks of the accounts app: the sign-in's housekeeping."""

from celery import shared_task
from django.core.management import call_command
from django.db import OperationalError


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def clear_expired_sessions() -> None:
    """Beat, daily: delete expired sessions (Django's ``clearsessions``).

    Django never deletes a database session by itself: every sign-in leaves a row behind, and
    the table grows for as long as the portal runs.
    """
    call_command("clearsessions")
