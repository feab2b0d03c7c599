"""Operations endpoints: /healthz, /readyz and the Prometheus endpoint /-/metrics.

The probes answer without a login and say nothing sensitive; readiness turns 503 and names the
part that failed (database, cache, broker) with its own JSON answer, not the generic outage
page. The metrics endpoint is off until a token or an address list is configured; what it
answers is parsed with prometheus_client's own parser and checked against data made here.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import metadata
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections
from django.test import Client, override_settings
from django.utils import timezone
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from instances.labels import label_change_request
from instances.models import LabelChange, RejectedPayload, UsagePing
from instances.parsing import PingRejected, parse_ping
from instances.services.rejections import rejected_payload_keep
from instances.transport import PayloadError, inflate_body, loads_json
from scoring.jobruns import job_success_record
from scoring.models import PendingRefresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.ingest_support import payload
from tests.redis_support import free_port
from usage_portal import version
from usage_portal.celery import app as celery_app
from usage_portal.web.ops import selectors

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"
PYPROJECT_VERSION = tomllib.loads(
    (Path(settings.BASE_DIR) / "pyproject.toml").read_text(encoding="utf-8")
)["project"]["version"]
#: What an outage message may carry that must never reach an unauthenticated prober.
SECRETS = ("db.internal", "hunter2", "10.0.0.5", "portal_user")


# --------------------------------------------------------------------------------------------------
# /healthz


def test_healthz_answers_without_a_login_and_without_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": PYPROJECT_VERSION}
    assert "no-cache" in response["Cache-Control"]


def test_the_version_is_the_checkouts_and_falls_back_to_the_installed_one(monkeypatch, tmp_path):
    assert version.portal_version() == PYPROJECT_VERSION

    # A checkout pulled to a new release without a reinstall: its pyproject.toml wins over the
    # metadata the last install left.
    pulled = tmp_path / "pyproject.toml"
    pulled.write_text('[project]\nname = "usage-portal"\nversion = "9.8.7"\n')
    monkeypatch.setattr(version, "PYPROJECT", pulled)
    monkeypatch.setattr(version.pyproject_version, "__defaults__", (pulled,))
    version.portal_version.cache_clear()
    try:
        assert version.portal_version() == "9.8.7"
        pulled.unlink()  # a copy without the file: the installed metadata
        version.portal_version.cache_clear()
        assert version.portal_version() == metadata.version("usage-portal")
    finally:
        version.portal_version.cache_clear()
    assert version.pyproject_version(Path("/nonexistent/pyproject.toml")) == "unknown"


# --------------------------------------------------------------------------------------------------
# /readyz


def test_readyz_is_ok_when_database_cache_and_broker_answer():
    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker"}
    for check in body["checks"].values():
        assert check["ok"] is True and isinstance(check["ms"], int)


def _failed(response, part: str) -> dict:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"][part]["ok"] is False
    text = response.content.decode()
    assert not any(secret in text for secret in SECRETS), text
    return body


def test_readyz_names_the_database_and_is_not_swallowed_by_the_outage_middleware(monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError(
            'connection to server at "db.internal" (10.0.0.5), port 5432 failed: '
            'password authentication failed for user "portal_user" (password hunter2)'
        )

    monkeypatch.setattr(connections["default"], "cursor", down)

    body = _failed(Client().get("/readyz"), "database")

    # Its own answer, not ServiceUnavailableMiddleware's {"error": ..., "retry_after": ...}.
    assert "error" not in body and "retry_after" not in body
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert body["checks"]["cache"]["ok"] and body["checks"]["broker"]["ok"]


def test_readyz_names_the_cache_when_it_cannot_be_reached():
    closed = f"redis://portal_user:hunter2@127.0.0.1:{free_port()}/0"
    caches = {
        **settings.CACHES,
        "default": {
            "BACKEND": "usage_portal.caches.RedisCache",
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        },
    }
    with override_settings(CACHES=caches):
        body = _failed(Client().get("/readyz"), "cache")

    assert body["checks"]["cache"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


@pytest.fixture
def broker_at():
    """Point the Celery app's broker elsewhere for one test."""
    saved = celery_app.conf.broker_url

    def point(url: str) -> None:
        celery_app.conf.update(broker_url=url)

    yield point
    celery_app.conf.update(broker_url=saved)


def test_readyz_names_the_broker_when_it_cannot_be_reached(broker_at):
    broker_at(f"redis://:hunter2@127.0.0.1:{free_port()}/0")

    body = _failed(Client().get("/readyz"), "broker")

    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert body["checks"]["broker"]["ms"] < 3000  # a short timeout, no retries
    assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"]


# --------------------------------------------------------------------------------------------------
# /-/metrics: who may scrape


def scrape(client: Client | None = None, **kwargs):
    return (client or Client()).get("/-/metrics", **kwargs)


def families(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def value(found: dict, name: str, **labels) -> float:
    """The one sample of family ``name`` with these labels (a counter's ``_total``, never its
    ``_created``)."""
    names = (name, f"{name}_total")
    samples = [
        s.value
        for s in found[name].samples
        if s.name in names and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(samples) == 1, (name, labels, found[name].samples)
    return samples[0]


def test_metrics_are_off_until_a_token_or_an_address_list_is_configured():
    assert scrape().status_code == 404
    assert scrape(headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics_need_the_right_bearer_token():
    refused = scrape()
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert scrape(headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert scrape(headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert b"usage_portal" not in refused.content

    found = families(scrape(headers={"Authorization": f"Bearer {TOKEN}"}))

    assert value(found, "usage_portal_build_info", version=PYPROJECT_VERSION) == 1


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.0/24", "192.0.2.7"])
def test_metrics_for_a_listed_address_only():
    assert scrape(REMOTE_ADDR="10.1.2.99").status_code == 200
    assert scrape(REMOTE_ADDR="192.0.2.7").status_code == 200
    assert scrape(REMOTE_ADDR="10.1.3.1").status_code == 403
    # Without CLIENT_IP_HEADER a forwarded address is the client's say-so: not believed.
    assert scrape(REMOTE_ADDR="10.1.3.1", HTTP_X_FORWARDED_FOR="10.1.2.5").status_code == 403


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.0/24"], METRICS_TOKEN=TOKEN)
def test_with_both_configured_either_lets_a_scraper_in():
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(REMOTE_ADDR="10.9.9.9").status_code == 401
    token = {"Authorization": f"Bearer {TOKEN}"}
    assert scrape(REMOTE_ADDR="10.9.9.9", headers=token).status_code == 200


# --------------------------------------------------------------------------------------------------
# /-/metrics: what it says


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def book():
    sub = SubscriptionFactory(licensed_seats=100)
    first = InstanceFactory(subscription=sub, company=sub.company, instance_type="production")
    second = InstanceFactory(subscription=sub, company=sub.company, instance_type="production")
    return sub.company, first, second


@override_settings(METRICS_TOKEN=TOKEN, ALLOW_ANONYMOUS_PINGS=True)
def test_product_metrics_count_what_the_database_holds(book):
    company, first, second = book
    now = timezone.now()
    # Pings: one received two days ago (outside the window), two today.
    old = store_ping(first, days_ago=9, refresh=False)
    UsagePing.objects.filter(pk=old.pk).update(received_at=now - dt.timedelta(days=2))
    store_ping(first, days_ago=2, refresh=False)
    store_ping(second, days_ago=2, refresh=False)
    # Refused payloads, through the real endpoint: a future ping and one without uuid.
    client = Client()
    future = payload(recorded_at=now + dt.timedelta(days=3))
    missing_uuid = payload()
    missing_uuid.pop("uuid")
    for body in (future, missing_uuid):
        answer = client.post("/usage_data", orjson.dumps(body), content_type="application/json")
        assert answer.status_code == 422
    stale = rejected_payload_keep(source="upload", reason="malformed JSON: x", raw=None)
    RejectedPayload.objects.filter(pk=stale.pk).update(received_at=now - dt.timedelta(days=3))
    # Label changes: two pending, one of them past its effective time.
    label_change_request(instance=first, field="instance_type", value="obsolete", schedule=False)
    label_change_request(instance=second, field="instance_type", value="obsolete", schedule=False)
    LabelChange.objects.filter(instance=first).update(
        requested_at=now - dt.timedelta(hours=2), effective_at=now - dt.timedelta(minutes=30)
    )
    # Scores waiting: the oldest change five minutes old.
    PendingRefresh.objects.all().delete()
    other = SubscriptionFactory().company
    PendingRefresh.objects.create(company=company, created_at=now - dt.timedelta(seconds=300))
    PendingRefresh.objects.create(company=company, created_at=now - dt.timedelta(seconds=20))
    PendingRefresh.objects.create(company=other, created_at=now - dt.timedelta(seconds=10))
    # A periodic job that succeeded.
    swept = now - dt.timedelta(minutes=1)
    job_success_record("scoring.tasks.refresh_sweep", at=swept)

    found = families(scrape(headers=AUTH))

    assert value(found, "usage_portal_pings_stored_24h", source="http") == 2
    assert value(found, "usage_portal_pings_stored_24h", source="upload") == 0
    rejected = "usage_portal_pings_rejected_24h"
    assert value(found, rejected, source="http", reason="recorded_in_future") == 1
    assert value(found, rejected, source="http", reason="missing_field") == 1
    assert sum(s.value for s in found[rejected].samples) == 2  # the stale one is outside
    assert value(found, "usage_portal_label_changes_pending") == 2
    assert value(found, "usage_portal_label_changes_overdue") == 1
    assert value(found, "usage_portal_label_changes_overdue_seconds") == pytest.approx(1800, abs=60)
    assert value(found, "usage_portal_score_refresh_pending_accounts") == 2
    assert value(found, "usage_portal_score_refresh_lag_seconds") == pytest.approx(300, abs=60)
    beat = "usage_portal_beat_last_success_timestamp_seconds"
    assert value(found, beat, job="refresh-sweep") == pytest.approx(swept.timestamp())
    assert value(found, beat, job="daily-recompute") == 0
    assert {s.labels["job"] for s in found[beat].samples} == set(settings.CELERY_BEAT_SCHEDULE)
    for part in ("pings", "label_changes", "score_refresh", "queues", "beat"):
        assert value(found, "usage_portal_metrics_part_up", part=part) == 1


@override_settings(METRICS_TOKEN=TOKEN)
def test_request_and_database_metrics_come_from_django_prometheus():
    Client().get("/healthz")
    first = families(scrape(headers=AUTH))
    Client().get("/readyz")  # runs SELECT 1
    second = families(scrape(headers=AUTH))

    requests = "django_http_requests_total_by_view_transport_method"
    assert value(second, requests, view="healthz", method="GET") >= 1
    executed = "django_db_execute"
    assert value(second, executed, alias="default", vendor=connection.vendor) > value(
        first, executed, alias="default", vendor=connection.vendor
    )
    assert "django_db_query_duration_seconds" in second


@pytest.fixture
def memory_broker(broker_at):
    """kombu's in-process broker, emptied after the test."""
    broker_at("memory://")
    yield
    with Connection("memory://") as connection:
        for name in ("ingest", "scoring"):
            connection.SimpleQueue(name).clear()


@override_settings(METRICS_TOKEN=TOKEN)
def test_queue_depth_per_celery_queue(memory_broker):
    with Connection("memory://") as connection:
        for _ in range(3):
            connection.SimpleQueue("ingest").put({"n": 1})
        connection.SimpleQueue("scoring").put({"n": 1})

    found = families(scrape(headers=AUTH))

    assert value(found, "usage_portal_celery_queue_length", queue="ingest") == 3
    assert value(found, "usage_portal_celery_queue_length", queue="scoring") == 1


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_broker_that_is_down_leaves_out_only_the_queues(broker_at):
    broker_at(f"redis://127.0.0.1:{free_port()}/0")

    found = families(scrape(headers=AUTH))

    assert value(found, "usage_portal_metrics_part_up", part="queues") == 0
    assert value(found, "usage_portal_metrics_part_up", part="label_changes") == 1
    assert "usage_portal_celery_queue_length" not in found
    assert value(found, "usage_portal_label_changes_pending") == 0


@override_settings(METRICS_TOKEN=TOKEN)
def test_multiprocess_mode_reads_every_workers_files(monkeypatch, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (the Procfile's gunicorn) the request metrics come from
    the workers' files — none here — and the product's are read as always."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    found = families(scrape(headers=AUTH))

    assert "django_http_requests_total_by_view_transport_method" not in found
    assert value(found, "usage_portal_label_changes_pending") == 0


# --------------------------------------------------------------------------------------------------
# The reason of a refusal as a bounded label, from the texts the ingest paths really write


def _parse_reason(body) -> str:
    with pytest.raises(PingRejected) as refused:
        parse_ping(body, now=timezone.now())
    return refused.value.reason


def _transport_reason(call) -> str:
    with pytest.raises(PayloadError) as refused:
        call()
    return refused.value.reason


def _without(key: str) -> dict:
    body = payload()
    body.pop(key)
    return body


REASONS = {
    "too_large": lambda: _transport_reason(
        lambda: inflate_body(b"x" * 100, content_encoding=None, max_bytes=10)
    ),
    "unreadable": lambda: _transport_reason(lambda: loads_json(b"{not json")),
    "recorded_in_future": lambda: _parse_reason(
        payload(recorded_at=timezone.now() + dt.timedelta(days=1))
    ),
    "recorded_before_2016": lambda: _parse_reason(
        payload(recorded_at=dt.datetime(2014, 1, 1, tzinfo=dt.UTC))
    ),
    "bad_recorded_at": lambda: _parse_reason({**payload(), "recorded_at": "yesterday"}),
    "not_an_object": lambda: _parse_reason([1, 2]),
    "missing_field": lambda: _parse_reason(_without("uuid")),
    "invalid_field": lambda: _parse_reason({**payload(), "uuid": 42}),
    "does_not_fit": lambda: "a value does not fit the database",
    "not_permitted": lambda: (
        "the ping is for Acme, an account you cannot change: its CSM or Ops can upload it"
    ),
    "other": lambda: "something nobody foresaw",
}


@pytest.mark.parametrize("kind", REASONS)
def test_every_kind_of_refusal_gets_its_label(kind):
    reason = REASONS[kind]()
    rejected_payload_keep(source="http", reason=reason, raw=None)
    # The SaaS export prefixes each row's reason with where it was.
    rejected_payload_keep(source="saas", reason=f"line 7: {reason}", raw=None)

    assert selectors.pings_rejected_recently() == {("http", kind): 1, ("saas", kind): 1}, reason


def test_pings_of_a_book_that_is_younger_than_the_window_all_count(book):
    _, first, second = book
    store_ping(first, days_ago=1, refresh=False)
    store_ping(second, days_ago=1, refresh=False)

    assert selectors.pings_stored_recently() == {"http": 2}


@override_settings(SECURE_SSL_REDIRECT=True)
def test_probes_are_not_redirected_to_https():
    """A Kubernetes probe or a scraper reaches gunicorn over plain HTTP: a 301 would fail it."""
    client = Client()

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/-/metrics").status_code == 404  # not configured, not redirected
    assert client.get("/login/").status_code == 301
