"""Group commit of ``POST /usage_data`` (``instances.services.batching``).

The batcher's own rules run against a stand-in store (threads made to meet on purpose); the last
test posts concurrently to a running server on PostgreSQL, where batches really form.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import DataError, OperationalError
from django.test import override_settings

from instances.models import UsagePing
from instances.services import batching
from instances.services.batching import PingBatcher
from instances.services.store import StoreOutcome
from tests.ingest_support import WHEN, payload


class Recorder:
    """A stand-in store: records each batch, and can hold the first one until told."""

    def __init__(self, *, refuse=(), fail: BaseException | None = None):
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.hold_first = False
        self.refuse = set(refuse)
        self.fail = fail

    def __call__(self, items):
        labels = [item.label for item in items]
        self.batches.append(labels)
        if self.hold_first and len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        if self.refuse & set(labels):
            raise DataError("value out of range")
        return [StoreOutcome("accepted", 1000 + int(label), False, label) for label in labels]


class Item:
    def __init__(self, label: str):
        self.label = label


def _queued(batcher: PingBatcher, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(batcher._queue) < count:
        assert time.monotonic() < deadline, "threads never queued"
        time.sleep(0.001)


def _held_run(recorder: Recorder, batcher: PingBatcher, labels: list[str]) -> dict:
    """The first ping's batch held while the others arrive; {label: outcome or error}."""
    recorder.hold_first = True
    results: dict = {}

    def send(label):
        try:
            results[label] = batcher.store(Item(label))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            results[label] = exc

    with ThreadPoolExecutor(len(labels)) as pool:
        pool.submit(send, labels[0])
        assert recorder.entered.wait(10)
        for label in labels[1:]:
            pool.submit(send, label)
        _queued(batcher, len(labels) - 1)
        recorder.release.set()
    return results


def test_a_ping_alone_is_stored_at_once_in_a_batch_of_its_own():
    recorder = Recorder()
    batcher = PingBatcher(recorder)

    outcome = batcher.store(Item("7"))

    assert (outcome.status, outcome.ping_id, outcome.label) == ("accepted", 1007, "7")
    assert recorder.batches == [["7"]]
    assert not batcher._running and not batcher._queue


def test_pings_arriving_during_a_batch_are_stored_together_each_with_its_own_outcome():
    recorder = Recorder()
    batcher = PingBatcher(recorder)

    results = _held_run(recorder, batcher, [str(n) for n in range(1, 9)])

    assert recorder.batches[0] == ["1"]
    assert sorted(recorder.batches[1]) == [str(n) for n in range(2, 9)]  # one batch of seven
    assert len(recorder.batches) == 2
    assert {label: r.ping_id for label, r in results.items()} == {
        str(n): 1000 + n for n in range(1, 9)
    }
    assert not batcher._running and not batcher._queue


def test_batches_are_capped_and_every_waiting_ping_is_still_stored():
    recorder = Recorder()
    batcher = PingBatcher(recorder, max_batch=3)

    results = _held_run(recorder, batcher, [str(n) for n in range(1, 9)])

    assert [len(b) for b in recorder.batches] == [1, 3, 3, 1]
    assert sorted(label for b in recorder.batches for label in b) == sorted(results)
    assert all(isinstance(r, StoreOutcome) for r in results.values())


def test_a_value_the_database_refuses_fails_only_its_own_request():
    recorder = Recorder(refuse={"5"})
    batcher = PingBatcher(recorder)

    results = _held_run(recorder, batcher, [str(n) for n in range(1, 7)])

    assert isinstance(results["5"], DataError)
    assert {k: v.ping_id for k, v in results.items() if k != "5"} == {
        str(n): 1000 + n for n in (1, 2, 3, 4, 6)
    }
    # The batch of five was refused whole, then each ping went alone.
    assert sorted(recorder.batches[1]) == ["2", "3", "4", "5", "6"]
    assert sorted(b[0] for b in recorder.batches[2:]) == ["2", "3", "4", "5", "6"]


def test_an_outage_is_every_waiting_requests_error_and_the_batcher_recovers():
    recorder = Recorder(fail=OperationalError("server closed the connection"))
    batcher = PingBatcher(recorder)

    results = _held_run(recorder, batcher, ["1", "2", "3"])

    assert all(isinstance(r, OperationalError) for r in results.values())
    assert len(recorder.batches) == 2  # not retried ping by ping against a database that is away
    recorder.fail = None
    assert batcher.store(Item("4")).ping_id == 1004


# --------------------------------------------------------------------------------------------------
# Under load a leader lingers for a batch as large as the one before


def _busy(batcher: PingBatcher, recorder: Recorder, size: int) -> None:
    """Leave ``batcher`` as after a batch of ``size`` pings (labels 901…)."""
    _held_run(recorder, batcher, [str(900 + n) for n in range(size + 1)])
    recorder.batches.clear()
    recorder.hold_first = False
    recorder.release.clear()
    recorder.entered.clear()


def test_after_a_batch_of_several_the_next_leader_waits_for_as_many_and_stores_them_together():
    recorder = Recorder()
    batcher = PingBatcher(recorder, linger=10)
    _busy(batcher, recorder, 3)  # the batch before held three

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.store, Item("1"))
        _queued(batcher, 1)
        time.sleep(0.05)
        assert recorder.batches == []  # the leader is waiting for two more
        rest = [pool.submit(batcher.store, Item(label)) for label in ("2", "3")]
        assert first.result(timeout=5).ping_id == 1001
        assert [r.result(timeout=5).ping_id for r in rest] == [1002, 1003]

    assert [sorted(b) for b in recorder.batches] == [["1", "2", "3"]]


def test_a_leader_waits_no_longer_than_the_linger():
    recorder = Recorder()
    batcher = PingBatcher(recorder, linger=0.05)
    _busy(batcher, recorder, 4)

    started = time.monotonic()
    assert batcher.store(Item("1")).ping_id == 1001
    waited = time.monotonic() - started

    assert 0.04 <= waited < 5
    assert recorder.batches == [["1"]]
    # That batch held one: the next leader does not wait at all.
    started = time.monotonic()
    assert batcher.store(Item("2")).ping_id == 1002
    assert time.monotonic() - started < 0.04


def test_a_ping_at_rest_waits_for_nothing():
    recorder = Recorder()
    batcher = PingBatcher(recorder, linger=10)

    started = time.monotonic()
    assert batcher.store(Item("7")).ping_id == 1007

    assert time.monotonic() - started < 5
    assert recorder.batches == [["7"]]


def test_a_busy_spell_long_past_makes_no_one_wait(monkeypatch):
    recorder = Recorder()
    batcher = PingBatcher(recorder, linger=10)
    _busy(batcher, recorder, 5)
    real, later = time.monotonic, batching.BUSY_FOR + 1
    monkeypatch.setattr(batching.time, "monotonic", lambda: real() + later)

    started = real()
    assert batcher.store(Item("7")).ping_id == 1007
    assert real() - started < 5  # not the 10 s linger
    assert recorder.batches == [["7"]]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_concurrent_posts_to_a_running_server_share_batches_and_each_is_stored_once(
    live_server, monkeypatch
):
    sizes: list[int] = []
    real = batching.http_pings._store

    def recording(items):
        sizes.append(len(items))
        time.sleep(0.05)  # a busy database: the next requests arrive while this batch runs
        return real(items)

    monkeypatch.setattr(batching.http_pings, "_store", recording)
    bodies = [
        payload(uuid=f"00000000-0000-4000-8000-{n:012d}", recorded_at=WHEN + timedelta(hours=n))
        for n in range(24)
    ]

    def post(body):
        response = requests.post(f"{live_server.url}/usage_data", json=body, timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, bodies))

    assert [status for status, _ in answers] == [201] * 24
    ids = [body["conv_index"]["usage_data_id"] for _, body in answers]
    assert len(set(ids)) == 24
    assert UsagePing.objects.count() == 24
    # Each answer names the row of its own ping.
    stored = dict(UsagePing.objects.values_list("id", "instance__uuid"))
    assert [stored[i] for i in ids] == [b["uuid"] for b in bodies]
    assert sum(sizes) == 24 and max(sizes) > 1
