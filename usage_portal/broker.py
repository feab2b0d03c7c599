"""kombu's Redis transport, with one fault fixed: a worker no longer dies when Redis drops.

When the broker connection is lost while the worker holds unacknowledged messages (an ETA task
waiting for its time, a task running with ``acks_late``), Celery closes the connection and kombu
tries to put those messages back at once (``QoS.restore_unacked``). By then the transport has
let go of its connection details, so kombu 5.7 fails with ``AttributeError: 'NoneType' object
has no attribute 'hostname'`` — not one of the connection errors Celery ignores — and the worker
exits ("Unrecoverable error"), 2 runs out of 2 with a pending label change
(tests/scoring/test_worker_faults.py reproduces it).

Restoring early is only an optimisation: with Redis, an unacknowledged message also stays in the
broker's unacked index and is redelivered after the visibility timeout, and what a lost message
would have done is recorded in the database anyway (pending refreshes, due label changes) for the
beat sweeps. So when the early restore cannot reach Redis, it is skipped and the worker goes on
to reconnect. Selected by ``CELERY_BROKER_TRANSPORT`` when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except AttributeError:  # the transport was closed under us: Redis went away
            logger.warning(
                "broker connection lost: %d unacknowledged message(s) left for redelivery "
                "after the visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
