"""A real Celery worker and beat against Redis and PostgreSQL: the refresh delay end to end."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from instances.labels import label_change_request
from instances.models import Instance, LabelChange
from scoring.models import ScoreSnapshot
from scoring.services import companies_refresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def worker_command() -> list[str]:
    """The Procfile's ``worker`` line with one process, beat embedded (``-B``) and no chatter."""
    line = next(
        line.removeprefix("worker:")
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("worker:")
    )
    # ${NAME:-default} as a shell expands it, with a single worker process.
    line = re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: {"WORKER_CONCURRENCY": "1"}.get(m[1], m[2]), line
    )
    words = shlex.split(line)
    assert words[:4] == ["celery", "-A", "usage_portal", "worker"], words
    assert "--concurrency" in words and not any("$" in word for word in words), words
    return [sys.executable, "-m", *words, "-B", "--without-mingle", "--without-gossip"]


class Worker:
    """``celery worker -B`` in a subprocess, on the test database and the test Redis."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None
        self.log = tmp_path / "worker.log"

    def start(self) -> None:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "LABEL_SWEEP_SECONDS": "2",
            "VAR_DIR": str(self.tmp_path),
        }
        self.proc = subprocess.Popen(
            worker_command(),
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text(errors="replace"):
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.2)
        pytest.fail("worker did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def broker():
    """Real Redis, emptied; tasks go through it instead of running eagerly."""
    import redis

    from usage_portal.celery import app

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = True
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def worker(broker, tmp_path):
    w = Worker(tmp_path)
    yield w
    w.stop()


@pytest.fixture
def account():
    sub = SubscriptionFactory(licensed_seats=100)
    inst = InstanceFactory(subscription=sub, company=sub.company, instance_type="unknown")
    store_ping(inst, days_ago=1, metrics={"billable_users": 60}, refresh=False)
    companies_refresh(company_ids=[sub.company_id])
    return inst


def relabel(instance, value: str, *, by, delay: dt.timedelta) -> LabelChange:
    """Ask for ``instance`` to become ``value``, effective after ``delay``."""
    return label_change_request(
        instance=instance, field="instance_type", value=value, by=by, delay=delay
    )


def lu(instance) -> float | None:
    return ScoreSnapshot.objects.get(
        company_id=instance.company_id, is_current=True
    ).license_utilization


def wait_for(predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def test_label_change_is_invisible_before_its_effective_time_and_visible_after(
    account, worker, csm
):
    worker.start()
    delay = dt.timedelta(seconds=5)
    change = relabel(account, "production", by=csm, delay=delay)
    assert lu(account) is None
    time.sleep(3)
    assert lu(account) is None, "applied before its effective time"
    assert Instance.objects.get(pk=account.pk).instance_type == "unknown"
    assert wait_for(lambda: lu(account) is not None, timeout=20) is not None, worker.log.read_text()
    assert lu(account) == pytest.approx(0.6)
    change.refresh_from_db()
    assert change.status == "applied" and change.applied_at >= change.effective_at
    assert change.applied_via in {"schedule", "sweep"}


def test_change_due_while_the_worker_was_down_applies_when_it_starts(account, worker, csm):
    change = relabel(account, "production", by=csm, delay=dt.timedelta(seconds=1))
    time.sleep(3)  # effective time passes with no worker running
    assert LabelChange.objects.get(pk=change.pk).status == "pending"
    worker.start()
    assert wait_for(lambda: lu(account) is not None, timeout=20) is not None, worker.log.read_text()
    assert LabelChange.objects.get(pk=change.pk).status == "applied"
    assert LabelChange.objects.filter(status="applied", instance=account).count() == 1


def test_superseded_change_never_applies(account, worker, csm):
    worker.start()
    first = relabel(account, "production", by=csm, delay=dt.timedelta(seconds=2))
    second = relabel(account, "obsolete", by=csm, delay=dt.timedelta(hours=1))
    time.sleep(6)  # first's task fires and the sweep runs, twice
    first.refresh_from_db()
    assert first.status == "superseded" and first.applied_at is None
    assert Instance.objects.get(pk=account.pk).instance_type == "unknown"
    assert LabelChange.objects.get(pk=second.pk).status == "pending"
    assert lu(account) is None


def test_new_ping_updates_the_company_scores_within_seconds(account, worker):
    Instance.objects.filter(pk=account.pk).update(instance_type="production")
    companies_refresh(company_ids=[account.company_id])
    assert lu(account) == pytest.approx(0.6)
    worker.start()
    store_ping(account, recorded_at=timezone.now(), metrics={"billable_users": 90})
    took = wait_for(lambda: lu(account) == pytest.approx(0.9), timeout=10)
    assert took is not None, worker.log.read_text()
    assert took < 5


def test_a_drop_is_raised_by_the_worker_with_the_score_that_dropped(account, worker, csm):
    """PostgreSQL + Redis + a real worker: the alert is written in the scoring transaction."""
    from accounts.models import Company
    from scoring.models import HealthAlert

    Company.objects.filter(pk=account.company_id).update(csm=csm, segment="Strategic")
    Instance.objects.filter(pk=account.pk).update(instance_type="production")
    store_ping(
        account,
        recorded_at=timezone.now() - dt.timedelta(hours=2),
        metrics={"billable_users": 90},
        refresh=False,
    )
    companies_refresh(company_ids=[account.company_id])
    assert (
        ScoreSnapshot.objects.get(
            company_id=account.company_id, is_current=True
        ).license_utilization_color
        == "Green"
    )
    worker.start()
    store_ping(account, recorded_at=timezone.now(), metrics={"billable_users": 50})  # Red
    took = wait_for(
        lambda: HealthAlert.objects.filter(company_id=account.company_id).exists(), timeout=10
    )
    assert took is not None, worker.log.read_text()
    alert = HealthAlert.objects.get(company_id=account.company_id)
    current = ScoreSnapshot.objects.get(company_id=account.company_id, is_current=True)
    # Seen together or not at all: the alert names the very snapshot that dropped.
    assert (alert.measure, alert.from_color, alert.to_color) == (
        "license_utilization",
        "Green",
        "Red",
    )
    assert alert.snapshot_id == current.pk and current.license_utilization_color == "Red"
    assert took < 5
