"""The readiness checks: can this process reach its database, its cache and its broker?

Each check is bounded by a short timeout — the database by a statement timeout (and
``DB_CONNECT_TIMEOUT``), the cache and the broker by their socket timeouts
(``CACHE_SOCKET_TIMEOUT``, ``BROKER_SOCKET_TIMEOUT``) — and reports only whether it passed, how
long it took and the name of the error: never a message, which may carry a hostname, a user or
a password from a connection string.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from usage_portal.celery import app as celery_app

logger = logging.getLogger(__name__)

#: A readiness query that takes longer than this is a database that is not ready.
STATEMENT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    ms: int
    error: str = ""

    def as_json(self) -> dict:
        body: dict = {"ok": self.ok, "ms": self.ms}
        if self.error:
            body["error"] = self.error
        return body


class CacheMismatch(Exception):
    """The cache answered, but not with what was just put in it."""


def database_check() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    # SET LOCAL lasts to the end of the transaction: the timeout never leaks to the
    # connection's next user (CONN_MAX_AGE keeps connections).
    with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
        cursor.execute("SELECT 1")
        cursor.fetchone()


def cache_check() -> None:
    cache = caches["default"]
    # A key of its own per probe: two processes probing at once must not read each other's.
    key, value = f"ops:readyz:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=10)
    if cache.get(key) != value:
        raise CacheMismatch
    cache.delete(key)


def broker_check() -> None:
    # A connection of its own (not the producer pool's), opened and closed here, bounded by the
    # broker's connect and socket timeouts; no retry: a probe is retried by its prober.
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0)


CHECKS: dict[str, Callable[[], None]] = {
    "database": database_check,
    "cache": cache_check,
    "broker": broker_check,
}


def check_run(name: str, check: Callable[[], None]) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # every failure is "not ready": reported by its kind, logged whole
        ms = round((time.perf_counter() - started) * 1000)
        logger.warning("readiness: %s failed after %d ms: %r", name, ms, exc)
        return CheckResult(ok=False, ms=ms, error=error_name(exc))
    return CheckResult(ok=True, ms=round((time.perf_counter() - started) * 1000))


def error_name(exc: BaseException) -> str:
    """The name of what went wrong, most specific first: kombu and Django wrap the driver's
    error (redis' ConnectionError, psycopg's OperationalError) in their own."""
    cause = exc.__cause__ or exc
    return type(cause).__name__


def readiness() -> dict[str, CheckResult]:
    return {name: check_run(name, check) for name, check in CHECKS.items()}
