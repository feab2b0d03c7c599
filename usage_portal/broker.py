"""kombu's Redis transport, with its faults fixed: a worker neither dies nor stalls when Redis
drops or hangs (three faults, below and at ``QoS.ack``).

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
to reconnect. Every redis:// URL selects it (``usage_portal.celery`` maps the scheme).
"""

from __future__ import annotations

import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def _closed(self) -> bool:
        """The channel was let go: its transport is gone, or the transport's connection is
        (kombu clears them in that order while closing, and either is None mid-way)."""
        transport = getattr(self.channel, "connection", None)
        return transport is None or getattr(transport, "client", None) is None

    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except AttributeError:  # the transport was closed under us: Redis went away
            if not self._closed():
                raise
            logger.warning(
                "broker connection lost: %d unacknowledged message(s) left for redelivery "
                "after the visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None

    # Two faults on the way out, both found by the fault suite (tests/faults):
    #
    # - A task that finishes after its channel was closed (Redis restarted meanwhile)
    #   acknowledges through the dead channel; kombu's ``ack_log_error`` catches only connection
    #   errors, so the AttributeError killed the worker ("Unrecoverable error: 'NoneType' object
    #   has no attribute 'client'").
    # - An acknowledgement that times out (Redis hung) is logged ("Couldn't ack") but kombu
    #   keeps the message counted as delivered: with prefetch 1 per process, two such messages
    #   used up the worker's credit, kombu stopped polling for messages until credit returned,
    #   and it never did — the worker sat idle for good after Redis came back.
    #
    # Either way the message stays in Redis' unacked index and runs once more after the
    # visibility timeout (every task is idempotent); locally it is let go, so the worker goes on.
    def ack(self, delivery_tag):
        try:
            return super().ack(delivery_tag)
        except AttributeError as exc:
            self._left_for_redelivery(exc, delivery_tag, "acknowledged")
        except Exception as exc:
            self._let_go_and_raise(exc, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        try:
            return super().reject(delivery_tag, requeue=requeue)
        except AttributeError as exc:
            self._left_for_redelivery(exc, delivery_tag, "rejected")
        except Exception as exc:
            self._let_go_and_raise(exc, delivery_tag)

    def _left_for_redelivery(self, exc: AttributeError, delivery_tag, what: str) -> None:
        if not self._closed():
            raise exc  # not the closed-channel fault: a bug to see
        logger.warning(
            "broker connection lost: message %s could not be %s; Redis redelivers it after the "
            "visibility timeout",
            delivery_tag,
            what,
        )
        self._delivered.pop(delivery_tag, None)

    def _let_go_and_raise(self, exc: Exception, delivery_tag) -> None:
        if isinstance(exc, self.channel.connection_errors):
            self._delivered.pop(delivery_tag, None)  # the credit returns; Redis keeps the message
        raise exc  # still reported: Celery logs "Couldn't ack" and reconnects as before


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
