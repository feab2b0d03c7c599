"""Settings come from the environment, with safe defaults; production refuses to start unsafely."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}


def run_django(code: str, **env) -> subprocess.CompletedProcess:
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'usage_portal.settings'); django.setup(); from django.conf import settings; " + code
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def printed(result: subprocess.CompletedProcess) -> list[str]:
    """The lines a run that must succeed printed."""
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_production_without_secret_key_refuses_to_start():
    result = run_django("print('started')", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "started" not in result.stdout


def test_debug_without_secret_key_starts_with_embedded_defaults(tmp_path):
    result = run_django(
        "print(settings.DATABASES['default']['ENGINE']); print(settings.CELERY_BROKER_URL);"
        "print(settings.LABEL_REFRESH_DELAY_HOURS, settings.ALLOW_ANONYMOUS_PINGS, "
        "settings.TIME_ZONE, settings.USE_TZ)",
        DEBUG="1",
        VAR_DIR=str(tmp_path),
    )
    assert printed(result) == ["django.db.backends.sqlite3", "filesystem://", "24.0 False UTC True"]
    assert (tmp_path / "broker" / "queue").is_dir()


def test_database_and_redis_urls_switch_to_postgresql_and_redis(tmp_path):
    result = run_django(
        "d = settings.DATABASES['default']; print(d['ENGINE'], d['NAME'], d['HOST']);"
        "print(settings.CELERY_BROKER_URL); print(settings.LABEL_REFRESH_DELAY_HOURS,"
        " settings.ALLOW_ANONYMOUS_PINGS)",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://postgres@db.internal:5432/portal",
        REDIS_URL="redis://cache.internal:6379/2",
        LABEL_REFRESH_DELAY_HOURS="0",
        ALLOW_ANONYMOUS_PINGS="true",
        VAR_DIR=str(tmp_path),
    )
    assert printed(result) == [
        "django.db.backends.postgresql portal db.internal",
        "redis://cache.internal:6379/2",
        "0.0 True",
    ]


def test_negative_refresh_delay_is_refused(tmp_path):
    result = run_django("", DEBUG="1", LABEL_REFRESH_DELAY_HOURS="-1", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "LABEL_REFRESH_DELAY_HOURS must be 0 or more" in result.stderr


def test_check_deploy_with_production_settings_has_no_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **BASE_ENV,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "portal.example.com",
            "SECURE_SSL_REDIRECT": "1",
            "SECURE_HSTS_PRELOAD": "1",
            "VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_celery_beat_schedule_declares_every_periodic_job():
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks == {
        "instances.labels.apply_due_label_changes",
        "instances.tasks.run_labeling_rules",
        "scoring.tasks.recompute_all",
        "scoring.tasks.export_instance_types",
        "instances.tasks.purge_raw_payloads",
        "scoring.tasks.send_drop_digests",
        "scoring.tasks.refresh_sweep",
        "accounts.tasks.clear_expired_sessions",
    }
    from usage_portal.celery import app

    app.loader.import_default_modules()
    assert tasks <= set(app.tasks)


def test_a_retention_that_would_purge_every_raw_payload_refuses_to_start(tmp_path):
    for days in ("0", "-1"):
        result = run_django(
            "print('started')", DEBUG="1", VAR_DIR=str(tmp_path), RAW_PAYLOAD_RETENTION_DAYS=days
        )
        assert result.returncode != 0
        assert f"RAW_PAYLOAD_RETENTION_DAYS must be at least 1, got '{days}'" in result.stderr
        assert "started" not in result.stdout
