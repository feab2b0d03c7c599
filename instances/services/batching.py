"""Group commit for the ping endpoint: pings that arrive together are stored together.

``POST /usage_data`` stores one ping per request, and storing costs the same dozen queries and
one refresh task whether a batch holds one ping or thirty (``pings_store`` is set-based). Under
load a web process serves several requests at once (gunicorn's threads), so the requests that
arrive while a batch is being stored wait for it and are then stored together, in one
transaction, one set of queries and one refresh task for all their accounts. At rest a ping is
stored at once (nothing waits for company); under load batches grow with the load. Databases
commit the same way: the log is flushed once for every transaction that committed meanwhile.

Every request still learns its own outcome before it is answered, and its ping is committed by
then. A batch the database refuses for one ping's value (``DataError``) is stored again one ping
at a time, so each request gets its own answer; any other error (the database is away) is every
waiting request's error, raised in its own thread.

Leader and followers: the thread that finds no batch running becomes the leader, takes the pings
waiting (its own first), stores them in its own database connection, wakes each of their
requests, and passes the lead to the oldest request still waiting, which stores the next batch.
No thread of its own, and no request waits longer than the batch before its own.

Under load a leader lingers: when the batch before held several pings and ended within the
last second, it waits (at most ``LINGER_SECONDS``) until as many are waiting again. Without
that, the threads of a busy process reached the batcher a few at a time (they share one GIL, and
each request also passes through gunicorn and the client between two pings), so batches stayed
at two or three pings, each paying a whole batch's queries and refresh task. At rest the batch
before held one ping, or ended long ago, and nothing waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import DataError

from instances.models import PingSource
from instances.services.inputs import PingInput
from instances.services.store import StoreOutcome, pings_store

#: Most pings in one batch: each full-size ping holds ~80 KB of raw JSON until it is stored.
MAX_BATCH = 32

#: Longest a leader waits for a batch as large as the one before. Measured with 16 clients on 2
#: cores: without waiting, 300 pings/s at 3.8 ms of server CPU each; 10 ms, 350/s at 3.2 ms;
#: 20 ms, about the same; a latency of 40-50 ms per ping either way.
LINGER_SECONDS = 0.01

#: A batch of several pings that ended longer ago than this says nothing about the load now.
BUSY_FOR = 1.0

Store = Callable[[Sequence[PingInput]], list[StoreOutcome]]


@dataclass(eq=False)
class _Waiting:
    item: PingInput
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to store the next batch, not with an outcome
    outcome: StoreOutcome | None = None
    error: BaseException | None = None

    def result(self) -> StoreOutcome:
        if self.error is not None:
            raise self.error
        if self.outcome is None:  # a bug in this module, never a refusal
            raise RuntimeError("ping batch ended without this ping's outcome")
        return self.outcome


class PingBatcher:
    """Stores the pings of concurrent requests in shared batches (see the module docstring)."""

    def __init__(
        self, store: Store, *, max_batch: int = MAX_BATCH, linger: float = LINGER_SECONDS
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._linger = linger
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Waiting] = []
        self._running = False
        self._last_batch = 0  # how many pings the batch before held
        self._last_end = 0.0  # and when it ended (time.monotonic)

    def store(self, item: PingInput) -> StoreOutcome:
        """Store ``item`` (with whatever else is waiting): its outcome, or its error raised."""
        me = _Waiting(item)
        with self._lock:
            self._queue.append(me)
            self._arrived.notify()
            leader = not self._running
            self._running = True
        if not leader:
            me.woken.wait()
        if leader or me.lead:
            self._lead()
        return me.result()

    def _lead(self) -> None:
        """Store one batch (the oldest waiting pings, this thread's among them), wake its
        requests, and hand the lead to the next waiting request or end the run."""
        with self._lock:
            busy = self._last_batch > 1 and time.monotonic() - self._last_end < BUSY_FOR
            if busy:  # under load: wait for as many as the batch before
                wanted = min(self._last_batch, self._max_batch)
                deadline = time.monotonic() + self._linger
                while len(self._queue) < wanted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._arrived.wait(left)
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            self._last_batch = len(batch)
        try:
            self._store_batch(batch)
        finally:
            with self._lock:
                self._last_end = time.monotonic()
                heir = self._queue[0] if self._queue else None
                self._running = heir is not None
            for waiting in batch:
                waiting.woken.set()
            if heir is not None:
                heir.lead = True
                heir.woken.set()

    def _store_batch(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = self._store([w.item for w in batch])
        except DataError as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # One ping holds what the database refused: alone, each gets its own answer.
            for waiting in batch:
                self._store_batch([waiting])
            return
        except BaseException as exc:  # every waiting request raises it in its own thread
            for waiting in batch:
                waiting.error = exc
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            waiting.outcome = outcome


def _store_over_http(items: Sequence[PingInput]) -> list[StoreOutcome]:
    return pings_store(inputs=items, source=PingSource.HTTP).outcomes


#: The web process's batcher for ``POST /usage_data`` (one per process: threads share it).
http_pings = PingBatcher(_store_over_http)
