"""Brute-force limits, in one place: login lockout (django-axes), token guessing and anonymous
ingest (django-ratelimit's counters), each answered 429 with ``Retry-After``.

- A person: after ``LOGIN_FAILURE_LIMIT`` wrong passwords for one username from one address,
  that pair is locked out for ``LOGIN_LOCKOUT_MINUTES`` — even the right password is refused
  until then. The pair, not the username alone, so nobody can lock a colleague out from
  elsewhere; a success resets the count.
- A machine: ``TOKEN_FAILURE_RATE`` refused tokens (401) from one address, then every request
  from it that carries a token is answered 429 until the window ends, whatever the token. With
  ``ALLOW_ANONYMOUS_PINGS``, tokenless posts from one address are limited to
  ``ANONYMOUS_PING_RATE``.

The counters live in the ``throttle`` cache (Redis when configured, shared by every process). A
cache that is down or hung costs the limit, never the request: the check fails open, because a
dropped ping is a worse outcome than a guess that goes uncounted for the length of an outage.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import _get_window, _make_cache_key, _split_rate, get_usage

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest, *_args) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or the last hop the trusted proxy appended.

    Behind a reverse proxy every request comes from the proxy, so ``CLIENT_IP_HEADER`` (e.g.
    ``HTTP_X_FORWARDED_FOR``) names where the proxy writes the real address. Only the LAST
    entry is taken: earlier ones were sent by the client and can be forged. None when there is
    no valid address (a request built in-process). Also django-axes'
    ``AXES_CLIENT_IP_CALLABLE`` and django-ratelimit's key (both call it with extra arguments).
    """
    header = settings.CLIENT_IP_HEADER
    candidate = ""
    if header:
        candidate = request.META.get(header, "").split(",")[-1].strip()
    if not candidate:
        candidate = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None  # axes stores None; an address column refuses any other placeholder


def _ip_key(_group: str, request: HttpRequest) -> str:
    return client_ip(request) or "unknown"


def _usage(request: HttpRequest, group: str, rate: str, *, increment: bool) -> dict | None:
    """django-ratelimit's counter for this address, or None when the cache cannot be reached."""
    try:
        return get_usage(request, group=group, key=_ip_key, rate=rate, increment=increment)
    except Exception:  # the cache is down or hung: fail open (see the module docstring)
        logger.warning("throttle: the %s counter could not be read; not limiting", group)
        return None


def _failures_so_far(request: HttpRequest, group: str, rate: str) -> dict | None:
    """django-ratelimit's count for this address in its current window, in ONE cache read.

    ``get_usage(increment=False)`` asks the cache twice (an ``add``, then a ``get``), and each
    ask builds a Redis client: under 16 posting clients that was 6–12 % of the ping endpoint's
    CPU, for a check every request with a token makes. The key and the window are the
    library's own, so the failures it counts (``_usage(..., increment=True)``) are what this
    reads; a missing key is no failure yet. None when the cache cannot be reached.
    """
    limit, period = _split_rate(rate)
    value = _ip_key(group, request)
    window = _get_window(value, period)
    key = _make_cache_key(group, window, rate, value, ALL)
    try:
        count = caches[settings.RATELIMIT_USE_CACHE].get(key, 0)
    except Exception:  # the cache is down or hung: fail open (see the module docstring)
        logger.warning("throttle: the %s counter could not be read; not limiting", group)
        return None
    return {"count": count, "limit": limit, "time_left": window - int(time.time())}


def _too_many(message: str, retry_after: int) -> JsonResponse:
    response = JsonResponse({"error": message, "retry_after": retry_after}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _seconds_left(usage: dict) -> int:
    return max(1, int(usage.get("time_left") or 1))


def token_throttled(view):
    """Wrap a view that takes a bearer token (the sender endpoints, the read API).

    Requests with an ``Authorization`` header count against ``TOKEN_FAILURE_RATE`` only when
    they are refused with 401; tokenless ones (anonymous pings) against ``ANONYMOUS_PING_RATE``
    whatever their outcome. A session-authenticated browser is not throttled here.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        has_token = bool(request.headers.get("Authorization"))
        anonymous = not has_token and not request.user.is_authenticated
        if has_token:
            group, rate = "token-failures", settings.TOKEN_FAILURE_RATE
            usage = _failures_so_far(request, group, rate)
            # The count so far: at the limit, the next failure would go over it, so refuse now.
            if usage is not None and usage["count"] >= usage["limit"]:
                return _too_many(
                    "too many refused tokens from this address; try again later",
                    _seconds_left(usage),
                )
        elif anonymous and settings.ALLOW_ANONYMOUS_PINGS:
            usage = _usage(request, "anonymous-pings", settings.ANONYMOUS_PING_RATE, increment=True)
            if usage is not None and usage["should_limit"]:
                return _too_many(
                    "too many posts without a token from this address; send an ingest token "
                    "or try again later",
                    _seconds_left(usage),
                )
        response = view(request, *args, **kwargs)
        if has_token and response.status_code == 401:
            _usage(request, "token-failures", settings.TOKEN_FAILURE_RATE, increment=True)
        return response

    return wrapper


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' gate in front of the password check, for sign-ins over HTTP.

    ``authenticate()`` without a request is code in this process (a test client's ``login``, a
    shell): nothing to throttle, and axes would refuse it outright.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request: HttpRequest, _response=None, _credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out login: a page that says why and for how long."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    seconds = int(cool_off.total_seconds())
    minutes = max(1, round(seconds / 60))
    response = render(
        request,
        "429.html",
        {
            "minutes": minutes,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
