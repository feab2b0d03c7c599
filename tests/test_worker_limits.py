"""Celery task time limits: a hung task gives its worker slot back, and is never delivered twice.

Without limits a task stuck on a lock or a silent socket held its pool process until the worker
restarted; and with Redis, a task running past the visibility timeout is handed to a second
worker while the first still runs it.
"""

from __future__ import annotations

import secrets

from django.conf import settings

from tests.test_settings import printed, run_django
from usage_portal.celery import app

PRODUCTION = {"SECRET_KEY": secrets.token_urlsafe(50), "REDIS_URL": "redis://127.0.0.1:6399/0"}


def test_every_task_runs_under_a_soft_and_a_hard_limit():
    assert app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT == 1500
    assert app.conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT == 1700
    # Each task takes them from the configuration: none sets its own.
    app.loader.import_default_modules()
    own = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    assert len(own) >= 10
    assert {(task.soft_time_limit, task.time_limit) for task in own} == {(1500, 1700)}


def test_the_limits_stay_below_the_redis_visibility_timeout(tmp_path):
    result = run_django(
        "print(settings.CELERY_TASK_TIME_LIMIT,"
        " settings.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
        **PRODUCTION,
        VAR_DIR=str(tmp_path),
        BROKER_VISIBILITY_TIMEOUT="1800",  # the lowest allowed: the default limit fits under it
    )
    assert printed(result) == ["1700 1800"]

    refused = run_django(
        "print('started')", **PRODUCTION, VAR_DIR=str(tmp_path), CELERY_TASK_TIME_LIMIT="3600"
    )
    assert refused.returncode != 0 and "started" not in refused.stdout
    assert "CELERY_TASK_TIME_LIMIT must be below BROKER_VISIBILITY_TIMEOUT" in refused.stderr


def test_the_limits_are_read_from_the_environment_and_checked(tmp_path):
    result = run_django(
        "print(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT)",
        DEBUG="1",
        VAR_DIR=str(tmp_path),
        CELERY_TASK_SOFT_TIME_LIMIT="60",
        CELERY_TASK_TIME_LIMIT="90",
    )
    assert printed(result) == ["60 90"]

    refused = run_django(
        "",
        DEBUG="1",
        VAR_DIR=str(tmp_path),
        CELERY_TASK_SOFT_TIME_LIMIT="90",
        CELERY_TASK_TIME_LIMIT="90",
    )
    assert refused.returncode != 0
    assert "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT" in refused.stderr
