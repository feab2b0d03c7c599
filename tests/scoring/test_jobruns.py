"""The last successful run of each periodic job: recorded when a task beat sent succeeds.

The worker's own path (beat's header as an attribute of the message's request) is exercised by
tests/test_json_logging.py's real worker; here the eager path (``apply(headers=...)``) and the
rules: only beat's runs, only successes, only jobs of the schedule.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from scoring import jobruns
from scoring.models import JobRun
from usage_portal.celery import app as celery_app

pytestmark = pytest.mark.django_db
BEAT = {"celery_beat_task": True}


def test_a_beat_run_that_succeeds_is_recorded_under_its_schedule_name():
    celery_app.tasks["scoring.tasks.refresh_sweep"].apply(headers=BEAT)

    run = JobRun.objects.get()
    assert (run.name, run.task) == ("refresh-sweep", "scoring.tasks.refresh_sweep")
    first = run.last_success_at

    celery_app.tasks["scoring.tasks.refresh_sweep"].apply(headers=BEAT)

    assert JobRun.objects.get().last_success_at > first  # one row per job, moved forward


def test_a_run_not_sent_by_beat_is_not_the_schedule():
    celery_app.tasks["scoring.tasks.refresh_sweep"].apply()

    assert not JobRun.objects.exists()


def test_a_failed_run_is_not_recorded(monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("scoring.tasks.services.pending_refreshes_drain", fails)

    with pytest.raises(ValueError):  # eager tasks propagate their errors in the tests
        celery_app.tasks["scoring.tasks.refresh_sweep"].apply(headers=BEAT)

    assert not JobRun.objects.exists()


def test_a_task_outside_the_schedule_records_nothing():
    assert jobruns.job_success_record("scoring.tasks.refresh_companies") == []
    assert not JobRun.objects.exists()


def test_a_database_error_while_recording_does_not_fail_the_job(monkeypatch, caplog):
    def down(*args, **kwargs):
        raise OperationalError("gone")

    monkeypatch.setattr(jobruns, "job_success_record", down)

    result = celery_app.tasks["scoring.tasks.refresh_sweep"].apply(headers=BEAT)

    assert result.successful()
    assert "could not record the success of scoring.tasks.refresh_sweep" in caplog.text
