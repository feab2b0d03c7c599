"""The fanned-out full recompute on a real worker, Redis and PostgreSQL.

The Procfile's worker (two processes, queues ``ingest,scoring,recompute``) runs the chunk tasks
of several recomputes, and a ping posted meanwhile is scored within seconds: its refresh, on
the ``scoring`` queue, is taken between two chunks instead of behind all of them.
"""

from __future__ import annotations

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

from scoring import tasks
from scoring.models import RecomputeChunk, RecomputeRun, ScoreSnapshot
from scoring.services import companies_refresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
BOOK = 30
RUNS = 4  # recomputes queued at once: a backlog of RUNS x BOOK chunk tasks
REASON = "fan-out test"


def worker_command() -> list[str]:
    """The Procfile's ``worker`` line as a shell expands it, with its two processes."""
    line = next(
        line.removeprefix("worker:")
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("worker:")
    )
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m[2], line)
    words = shlex.split(line)
    assert words[:4] == ["celery", "-A", "usage_portal", "worker"], words
    assert words[words.index("--concurrency") + 1] == "2", words
    assert "recompute" in words[words.index("--queues") + 1].split(","), words
    return [sys.executable, "-m", *words, "--without-mingle", "--without-gossip"]


@pytest.fixture
def worker(tmp_path):
    """The worker on the test database and an emptied test Redis; tasks go through Redis."""
    import redis

    from usage_portal.celery import app

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    app.conf.task_always_eager = False
    db = connection.settings_dict
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "VAR_DIR": str(tmp_path),
    }
    proc = None

    def start() -> None:
        nonlocal proc
        proc = subprocess.Popen(
            worker_command(),
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if "ready." in log.read_text(errors="replace"):
                return
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        pytest.fail("worker did not start:\n" + log.read_text())

    start.log = log
    yield start
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    app.conf.task_always_eager = True
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def account(billable_users: int):
    sub = SubscriptionFactory(licensed_seats=100)
    instance = InstanceFactory(subscription=sub, company=sub.company, instance_type="production")
    store_ping(instance, days_ago=2, metrics={"billable_users": billable_users}, refresh=False)
    return instance


def wait_for(predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def test_fanned_out_recomputes_complete_and_a_ping_meanwhile_is_not_starved(worker):
    book = [account(40 + n) for n in range(BOOK)]
    companies_refresh(company_ids=[i.company_id for i in book])
    ScoreSnapshot.objects.filter(is_current=True).update(inputs_hash="")  # all inputs changed
    before = dict(ScoreSnapshot.objects.filter(is_current=True).values_list("company_id", "pk"))
    planned_at = timezone.now()
    # Chunks of one account, with monthly history: a backlog of slow-ish tasks on the queue.
    runs = [tasks.recompute_fan_out(reason=REASON, history=True, size=1) for _ in range(RUNS)]
    assert all(run.chunks == BOOK for run in runs)
    # Scored before the worker starts, and in none of the queued chunks: only its own refresh
    # can move its score.
    pinged = account(50)
    companies_refresh(company_ids=[pinged.company_id])

    def utilisation() -> float | None:
        return ScoreSnapshot.objects.get(
            company_id=pinged.company_id, is_current=True
        ).license_utilization

    assert utilisation() == pytest.approx(0.5)
    worker()
    store_ping(pinged, recorded_at=timezone.now(), metrics={"billable_users": 90})  # refresh queued
    took = wait_for(lambda: utilisation() == pytest.approx(0.9), timeout=20)
    assert took is not None, worker.log.read_text()[-5000:]
    unfinished = RecomputeRun.objects.filter(pk__in=[r.pk for r in runs], finished_at=None)
    assert unfinished.exists(), "the backlog was gone before the refresh: nothing was proven"
    behind = RecomputeChunk.objects.filter(run__in=runs, done_at=None).count()
    assert took < 5, f"the refresh waited {took:.1f}s behind the chunks ({behind} still queued)"

    assert wait_for(lambda: not unfinished.exists(), timeout=180) is not None, (
        worker.log.read_text()[-5000:]
    )
    fresh = {
        s.company_id: s
        for s in ScoreSnapshot.objects.filter(
            is_current=True, company_id__in=[i.company_id for i in book]
        )
    }
    assert fresh.keys() == before.keys() and len(fresh) == BOOK
    for company_id, snapshot in fresh.items():
        assert snapshot.pk != before[company_id], company_id
        assert snapshot.reason == REASON and snapshot.computed_at >= planned_at
        assert snapshot.inputs_hash
    # Each later run found the first one's scores current: one new snapshot per account.
    assert ScoreSnapshot.objects.filter(reason=REASON).count() == BOOK


def test_snapshots_copied_into_postgresql_read_back_as_bulk_create_wrote_them():
    """On PostgreSQL the snapshots are written by COPY (ids drawn from the table's sequence):
    the same rows as the ORM writes, ids the ORM goes on from, and retryable errors still
    Django's own."""
    from django.db import IntegrityError, transaction

    from scoring.services import _snapshots_insert

    instance = account(60)
    companies_refresh(company_ids=[instance.company_id])
    written = ScoreSnapshot.objects.get(company_id=instance.company_id, is_current=True)
    copies = [
        ScoreSnapshot(
            **{
                f.attname: getattr(written, f.attname)
                for f in ScoreSnapshot._meta.concrete_fields
                if not f.primary_key
            }
            | {"is_current": False, "detail": {**written.detail, "key": {1: "int key"}}}
        )
        for _ in range(3)
    ]
    _snapshots_insert(copies)
    assert len({c.pk for c in copies}) == 3 and all(c.pk > written.pk for c in copies)
    for copy in copies:
        stored = ScoreSnapshot.objects.get(pk=copy.pk)
        for field in ScoreSnapshot._meta.concrete_fields:
            if field.name not in ("id", "detail"):
                assert getattr(stored, field.attname) == getattr(written, field.attname) or (
                    field.name == "is_current"
                ), field.name
        assert stored.detail == {**written.detail, "key": {"1": "int key"}}  # as json writes it
    after = ScoreSnapshot.objects.create(
        company_id=instance.company_id, scheme="s", detail={}, is_current=False
    )
    assert after.pk > max(c.pk for c in copies)
    second_current = ScoreSnapshot(
        **{f.attname: getattr(written, f.attname) for f in ScoreSnapshot._meta.concrete_fields}
        | {"id": None}
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # one current snapshot a company
        _snapshots_insert([second_current])
