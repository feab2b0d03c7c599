"""The worker's Redis transport lets go of a message it could not acknowledge
(``usage_portal.broker.QoS``), so it never stalls or dies after Redis drops or hangs.

Found by the fault suite (tests/faults): with Redis paused, two acknowledgements timed out,
kombu kept both messages counted against the prefetch credit (1 per pool process) and stopped
polling for new ones for good; with Redis restarted, an acknowledgement through the closed
channel raised AttributeError and killed the worker. The suite's hung-Redis and Redis-restart
tests cover the real thing; these pin the rule on the QoS object itself.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import redis

from usage_portal.broker import QoS


class StubChannel:
    """What QoS touches of a kombu Redis channel, with Redis failing as told."""

    connection_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def __init__(self, failure: BaseException, *, closed: bool = False):
        self.failure = failure
        # The channel's transport, and the transport's kombu connection.
        self.connection = None if closed else type("Transport", (), {"client": object()})()
        self.unacked_key, self.unacked_index_key = "unacked", "unacked_index"
        self.unacked_mutex_key, self.unacked_mutex_expire = "unacked_mutex", 300
        self.visibility_timeout = 3600
        self.do_restore = False  # no restore at interpreter exit (a finalizer kombu registers)

    @contextmanager
    def conn_or_acquire(self, client=None):
        raise self.failure
        yield


def qos_holding(channel, *tags) -> QoS:
    qos = QoS(channel, prefetch_count=len(tags) or 1)
    for tag in tags:
        qos._delivered[tag] = object()
    return qos


def test_an_ack_that_times_out_gives_the_credit_back_and_is_still_reported():
    qos = qos_holding(
        StubChannel(redis.exceptions.TimeoutError("Timeout reading from socket")), "a", "b"
    )
    assert not qos.can_consume()
    for tag in ("a", "b"):
        with pytest.raises(redis.exceptions.TimeoutError):  # Celery logs "Couldn't ack"
            qos.ack(tag)
    assert qos.can_consume()  # before: False for good, and the worker stopped polling
    assert not qos._delivered


def test_a_reject_that_cannot_reach_redis_gives_the_credit_back():
    qos = qos_holding(StubChannel(redis.exceptions.ConnectionError("refused")), "a")
    with pytest.raises(redis.exceptions.ConnectionError):
        qos.reject("a", requeue=False)
    assert qos.can_consume()


def test_an_ack_through_a_closed_channel_does_not_kill_the_worker():
    closed = StubChannel(AttributeError("'NoneType' object has no attribute 'client'"), closed=True)
    qos = qos_holding(closed, "a")
    qos.ack("a")  # before: AttributeError, "Unrecoverable error", the worker exited
    assert qos.can_consume()


def test_a_restore_while_the_channel_is_half_closed_does_not_kill_the_worker():
    """kombu clears the transport's connection before the channel's: restore_unacked then met
    ``'NoneType' object has no attribute 'hostname'`` with the channel still holding its
    transport (a Redis restart in the fault suite)."""
    half_closed = StubChannel(AttributeError("'NoneType' object has no attribute 'hostname'"))
    half_closed.connection = type("Transport", (), {"client": None})()
    qos = qos_holding(half_closed, "a")
    qos.restore_unacked()
    qos.ack("a")
    assert not qos._delivered


def test_any_other_error_is_a_bug_and_keeps_the_message():
    qos = qos_holding(StubChannel(ValueError("not an outage")), "a")
    with pytest.raises(ValueError):
        qos.ack("a")
    assert "a" in qos._delivered
    open_channel = StubChannel(AttributeError("a real bug"))
    qos = qos_holding(open_channel, "b")
    with pytest.raises(AttributeError):
        qos.ack("b")
