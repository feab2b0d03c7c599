"""Pages read from a PostgreSQL streaming replica; writes, and what a person just wrote, from
the primary.

On only when ``DATABASE_REPLICA_URL`` is set: the settings then add the ``replica`` alias,
``ReplicaRouter`` and ``ReplicaMiddleware`` (docs/deploy.md, "A read replica"). The rules, each
in one place:

* Only a web request's GET or HEAD reads from the replica, and only one the middleware let in
  (``_Reading``). Celery tasks, management commands and the shell have no request and read from
  the primary: what they read decides what they write (scores, labels, digests), and a copy a
  few seconds behind must never feed that.
* Writes go to the primary, and so does every read after the request's first write and every
  read inside ``transaction.atomic``: such a read decides a write and must see the
  transaction's own rows.
* A signed-in person who wrote (a POST, PUT, PATCH or DELETE that succeeded, or any write the
  router saw) reads from the primary for ``REPLICA_STICKY_SECONDS`` after (``request_wrote``),
  carried by a short-lived signed cookie: the page after a form shows the change even while the
  replica lags.
* Sessions are always read from the primary: they change on almost every request of a person
  (a sign-in, a message, the time zone), and one read a second late signs the person out.
* A replica that cannot be reached is not a 500: the request reads from the primary, and so
  does this process for ``REPLICA_RETRY_SECONDS`` (``replica_reachable``). A replica that fails
  in the middle of a GET that wrote nothing has that GET served again from the primary.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, Error, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA = "replica"
#: Methods that only read (HTTP's safe methods the portal serves).
READ_METHODS = frozenset({"GET", "HEAD"})
#: Models always read from the primary (and whose writes do not make a person sticky).
PRIMARY_ONLY = frozenset({"sessions.Session"})
#: The cookie saying "this browser's person wrote a moment ago"; its signature dates it.
COOKIE = "portal_primary"
_SALT = "usage_portal.dbrouting.sticky"


@dataclass(slots=True)
class _Reading:
    """What one request may read from, and what it did."""

    replica: bool  # may read from the replica (a GET or HEAD outside the sticky window)
    checked: bool = False  # the replica's connection was checked (once a request, at need)
    wrote: bool = False
    used_replica: bool = False


_current: ContextVar[_Reading | None] = ContextVar("usage_portal_replica_reading", default=None)
#: Until when (time.monotonic) this process reads from the primary only: the replica failed.
_down_until = 0.0


def replica_reachable() -> bool:
    """Whether this thread's replica connection works, at most once per request.

    With ``CONN_HEALTH_CHECKS`` Django checks a kept connection at its first query anyway: done
    here it costs nothing more, and a dead replica turns into the primary instead of an error.
    """
    global _down_until
    if time.monotonic() < _down_until:
        return False
    connection = connections[REPLICA]
    try:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    except Error as exc:
        replica_down(f"unreachable: {exc}")
        return False
    return True


def replica_down(why: str) -> None:
    """Read from the primary only, in this process, for ``REPLICA_RETRY_SECONDS``."""
    global _down_until
    _down_until = time.monotonic() + settings.REPLICA_RETRY_SECONDS
    logger.warning(
        "read replica %s; reading from the primary for %s s", why, settings.REPLICA_RETRY_SECONDS
    )


def request_wrote(*, method: str, status: int, router_saw_write: bool) -> bool:
    """Whether a request wrote, so its person's next requests read from the primary (the
    rule): any write the router saw, or a write method that succeeded (a write the router
    cannot see, raw SQL, counts too)."""
    return router_saw_write or (method not in READ_METHODS and status < 400)


class ReplicaRouter:
    """Django's database router for the ``replica`` alias."""

    def db_for_read(self, model, **hints) -> str:
        reading = _current.get()
        if (
            reading is None
            or not reading.replica
            or reading.wrote
            or model._meta.label in PRIMARY_ONLY
            or connections[DEFAULT_DB_ALIAS].in_atomic_block
        ):
            return DEFAULT_DB_ALIAS
        if not reading.checked:
            reading.checked = True
            reading.replica = replica_reachable()
            if not reading.replica:
                return DEFAULT_DB_ALIAS
        reading.used_replica = True
        return REPLICA

    def db_for_write(self, model, **hints) -> str:
        reading = _current.get()
        if reading is not None and model._meta.label not in PRIMARY_ONLY:
            reading.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # One database, two doors: an object read from the replica may point at one read from
        # the primary.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool | None:
        # The replica is PostgreSQL's copy of the primary, read-only: migrations reach it by
        # replication.
        return False if db == REPLICA else None


class ReplicaMiddleware:
    """Lets a request read from the replica, and makes a person who wrote sticky to the primary.

    After the session middleware: the session's own save, after the view, is no write of the
    person's.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sticky = settings.REPLICA_STICKY_SECONDS
        reading = _Reading(replica=request.method in READ_METHODS and not _is_sticky(request))
        response = self._serve(request, reading)
        # The replica failed mid-request (stopped between the check and a query, a query
        # cancelled by replay): a GET that wrote nothing is served again, from the primary.
        # Django's error wrapper marks the connection a query failed on.
        if (
            reading.used_replica
            and not reading.wrote
            and response.status_code >= 500
            and connections[REPLICA].errors_occurred
        ):
            replica_down("failed during a request")
            reading = _Reading(replica=False)
            response = self._serve(request, reading)
        if request_wrote(
            method=request.method or "",
            status=response.status_code,
            router_saw_write=reading.wrote,
        ) and _signed_in(request):
            response.set_signed_cookie(
                COOKIE,
                "1",
                salt=_SALT,
                max_age=sticky,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response

    def _serve(self, request: HttpRequest, reading: _Reading) -> HttpResponse:
        token = _current.set(reading)
        try:
            return self.get_response(request)
        finally:
            # gunicorn's threads serve many requests: the next one starts from nothing.
            _current.reset(token)


def _signed_in(request: HttpRequest) -> bool:
    # Asked only after a write: a sender's ping has no session, so this costs it no query.
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated


def _is_sticky(request: HttpRequest) -> bool:
    # The signature's own timestamp is the window: a kept or copied cookie expires anyway.
    return (
        COOKIE in request.COOKIES
        and request.get_signed_cookie(
            COOKIE, default=None, salt=_SALT, max_age=settings.REPLICA_STICKY_SECONDS
        )
        is not None
    )
