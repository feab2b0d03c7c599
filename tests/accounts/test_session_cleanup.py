"""Expired sessions are deleted every day: Django never deletes a database session by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session

from accounts.tasks import clear_expired_sessions

pytestmark = pytest.mark.django_db


def _session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["who"] = "someone"
    store.set_expiry(expires_in)
    store.create()
    return store.session_key


def test_the_task_deletes_expired_sessions_and_keeps_live_ones():
    expired = _session(timedelta(seconds=-60))
    live = _session(timedelta(days=1))

    clear_expired_sessions.delay()

    kept = set(Session.objects.values_list("session_key", flat=True))
    assert kept == {live} and expired not in kept


def test_beat_runs_it_daily_off_the_scoring_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["clear-expired-sessions"]

    assert entry["task"] == clear_expired_sessions.name == "accounts.tasks.clear_expired_sessions"
    assert isinstance(entry["schedule"], crontab) and entry["schedule"].hour == {2}

    from usage_portal.celery import app

    assert app.amqp.router.route({}, clear_expired_sessions.name)["queue"].name == "ingest"
