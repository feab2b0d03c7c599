"""A database or broker that is down answers 503 with Retry-After, never a bare 500.

A PostgreSQL restart gave ingest clients HTML 500s (94 of 600 posts) although the endpoint's
contract is a JSON answer a sender can retry on. Whatever view raised it, an outage of a service
the portal depends on is the service being unavailable: JSON clients (the ingest endpoints, the
API, anyone asking for JSON) get ``{"error": ...}``, people get the error page saying so; both
carry ``Retry-After`` so that GitLab's client, a load balancer or a browser retries later.

Also the request id every log line of a request carries (``RequestIdMiddleware``).
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from usage_portal import logs
from usage_portal.celery import BROKER_ERRORS

logger = logging.getLogger(__name__)

#: Seconds a client is asked to wait: about a database restart.
RETRY_AFTER = 30
UNAVAILABLE = (OperationalError, InterfaceError, *BROKER_ERRORS)
#: Paths answered in JSON whatever the Accept header says (senders and integrations).
JSON_PREFIXES = ("/usage_data", "/usage_ping_errors", "/usage_ping_metadata", "/api/")
MESSAGE = "The portal's database or queue is unavailable for a moment; retry in a minute."


def wants_json(request: HttpRequest) -> bool:
    if request.path.startswith(JSON_PREFIXES) and not request.path.startswith("/usage_data/new"):
        return True
    return "application/json" in request.headers.get("Accept", "")


class ServiceUnavailableMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        return unavailable_response(request, exception)


def unavailable_response(request: HttpRequest, exception: BaseException | None):
    """The 503 for an outage, or None for any other error (the rule, in one place).

    Two ways in: a view's exception (the middleware above), and the 500 handler
    (``usage_portal.web.errors.server_error``) for what middleware raised outside the view —
    the session saved after a view, the user loaded by the login check — which Django turns
    into a 500 before any middleware could see it (a PostgreSQL restart gave one such 500 in
    the fault suite).
    """
    if not isinstance(exception, UNAVAILABLE):
        return None
    logger.warning("503 for %s %s: %s", request.method, request.path, exception)
    if wants_json(request):
        response = JsonResponse({"error": MESSAGE, "retry_after": RETRY_AFTER}, status=503)
    else:
        response = HttpResponse(_page(request), status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


def _page(request: HttpRequest) -> str:
    # Rendered without the request: the context processors and the user would touch the very
    # database that is down.
    try:
        return render_to_string("503.html", {"message": MESSAGE})
    except Exception:  # a template that cannot render must not turn the 503 into a 500
        return f"<!doctype html><title>Unavailable</title><h1>Unavailable</h1><p>{MESSAGE}</p>"


class RequestIdMiddleware:
    """One id per request (``usage_portal.logs``): on every log line of the request and of the
    tasks it queues, and answered in ``X-Request-ID`` (gunicorn's access line prints it)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = logs.request_id_from(request.headers.get(logs.HEADER))
        request.request_id = request_id
        token = logs.request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            # gunicorn's threads serve many requests: the next one must not inherit this id.
            logs.request_id.reset(token)
        response[logs.HEADER] = request_id
        return response
