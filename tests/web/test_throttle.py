"""Brute force is refused (usage_portal.web.throttle): a locked-out sign-in, a token guesser and
a flood of anonymous pings each get 429 with Retry-After; a cache outage costs the limit, not the
request; the limits come from the environment and are checked at start-up.

Before: 200 wrong passwords in 55 s, then the right one signed in; 300 guessed tokens, all 401.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

import orjson
import pytest
from django.core.cache import caches
from django.test import Client

from instances.models import UsagePing
from instances.services.tokens import ingest_token_create
from tests.conftest import PASSWORD
from tests.ingest_support import WHEN, payload
from tests.test_settings import printed, run_django

_addresses = itertools.count(1)


def fresh_address() -> str:
    """An address no other test used: the counters are keyed by address and outlive a test."""
    n = next(_addresses) + secrets.randbelow(1000) * 1000
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@pytest.fixture
def low_limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.TOKEN_FAILURE_RATE = "3/m"
    settings.ANONYMOUS_PING_RATE = "2/m"
    return settings


def sign_in(address: str, password: str, username: str = "csm_user"):
    client = Client(REMOTE_ADDR=address)
    return client, client.post("/login/", {"username": username, "password": password})


# --- Sign-in -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_passwords_lock_the_username_and_address_out_even_for_the_right_one(low_limits, csm):
    address = fresh_address()
    for _ in range(2):
        _, response = sign_in(address, "wrong")
        assert response.status_code == 200  # the form again, with its error
    _, response = sign_in(address, "wrong")
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 15 * 60
    assert b"Too many sign-in attempts" in response.content

    client, response = sign_in(address, PASSWORD)
    assert response.status_code == 429
    assert client.get("/").status_code == 302  # not signed in: sent to the login page

    # The pair is locked, not the person: from another address the right password works.
    client, response = sign_in(fresh_address(), PASSWORD)
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_a_success_resets_the_count(low_limits, csm):
    address = fresh_address()
    for _ in range(2):
        sign_in(address, "wrong")
    assert sign_in(address, PASSWORD)[1].status_code == 302
    for _ in range(2):
        assert sign_in(address, "wrong")[1].status_code == 200
    assert sign_in(address, PASSWORD)[1].status_code == 302


@pytest.mark.django_db
def test_admin_login_is_locked_out_too(low_limits, ops):
    client = Client(REMOTE_ADDR=fresh_address())
    for _ in range(3):
        response = client.post(
            "/admin/login/", {"username": "ops_user", "password": "wrong", "next": "/admin/"}
        )
    assert response.status_code == 429
    response = client.post(
        "/admin/login/", {"username": "ops_user", "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 429


# --- Tokens --------------------------------------------------------------------------------------


def post_ping(client: Client, token: str | None, **overrides):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(
        "/usage_data",
        data=orjson.dumps(payload(**overrides)),
        content_type="application/json",
        **headers,
    )


@pytest.mark.django_db
def test_guessed_tokens_are_throttled_per_address_and_a_valid_token_waits_too(low_limits):
    _, secret = ingest_token_create(name="sender")
    guesser = Client(REMOTE_ADDR=fresh_address())
    for attempt in range(3):
        response = post_ping(guesser, f"upt_guess{attempt}")
        assert response.status_code == 401, response.content
    response = post_ping(guesser, "upt_guess-4")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "too many refused tokens" in response.json()["error"]
    # Even the right token waits: a guesser who hits it must not learn so.
    response = post_ping(guesser, secret, uuid="11111111-2222-3333-4444-555555555555")
    assert response.status_code == 429
    assert UsagePing.objects.count() == 0

    other = Client(REMOTE_ADDR=fresh_address())
    assert post_ping(other, secret).status_code == 201
    assert UsagePing.objects.count() == 1


@pytest.mark.django_db
def test_accepted_tokens_do_not_count(low_limits):
    _, secret = ingest_token_create(name="sender")
    client = Client(REMOTE_ADDR=fresh_address())
    for week in range(6):
        response = post_ping(client, secret, recorded_at=WHEN + timedelta(days=7 * week))
        assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
def test_the_health_api_throttles_guessed_tokens(low_limits):
    client = Client(REMOTE_ADDR=fresh_address())
    for _ in range(3):
        response = client.get("/api/v1/accounts/X/health", HTTP_AUTHORIZATION="Bearer nope")
        assert response.status_code == 401
    response = client.get("/api/v1/accounts/X/health", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 429
    assert response["Retry-After"]


@pytest.mark.django_db
def test_anonymous_pings_are_rate_limited_per_address(low_limits):
    low_limits.ALLOW_ANONYMOUS_PINGS = True
    client = Client(REMOTE_ADDR=fresh_address())
    for week in range(2):
        response = post_ping(client, None, recorded_at=WHEN + timedelta(days=7 * week))
        assert response.status_code == 201
    response = post_ping(client, None, recorded_at=WHEN + timedelta(days=14))
    assert response.status_code == 429
    assert "send an ingest token" in response.json()["error"]
    assert UsagePing.objects.count() == 2


@pytest.mark.django_db
def test_a_cache_that_is_down_costs_the_limit_not_the_request(low_limits):
    low_limits.CACHES = {
        **low_limits.CACHES,
        "throttle": {
            "BACKEND": "usage_portal.caches.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        },
    }
    caches._settings = None  # let the override's throttle cache be built
    try:
        _, secret = ingest_token_create(name="sender")
        client = Client(REMOTE_ADDR=fresh_address())
        for attempt in range(5):
            assert post_ping(client, f"upt_guess{attempt}").status_code == 401
        assert post_ping(client, secret).status_code == 201
    finally:
        caches._settings = None
        del caches["throttle"]


@pytest.mark.django_db
def test_behind_a_proxy_the_last_hop_is_the_client(low_limits):
    low_limits.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    proxy = fresh_address()
    real = fresh_address()
    client = Client(REMOTE_ADDR=proxy)
    for attempt in range(3):
        # A guesser rotating a forged first entry is still one client.
        response = client.post(
            "/usage_data",
            data=b"{}",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer guess{attempt}",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}, {real}",
        )
        assert response.status_code == 401
    blocked = client.post(
        "/usage_data",
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer guess",
        HTTP_X_FORWARDED_FOR=f"192.0.2.99, {real}",
    )
    assert blocked.status_code == 429
    # Another client behind the same proxy is not.
    other = client.post(
        "/usage_data",
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer guess",
        HTTP_X_FORWARDED_FOR=fresh_address(),
    )
    assert other.status_code == 401


# --- Settings ------------------------------------------------------------------------------------

STRONG = secrets.token_urlsafe(50)


def test_the_limits_come_from_the_environment():
    result = run_django(
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds(),"
        " settings.TOKEN_FAILURE_RATE, settings.ANONYMOUS_PING_RATE)",
        SECRET_KEY=STRONG,
        LOGIN_FAILURE_LIMIT="5",
        LOGIN_LOCKOUT_MINUTES="30",
        TOKEN_FAILURE_RATE="7/5m",
        ANONYMOUS_PING_RATE="50/h",
    )
    assert printed(result) == ["5 1800.0 7/5m 50/h"]


def test_the_defaults_are_ten_failures_for_fifteen_minutes():
    result = run_django(
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds(),"
        " settings.TOKEN_FAILURE_RATE, settings.ANONYMOUS_PING_RATE)",
        SECRET_KEY=STRONG,
    )
    assert printed(result) == ["10 900.0 20/m 120/m"]


@pytest.mark.parametrize("rate", ["ten/m", "10", "10/w", "0/m", "10/0m", "-1/m"])
def test_a_malformed_rate_refuses_to_start(rate):
    result = run_django("print('started')", SECRET_KEY=STRONG, TOKEN_FAILURE_RATE=rate)
    assert result.returncode != 0
    assert "TOKEN_FAILURE_RATE must look like 10/m" in result.stderr


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_a_login_limit_below_one_refuses_to_start(limit):
    result = run_django("print('started')", SECRET_KEY=STRONG, LOGIN_FAILURE_LIMIT=limit)
    assert result.returncode != 0
    assert "LOGIN_FAILURE_LIMIT must be" in result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "short-key",
        "a" * 60,  # long, but one character
        "django-insecure-" + secrets.token_urlsafe(50),  # Django's startproject placeholder
        "dev-only-insecure-key-do-not-use-in-production",
    ],
)
def test_a_weak_secret_key_refuses_to_start_in_production(key):
    result = run_django("print('started')", SECRET_KEY=key, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr
    assert "started" not in result.stdout


def test_a_strong_secret_key_starts():
    assert printed(run_django("print('started')", SECRET_KEY=STRONG, DEBUG="0")) == ["started"]
