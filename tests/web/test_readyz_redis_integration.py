"""Readiness follows Redis: 200, then 503 naming the broker and the cache once Redis is down,
then 200 again once it is back — against a Redis of the test's own (never the shared one).

Also the queue depth the metrics endpoint reads from that Redis (LLEN of each queue).
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_support import OwnRedis
from usage_portal.celery import app as celery_app

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
TOKEN = "integration-scrape-token-0123456789"


def _reset_pools() -> None:
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def own_redis(tmp_path):
    """Broker and cache on the test's own redis-server, with the project's Redis settings."""
    redis = OwnRedis(tmp_path)
    redis.start()
    configured = settings.CACHES["default"]
    assert configured["BACKEND"].endswith("RedisCache"), "run with REDIS_URL set"
    saved = celery_app.conf.broker_url
    celery_app.conf.update(broker_url=redis.url, task_always_eager=False)
    _reset_pools()
    caches = {**settings.CACHES, "default": {**configured, "LOCATION": redis.url}}
    try:
        with override_settings(CACHES=caches, METRICS_TOKEN=TOKEN):
            yield redis
    finally:
        celery_app.conf.update(broker_url=saved, task_always_eager=True)
        _reset_pools()
        redis.stop()


def readyz():
    started = time.monotonic()
    response = Client().get("/readyz")
    return response, time.monotonic() - started


def test_readiness_turns_503_naming_broker_and_cache_while_redis_is_down(own_redis):
    response, _ = readyz()
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"

    own_redis.stop()
    response, took = readyz()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    checks = body["checks"]
    assert checks["broker"]["ok"] is False and checks["cache"]["ok"] is False
    assert checks["broker"]["error"] == checks["cache"]["error"] == "ConnectionError"
    assert checks["database"]["ok"] is True
    assert str(own_redis.port) not in response.content.decode()  # no address in the answer
    assert took < 5, took  # the short timeouts, not a hang
    print(response.content.decode())  # the report's example answer

    own_redis.start()  # the same port
    deadline = time.monotonic() + 15
    while (response := readyz()[0]).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 200, response.content
    assert all(check["ok"] for check in response.json()["checks"].values())


def test_queue_depth_is_read_from_redis(own_redis):
    for _ in range(2):
        celery_app.send_task("scoring.tasks.refresh_sweep", queue="scoring")
    celery_app.send_task("instances.tasks.purge_raw_payloads", queue="ingest")

    response = Client().get("/-/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    depth = {
        s.labels["queue"]: s.value for s in families["usage_portal_celery_queue_length"].samples
    }
    assert depth == {"scoring": 2, "ingest": 1, "recompute": 0}
