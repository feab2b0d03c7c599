"""Sentry: off by default; with ``SENTRY_DSN`` the Django and Celery integrations, no personal
data, the portal's version as the release. Checked in a fresh interpreter: the SDK is started
by the settings module, once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from usage_portal.version import portal_version

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, django; django.setup(); import sentry_sdk; c = sentry_sdk.get_client(); "
    "print(json.dumps({'active': c.is_active(), 'pii': c.options.get('send_default_pii'), "
    "'release': c.options.get('release'), 'environment': c.options.get('environment'), "
    "'integrations': sorted(getattr(c, 'integrations', {}))}))"
)


def _sentry(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    env.update(
        DJANGO_SETTINGS_MODULE="usage_portal.settings",
        VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_sentry_is_off_without_a_dsn(tmp_path):
    assert _sentry(tmp_path)["active"] is False


def test_sentry_with_a_dsn_reports_django_and_celery_without_personal_data(tmp_path):
    # A DSN on a closed local port: nothing is sent at start, and nothing can leave the machine.
    found = _sentry(
        tmp_path, SENTRY_DSN="http://public@127.0.0.1:9/1", SENTRY_ENVIRONMENT="staging"
    )

    assert found["active"] is True
    assert found["pii"] is False
    assert {"django", "celery"} <= set(found["integrations"])
    assert found["release"] == f"usage-portal@{portal_version()}"
    assert found["environment"] == "staging"
