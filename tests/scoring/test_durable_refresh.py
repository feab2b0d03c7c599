""" "Data changed → refresh" is durable: a committed write never leaves scores silently stale.

With the broker down, a write used to commit and then answer 500 from its ``on_commit(.delay())``;
the company's snapshot no longer matched its inputs and nothing would ever fix it (re-posting
the ping answers "duplicate" and queues nothing). Now the writer's transaction records a
``PendingRefresh``; publishing the task is best-effort; the refresh that covers a row settles it,
and the beat sweep refreshes whatever is left.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from accounts.changes import ALL_HISTORY, companies_changed
from scoring import tasks
from scoring.models import PendingRefresh, ScoreSnapshot
from scoring.services import companies_refresh, pending_refreshes_drain
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.ingest_support import payload

pytestmark = pytest.mark.django_db

# Nothing listens there: every connection is refused at once, as with a stopped Redis.
DEAD_BROKER = "redis://127.0.0.1:9/0"


@pytest.fixture
def account():
    sub = SubscriptionFactory(licensed_seats=200, plan="premium")
    sub.company.customer_since = timezone.now().date() - dt.timedelta(days=400)
    sub.company.save()
    return InstanceFactory(subscription=sub, company=sub.company)


@pytest.fixture
def broker_down():
    """The real Celery app publishing to a broker that refuses connections."""
    app = tasks.refresh_companies.app
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    saved_options = app.conf.broker_transport_options
    app.conf.update(
        broker_url=DEAD_BROKER,
        task_always_eager=False,
        broker_transport_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    )
    _forget_connections(app)
    yield app
    _forget_connections(app)
    app.conf.update(**saved, broker_transport_options=saved_options)


def _forget_connections(app) -> None:
    # The app caches its connection and producer pools; the next publish builds them anew from
    # the configuration in force (the dead broker, or the test settings again).
    app._pool = None
    app.amqp._producer_pool = None


def snapshot_users(company) -> int | None:
    snap = ScoreSnapshot.objects.filter(company=company, is_current=True).first()
    return snap.billable_users if snap else None


def test_a_write_commits_and_its_refresh_waits_when_the_broker_is_down(
    account, broker_down, django_capture_on_commit_callbacks
):
    store_ping(account, days_ago=8, metrics={"billable_users": 80}, refresh=False)
    companies_refresh(company_ids=[account.company_id])
    assert snapshot_users(account.company) == 80

    with django_capture_on_commit_callbacks(execute=True):
        store_ping(account, days_ago=1, metrics={"billable_users": 150})  # no exception

    assert snapshot_users(account.company) == 80  # the task never reached a worker
    pending = PendingRefresh.objects.get()
    assert pending.company_id == account.company_id

    assert pending_refreshes_drain(older_than=dt.timedelta(0)) == 1

    assert snapshot_users(account.company) == 150
    assert not PendingRefresh.objects.exists()


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_a_ping_posted_while_the_broker_is_down_is_answered_as_stored(
    account, broker_down, django_capture_on_commit_callbacks
):
    body = payload(
        uuid=account.uuid,
        hostname=account.hostname,
        subscription_id=account.subscription.name,
        recorded_at=timezone.now() - dt.timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post("/usage_data", orjson.dumps(body), content_type="application/json")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "accepted"
    assert PendingRefresh.objects.filter(company_id=account.company_id).exists()


def test_a_rolled_back_write_leaves_nothing_pending(account):
    with pytest.raises(RuntimeError), transaction.atomic():
        companies_changed([account.company_id], reason="new ping")
        raise RuntimeError("the write failed")

    assert not PendingRefresh.objects.exists()


def test_a_refresh_settles_only_the_changes_it_covers(account):
    march = dt.date(2026, 3, 1)
    with transaction.atomic():
        companies_changed([account.company_id], since=None, reason="sentiment")
        companies_changed([account.company_id], since=march, reason="new ping")
        companies_changed([account.company_id], since=ALL_HISTORY, reason="label")

    companies_refresh(company_ids=[account.company_id], history=False)
    assert sorted(PendingRefresh.objects.values_list("reason", flat=True)) == ["label", "new ping"]

    companies_refresh(company_ids=[account.company_id], history=True, since=march)
    assert list(PendingRefresh.objects.values_list("reason", flat=True)) == ["label"]

    companies_refresh(company_ids=[account.company_id], history=True, since=None)
    assert not PendingRefresh.objects.exists()


def test_the_sweep_leaves_fresh_changes_to_their_own_task(account):
    with transaction.atomic():
        companies_changed([account.company_id], reason="new ping")

    assert pending_refreshes_drain(older_than=dt.timedelta(minutes=2)) == 0
    assert PendingRefresh.objects.count() == 1
    later = timezone.now() + dt.timedelta(minutes=3)
    assert pending_refreshes_drain(older_than=dt.timedelta(minutes=2), now=later) == 1
    assert not PendingRefresh.objects.exists()


def test_the_sweep_rebuilds_from_the_earliest_day_any_change_named(account, monkeypatch):
    calls = []
    monkeypatch.setattr("scoring.services.companies_refresh", lambda **kw: calls.append(kw) or 0)
    PendingRefresh.objects.bulk_create(
        [
            PendingRefresh(company_id=account.company_id, since=dt.date(2026, 5, 1)),
            PendingRefresh(company_id=account.company_id, since=dt.date(2026, 2, 1)),
            PendingRefresh(company_id=account.company_id, since=None),
        ]
    )
    pending_refreshes_drain(older_than=dt.timedelta(0))
    assert calls == [
        {
            "company_ids": [account.company_id],
            "reason": "sweep",
            "history": True,
            "since": dt.date(2026, 2, 1),
        }
    ]


def test_a_full_recompute_settles_what_was_pending_before_it(account):
    from scoring.services import companies_recompute_all

    with transaction.atomic():
        companies_changed([account.company_id], since=None, reason="sentiment")
        companies_changed([account.company_id], since=dt.date(2026, 3, 1), reason="new ping")

    companies_recompute_all(history=False)
    assert list(PendingRefresh.objects.values_list("reason", flat=True)) == ["new ping"]

    companies_recompute_all(history=True)
    assert not PendingRefresh.objects.exists()


def test_a_burst_of_changes_is_refreshed_once(account, django_assert_max_num_queries):
    """One task per ping is queued; the first to run settles the whole burst, the rest skip.

    Before, every task recomputed the account (and its monthly history) again: a burst of 50
    pings for one account cost 50 refreshes.
    """
    store_ping(account, days_ago=30, metrics={"billable_users": 50}, refresh=False)
    companies_refresh(company_ids=[account.company_id])
    snapshots_before = ScoreSnapshot.objects.count()
    burst = 5
    for n in range(burst):  # committed, each with its own pending row (and, live, its task)
        ping = store_ping(
            account, days_ago=5 - n, metrics={"billable_users": 60 + n}, refresh=False
        )
        with transaction.atomic():
            companies_changed([account.company_id], since=ping.recorded_at.date(), reason="ping")
    assert PendingRefresh.objects.count() == burst

    queued = {"company_ids": [account.company_id], "reason": "new ping", "history": True}
    assert tasks.refresh_companies.apply(kwargs=queued | {"only_pending": True}).get() == 1
    assert snapshot_users(account.company) == 60 + burst - 1
    assert not PendingRefresh.objects.exists()
    for _ in range(burst - 1):
        with django_assert_max_num_queries(1):  # the pending check, nothing else
            assert tasks.refresh_companies.apply(kwargs=queued | {"only_pending": True}).get() == 0
    assert ScoreSnapshot.objects.count() == snapshots_before + 1


def test_only_pending_still_refreshes_what_is_left(account):
    other = InstanceFactory(subscription=SubscriptionFactory(licensed_seats=100), company=None)
    other.company = other.subscription.company
    other.save()
    with transaction.atomic():
        companies_changed([other.company_id], reason="new ping")
    written = companies_refresh(
        company_ids=[account.company_id, other.company_id], only_pending=True
    )
    assert written == 1
    assert ScoreSnapshot.objects.filter(company_id=other.company_id, is_current=True).exists()
    assert not ScoreSnapshot.objects.filter(company_id=account.company_id).exists()
    # Without only_pending (a direct call, an older message) every company is scored.
    assert companies_refresh(company_ids=[account.company_id]) == 1


def test_the_sweep_rebuilds_history_in_small_chunks(monkeypatch):
    """After an outage thousands of accounts wait for the sweep; a history rebuild of 1,000 at
    once held ~800 MB of a worker (50,000-account bench): with history it takes 25 at a time."""
    from accounts.models import Company
    from scoring import services

    companies = Company.objects.bulk_create(
        [
            Company(name=f"Swept {n}", crm_account_id=f"SWEEP{n:04d}", segment="Growth")
            for n in range(60)
        ]
    )
    PendingRefresh.objects.bulk_create(
        [PendingRefresh(company=c, since=dt.date(2026, 5, 1)) for c in companies[:55]]
        + [PendingRefresh(company=c, since=None) for c in companies[55:]]
    )
    calls = []
    monkeypatch.setattr(
        services,
        "companies_refresh",
        lambda *, company_ids, history, **_: calls.append((len(company_ids), history)),
    )

    assert pending_refreshes_drain(older_than=dt.timedelta(0), now=timezone.now()) == 60

    assert sorted(calls) == [(5, False), (5, True), (25, True), (25, True)]
