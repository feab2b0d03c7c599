"""Log lines a log pipeline can parse, each carrying the id of the request it belongs to.

``LOG_FORMAT=json`` makes every line one JSON object (python-json-logger); the request-id
middleware gives each request an id (a sane incoming ``X-Request-ID``, else a new one), answers
it in ``X-Request-ID`` and puts it on every line of the request; a task queued during the
request carries it in its message header, and the worker's lines of that task carry it again.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from django.test import Client, override_settings
from django.utils import timezone
from kombu import Connection

from tests.factories import InstanceFactory, SubscriptionFactory
from tests.ingest_support import payload
from tests.redis_support import free_port
from usage_portal import logs
from usage_portal.celery import app as celery_app
from usage_portal.celery import worker_log_format

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def json_lines():
    """The root logger's records as the JSON console handler writes them (LOG_FORMAT=json)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(saved)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CACHE_URL", "SENTRY_DSN")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="usage_portal.settings",
        SECRET_KEY="test-secret-key-for-a-subprocess-0123456789-abcdefghijkl",
        VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


# --------------------------------------------------------------------------------------------------
# The format


def test_log_format_json_writes_one_json_object_per_line(tmp_path):
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('usage_portal.check').warning('hello %s', 'world')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp_path, LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello world"
    assert (line["level"], line["logger"], line["request_id"]) == (
        "WARNING",
        "usage_portal.check",
        "-",
    )
    assert line["time"].endswith("+00:00")


def test_an_unknown_log_format_is_refused_at_start(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=_env(tmp_path, LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json" in result.stderr


# --------------------------------------------------------------------------------------------------
# The request id


@pytest.mark.django_db
def test_every_line_of_a_request_carries_the_id_it_answers(json_lines, monkeypatch):
    # A readiness probe meeting a broker that is down logs its failure inside the request, and
    # django.request logs the 503 after the middleware has handed the response back.
    saved = celery_app.conf.broker_url
    celery_app.conf.update(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        response = Client().get("/readyz")
    finally:
        celery_app.conf.update(broker_url=saved)

    assert response.status_code == 503
    request_id = response["X-Request-ID"]
    lines = json_lines()
    probe = [x for x in lines if x["logger"] == "usage_portal.web.ops.probes"]
    answer = [x for x in lines if x["logger"] == "django.request"]
    assert probe and answer, lines
    assert {x["request_id"] for x in probe + answer} == {request_id}
    assert answer[0]["status_code"] == 503 and answer[0]["level"] == "ERROR"
    print(json.dumps(probe[0]))  # the report's example line


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("0f9e1c2b-7a4d-4c1e-9d8a-5b6c7d8e9f00", True),
        ("a" * 32, True),
        ("lb:1700000000.123-abc", True),
        ("has spaces", False),
        ('quote"d', False),
        ("line\nbreak", False),
        ("x" * 129, False),
        ("", False),
    ],
)
def test_an_incoming_request_id_is_kept_only_when_sane(incoming, kept):
    response = Client().get("/healthz", headers={"X-Request-ID": incoming})

    if kept:
        assert response["X-Request-ID"] == incoming
    else:
        assert response["X-Request-ID"] != incoming
        assert logs.SANE.fullmatch(response["X-Request-ID"])
    assert logs.request_id.get() is None  # nothing leaks to the next request on this thread


@pytest.fixture
def memory_broker():
    """Tasks published for real, to kombu's in-process broker, and emptied after the test."""
    saved = celery_app.conf.broker_url
    celery_app.conf.update(broker_url="memory://", task_always_eager=False)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield
    with Connection("memory://") as connection:
        for name in ("ingest", "scoring"):
            connection.SimpleQueue(name).clear()
    celery_app.conf.update(broker_url=saved, task_always_eager=True)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_a_task_queued_by_a_request_carries_its_id(memory_broker):
    sub = SubscriptionFactory(licensed_seats=100)
    instance = InstanceFactory(subscription=sub, company=sub.company)
    body = payload(
        uuid=instance.uuid,
        hostname=instance.hostname,
        subscription_id=sub.name,
        recorded_at=timezone.now() - dt.timedelta(hours=1),
    )

    response = Client().post("/usage_data", orjson.dumps(body), content_type="application/json")

    assert response.status_code == 201, response.content
    with Connection("memory://") as connection:
        message = connection.SimpleQueue("scoring").get(timeout=2)
    assert message.headers["task"] == "scoring.tasks.refresh_companies"
    assert message.headers[logs.TASK_HEADER] == response["X-Request-ID"]


@pytest.mark.django_db
def test_an_eager_task_keeps_the_request_id_and_gives_it_back(json_lines):
    token = logs.request_id.set("req-eager-1")
    try:
        celery_app.tasks["scoring.tasks.refresh_sweep"].apply()
        assert logs.request_id.get() == "req-eager-1"
    finally:
        logs.request_id.reset(token)
    assert logs.current_task.get() is None
    traced = [x for x in json_lines() if x["logger"] == "celery.app.trace"]
    assert traced and traced[-1]["request_id"] == "req-eager-1", traced
    assert traced[-1]["task_name"] == "scoring.tasks.refresh_sweep"


@override_settings(LOG_FORMAT="json")
def test_the_workers_own_handlers_get_the_json_format():
    logger = logging.getLogger("tests.celery_like")
    handler = logging.StreamHandler(io.StringIO())
    logger.handlers = [handler]
    try:
        worker_log_format(logger=logger)
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert any(isinstance(f, logs.RequestIdFilter) for f in handler.filters)
    finally:
        logger.handlers = []


# --------------------------------------------------------------------------------------------------
# A real worker: JSON lines, the request id from the message, the heartbeat file, the beat job


def test_a_real_worker_logs_json_with_the_request_id_it_was_sent(tmp_path):
    """``celery worker`` with ``LOG_FORMAT=json`` on a filesystem broker and a SQLite file of
    this test's own: a message sent with a request id (as a request would) and beat's header
    runs the beat job, and the worker's line for it carries that id; the job's success is
    recorded, and the heartbeat file is touched."""
    heartbeat = tmp_path / "heartbeat"
    env = _env(tmp_path, LOG_FORMAT="json", WORKER_HEARTBEAT_FILE=str(heartbeat))
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrated = subprocess.run(
        [*manage, "migrate", "--noinput", "-v", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert migrated.returncode == 0, migrated.stderr
    send = (
        "from usage_portal.celery import app; "
        "app.send_task('scoring.tasks.refresh_sweep', queue='scoring', "
        "headers={'request_id': 'req-from-a-request-42', 'celery_beat_task': True})"
    )
    sent = subprocess.run(
        [sys.executable, "-c", send], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "usage_portal", "worker", "--pool", "solo",
             "--queues", "scoring", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        done = []
        while time.monotonic() < deadline and not (done and heartbeat.exists()):
            time.sleep(0.5)
            assert worker.poll() is None, log.read_text()[-3000:]
            done = [line for line in _json(log) if "succeeded" in line.get("message", "")]
        assert done, log.read_text()[-3000:]
        assert heartbeat.exists(), log.read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    line = done[0]
    assert line["request_id"] == "req-from-a-request-42"
    assert line["task_name"] == "scoring.tasks.refresh_sweep"
    # No line in Celery's own text format ("[2026-01-01 10:00:00,000: INFO/MainProcess] ..."):
    # the banner at start is printed, not logged (``celery --quiet`` drops it).
    assert not re.search(r"^\[\d{4}-\d\d-\d\d ", log.read_text(), re.MULTILINE)
    names = "from scoring.models import JobRun as J; print(list(J.objects.values_list('name')))"
    recorded = subprocess.run(
        [*manage, "shell", "-c", names],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert recorded.stdout.strip().splitlines()[-1] == "[('refresh-sweep',)]", recorded.stderr


def _json(path: Path) -> list[dict]:
    """The worker's log lines that are JSON objects."""
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines
