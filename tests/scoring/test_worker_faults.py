"""The worker survives its broker restarting under it, with messages in flight.

Issue 11 found the worker dying when Redis dropped while it held an unacknowledged message (the
label changes' ETA messages made that the normal case); nothing restarted it. This test starts
its **own** Redis on a free port (never the shared one), a real worker and beat on it, keeps
ETA and refresh messages in flight, restarts Redis ten times, and then checks the worker is alive
and still does its work: a new ping's refresh, and a label change that came due.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import transaction

from accounts.changes import companies_changed
from instances.labels import label_change_request
from instances.models import Instance
from tests.factories import store_ping
from tests.redis_support import OwnRedis
from tests.scoring import test_worker_integration as harness
from tests.scoring.test_worker_integration import Worker, lu, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
RESTARTS = 10
account = harness.account  # the same fixture: an Unknown instance at 60 of 100 seats


@pytest.fixture
def own_redis(tmp_path, settings):
    redis = OwnRedis(tmp_path)
    redis.start()
    from usage_portal.celery import app

    saved = app.conf.broker_url
    settings.REDIS_URL = redis.url
    app.conf.update(broker_url=redis.url, task_always_eager=False)
    app._pool = None
    app.amqp._producer_pool = None
    yield redis
    app.conf.update(broker_url=saved, task_always_eager=True)
    app._pool = None
    app.amqp._producer_pool = None
    redis.stop()


def test_the_worker_survives_ten_redis_restarts_with_messages_in_flight(
    own_redis, account, tmp_path, csm
):
    worker = Worker(tmp_path)
    worker.start()
    try:
        for n in range(RESTARTS):
            # In flight: an ETA message the worker holds unacknowledged, and refreshes queued.
            label_change_request(
                instance=account,
                field="health_inclusion",
                value="included" if n % 2 else "opt_out",
                by=csm,
                delay=dt.timedelta(minutes=5),
            )
            for _ in range(3):
                with transaction.atomic():
                    companies_changed([account.company_id], reason="fault test")
            time.sleep(0.5)
            own_redis.stop()
            time.sleep(0.5)
            own_redis.start()
            assert worker.proc.poll() is None, worker.log.read_text()[-4000:]

        time.sleep(3)
        assert worker.proc.poll() is None, worker.log.read_text()[-4000:]
        # Still working: a change that comes due applies, and a new ping's refresh scores it.
        change = label_change_request(
            instance=account,
            field="instance_type",
            value="production",
            by=csm,
            delay=dt.timedelta(seconds=1),
        )
        assert wait_for(
            lambda: Instance.objects.get(pk=account.pk).instance_type == "production", timeout=30
        ), worker.log.read_text()[-4000:]
        change.refresh_from_db()
        assert change.status == "applied"
        store_ping(account, days_ago=0, metrics={"billable_users": 90})
        assert wait_for(lambda: lu(account) == pytest.approx(0.9), timeout=30), (
            worker.log.read_text()[-4000:]
        )
    finally:
        worker.stop()
    assert "Unrecoverable error" not in worker.log.read_text()
