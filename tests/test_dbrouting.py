"""The read replica's rules (usage_portal.dbrouting): who reads from the replica, and when not.

The rules are checked through the real middleware and Django's router (``django.db.router``
with ``ReplicaRouter`` installed); the replica's connection is a stand-in that can be made to
fail. tests/test_replica_integration.py runs the same against a real PostgreSQL standby.
"""

from __future__ import annotations

import secrets
import time
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.models import Session
from django.core import signing
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, router, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from accounts.models import Company
from tests.test_settings import printed, run_django
from usage_portal import dbrouting
from usage_portal.dbrouting import COOKIE, REPLICA, ReplicaMiddleware, ReplicaRouter

SIGNED_IN = SimpleNamespace(is_authenticated=True)


class StandInReplica:
    """The replica's connection as the router sees it: reachable or not, and counted."""

    def __init__(self) -> None:
        self.up = True
        self.attempts = 0
        self.errors_occurred = False

    def close_if_health_check_failed(self) -> None:
        pass

    def ensure_connection(self) -> None:
        self.attempts += 1
        if not self.up:
            raise OperationalError("connection to server at 127.0.0.1 refused")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def replica(settings, monkeypatch):
    settings.DATABASE_ROUTERS = ["usage_portal.dbrouting.ReplicaRouter"]
    settings.REPLICA_STICKY_SECONDS = 10
    settings.REPLICA_RETRY_SECONDS = 5
    stand_in = StandInReplica()
    monkeypatch.setattr(
        dbrouting, "connections", {REPLICA: stand_in, DEFAULT_DB_ALIAS: connections["default"]}
    )
    monkeypatch.setattr(dbrouting, "_down_until", 0.0)
    stand_in.clock = Clock()
    monkeypatch.setattr(dbrouting, "time", stand_in.clock)
    return stand_in


def serve(view, method: str = "GET", *, user=None, cookies: dict | None = None):
    request = getattr(RequestFactory(), method.lower())("/accounts/1/")
    request.user = user or AnonymousUser()
    request.COOKIES.update(cookies or {})
    return ReplicaMiddleware(view)(request)


def reading(seen: list, model=Company, status: int = 200):
    def view(request):
        seen.append(router.db_for_read(model))
        return HttpResponse(status=status)

    return view


def writing(seen: list, status: int = 302):
    def view(request):
        seen.append(router.db_for_write(Company))
        seen.append(router.db_for_read(Company))
        return HttpResponse(status=status)

    return view


def sticky_cookie(response) -> dict:
    morsel = response.cookies[COOKIE]
    return {COOKIE: morsel.value}


# --------------------------------------------------------------------------------------------------
# Who reads from the replica


@pytest.mark.parametrize("user", [AnonymousUser(), SIGNED_IN], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_page_reads_from_the_replica(replica, user, method):
    seen = []
    response = serve(reading(seen), method, user=user)
    assert seen == [REPLICA]
    assert COOKIE not in response.cookies
    assert replica.attempts == 1


def test_the_replica_is_checked_once_per_request_and_not_at_all_without_a_read(replica):
    seen = []

    def view(request):
        seen.extend(router.db_for_read(Company) for _ in range(3))
        return HttpResponse()

    serve(view)
    serve(lambda request: HttpResponse())
    assert seen == [REPLICA] * 3
    assert replica.attempts == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_write_request_reads_and_writes_the_primary(replica, method):
    seen = []
    serve(reading(seen), method, user=SIGNED_IN)
    assert seen == [DEFAULT_DB_ALIAS]
    assert replica.attempts == 0


def test_without_a_request_everything_reads_the_primary(replica):
    """A Celery task, a management command, the shell: no middleware let them in."""
    assert dbrouting._current.get() is None
    assert router.db_for_read(Company) == DEFAULT_DB_ALIAS
    assert router.db_for_write(Company) == DEFAULT_DB_ALIAS
    # And after a request on the same thread, nothing of it is left behind.
    serve(reading([]))
    assert router.db_for_read(Company) == DEFAULT_DB_ALIAS
    assert replica.attempts == 1


def test_sessions_are_always_read_from_the_primary(replica):
    seen = []
    serve(reading(seen, model=Session))
    assert seen == [DEFAULT_DB_ALIAS]


# --------------------------------------------------------------------------------------------------
# A person's own write, and everything right after it


def test_after_a_write_the_same_request_reads_the_primary(replica):
    seen = []
    serve(writing(seen, status=200), "GET")
    assert seen == [DEFAULT_DB_ALIAS, DEFAULT_DB_ALIAS]


def test_a_person_who_posted_reads_the_primary_until_the_window_ends(replica, monkeypatch):
    seen = []
    posted = serve(writing(seen), "POST", user=SIGNED_IN)
    morsel = posted.cookies[COOKIE]
    assert morsel["max-age"] == 10
    assert morsel["httponly"] and morsel["samesite"] == "Lax"

    serve(reading(seen), user=SIGNED_IN, cookies=sticky_cookie(posted))
    assert seen[-1] == DEFAULT_DB_ALIAS, "the page after the form read from the replica"

    # 11 s later the same cookie (a browser that kept it) no longer holds the person.
    later = time.time() + 11
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: later))
    serve(reading(seen), user=SIGNED_IN, cookies=sticky_cookie(posted))
    assert seen[-1] == REPLICA


def test_a_get_that_wrote_makes_its_person_sticky_too(replica):
    seen = []
    wrote = serve(writing(seen, status=200), "GET", user=SIGNED_IN)
    serve(reading(seen), user=SIGNED_IN, cookies=sticky_cookie(wrote))
    assert seen[-1] == DEFAULT_DB_ALIAS


def test_a_refused_form_that_wrote_nothing_leaves_the_person_on_the_replica(replica):
    response = serve(reading([], status=400), "POST", user=SIGNED_IN)
    assert COOKIE not in response.cookies


def test_an_anonymous_sender_gets_no_cookie(replica):
    """A ping (a POST with a token, no session) writes, but nobody reads pages after it."""
    response = serve(writing([], status=201), "POST")
    assert COOKIE not in response.cookies


def test_a_forged_cookie_is_ignored(replica):
    seen = []
    serve(reading(seen), user=SIGNED_IN, cookies={COOKIE: "1:forged:signature"})
    assert seen == [REPLICA]


def test_a_session_save_is_not_a_write_of_the_person(replica):
    def view(request):
        router.db_for_write(Session)
        return HttpResponse()

    response = serve(view, user=SIGNED_IN)
    assert COOKIE not in response.cookies


@pytest.mark.django_db(transaction=True)
def test_inside_an_atomic_block_reads_go_to_the_primary(replica):
    # transaction=True: no test transaction around this test, so the block is the view's own.
    seen = []

    def view(request):
        seen.append(router.db_for_read(Company))
        with transaction.atomic():
            seen.append(router.db_for_read(Company))
        seen.append(router.db_for_read(Company))
        return HttpResponse()

    serve(view)
    assert seen == [REPLICA, DEFAULT_DB_ALIAS, REPLICA]


# --------------------------------------------------------------------------------------------------
# A replica that is down


def test_an_unreachable_replica_sends_reads_to_the_primary_for_a_while(replica):
    replica.up = False
    seen = []
    first = serve(reading(seen))
    assert first.status_code == 200
    assert seen == [DEFAULT_DB_ALIAS]
    assert replica.attempts == 1

    # Within REPLICA_RETRY_SECONDS the process does not even try: no connect timeout per page.
    replica.up = True
    replica.clock.now += 4
    serve(reading(seen))
    assert seen[-1] == DEFAULT_DB_ALIAS
    assert replica.attempts == 1

    replica.clock.now += 2
    serve(reading(seen))
    assert seen[-1] == REPLICA
    assert replica.attempts == 2


def test_a_replica_failing_mid_request_has_the_page_served_from_the_primary(replica):
    seen = []

    def view(request):
        alias = router.db_for_read(Company)
        seen.append(alias)
        if alias == REPLICA:
            replica.errors_occurred = True  # what Django's error wrapper sets on a failed query
            return HttpResponse(status=503)  # what ServiceUnavailableMiddleware made of it
        return HttpResponse("from the primary")

    response = serve(view)
    assert response.status_code == 200
    assert response.content == b"from the primary"
    assert seen == [REPLICA, DEFAULT_DB_ALIAS]
    # And the next pages do not try the replica again for a while.
    serve(reading(seen))
    assert seen[-1] == DEFAULT_DB_ALIAS


def test_a_failed_get_that_wrote_is_not_served_twice(replica):
    calls = []

    def view(request):
        calls.append(router.db_for_read(Company))
        router.db_for_write(Company)
        replica.errors_occurred = True
        return HttpResponse(status=503)

    assert serve(view).status_code == 503
    assert calls == [REPLICA]


# --------------------------------------------------------------------------------------------------
# Migrations and relations


def test_migrations_run_on_the_primary_only():
    routing = ReplicaRouter()
    assert routing.allow_migrate(REPLICA, "accounts") is False
    assert routing.allow_migrate(DEFAULT_DB_ALIAS, "accounts") is None


def test_objects_of_either_database_may_relate():
    routing = ReplicaRouter()
    on_replica, on_primary = Company(), Company()
    on_replica._state.db, on_primary._state.db = REPLICA, DEFAULT_DB_ALIAS
    assert routing.allow_relation(on_replica, on_primary) is True


# --------------------------------------------------------------------------------------------------
# The settings


def test_without_a_replica_url_nothing_changes(tmp_path):
    result = run_django(
        "print(sorted(settings.DATABASES), settings.DATABASE_ROUTERS);"
        "print([m for m in settings.MIDDLEWARE if 'dbrouting' in m])",
        DEBUG="1",
        VAR_DIR=str(tmp_path),
    )
    assert printed(result) == ["['default'] []", "[]"]


def test_a_replica_url_adds_the_alias_router_and_middleware(tmp_path):
    result = run_django(
        "import json; d, r = settings.DATABASES['default'], settings.DATABASES['replica'];"
        "print(json.dumps([r['HOST'], r['PORT'], r['NAME'], r['USER'], r['CONN_MAX_AGE'],"
        " r['CONN_HEALTH_CHECKS'], r['OPTIONS'], r['TEST']['MIRROR'], d['HOST']]));"
        "print(settings.DATABASE_ROUTERS);"
        "m = settings.MIDDLEWARE; i = m.index('usage_portal.dbrouting.ReplicaMiddleware');"
        "print(m[i - 1])",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://portal@db.internal:5432/portal",
        DATABASE_REPLICA_URL="postgres://reader@replica.internal:5433/portal?sslmode=require",
        DB_CONN_MAX_AGE="30",
        VAR_DIR=str(tmp_path),
    )
    assert printed(result) == [
        '["replica.internal", 5433, "portal", "reader", 30, true, '
        '{"sslmode": "require", "connect_timeout": 2}, "default", "db.internal"]',
        "['usage_portal.dbrouting.ReplicaRouter']",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ]
