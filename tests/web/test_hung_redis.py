"""A hung Redis (broker and cache) costs a request a short wait, never the web tier.

With Redis paused for 75 s every ``POST /usage_data`` blocked 75 s, ten of them used up
gunicorn's threads and C360 pages took 5 s on cache reads. Sockets now time out (broker 1 s,
cache 0.5 s), the publish after a commit is best-effort, and the cache is read as a miss. The
test pauses its **own** redis-server (SIGSTOP) and never touches the shared one.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import orjson
import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import Client, override_settings
from django.utils import timezone

from scoring.models import PendingRefresh
from tests.conftest import PASSWORD
from tests.factories import InstanceFactory, SubscriptionFactory
from tests.ingest_support import payload
from tests.redis_support import OwnRedis

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

# A request may wait for the timeouts (connect/read, a short publish retry), not for Redis.
WAIT_LIMIT = 6.0


@pytest.fixture
def paused_redis(tmp_path):
    """Broker and cache on the test's own Redis, which is then paused (SIGSTOP)."""
    redis = OwnRedis(tmp_path)
    redis.start()
    from usage_portal.celery import app

    saved = app.conf.broker_url, dict(app.conf.broker_transport_options or {})
    # The project's own settings (loaded with REDIS_URL set): their timeouts are what is tested.
    assert saved[1]["socket_timeout"] and saved[1]["socket_connect_timeout"]
    app.conf.update(broker_url=redis.url, task_always_eager=False)
    app._pool = None
    app.amqp._producer_pool = None
    configured = settings.CACHES["default"]
    assert configured["BACKEND"].endswith("RedisCache"), "run with REDIS_URL set"
    cache = {"default": {**configured, "LOCATION": redis.url}}
    # override_settings rebuilds the cache handlers (Django's setting_changed receiver).
    with override_settings(CACHES=cache, ALLOW_ANONYMOUS_PINGS=True):
        assert caches["default"]._cache._servers == [redis.url]
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            yield redis
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
    app.conf.update(broker_url=saved[0], broker_transport_options=saved[1], task_always_eager=True)
    app._pool = None
    app.amqp._producer_pool = None
    redis.stop()


@pytest.fixture
def account():
    sub = SubscriptionFactory(licensed_seats=100)
    return InstanceFactory(subscription=sub, company=sub.company)


def test_a_ping_posted_while_redis_hangs_is_stored_and_answered_quickly(
    paused_redis, account, django_capture_on_commit_callbacks
):
    body = payload(
        uuid=account.uuid,
        hostname=account.hostname,
        subscription_id=account.subscription.name,
        recorded_at=timezone.now() - dt.timedelta(hours=1),
    )
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post("/usage_data", orjson.dumps(body), content_type="application/json")
    took = time.monotonic() - started

    assert response.status_code == 201, response.content
    assert took < WAIT_LIMIT, f"the request waited {took:.1f} s for a hung Redis"
    assert PendingRefresh.objects.filter(company_id=account.company_id).exists()


def test_a_c360_page_reads_a_hung_cache_as_a_miss(paused_redis, account, viewer):
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)

    started = time.monotonic()
    response = client.get(f"/accounts/{account.company_id}/instances/")
    took = time.monotonic() - started

    assert response.status_code == 200
    assert took < WAIT_LIMIT, f"the page waited {took:.1f} s for a hung cache"
