"""Who may scrape the metrics: a bearer token (``METRICS_TOKEN``), or an address in
``METRICS_ALLOWED_IPS``; either lets a scraper in.

With neither configured the endpoint answers 404, as if it did not exist: metrics name the
portal's tables, queues and jobs and their volumes, so they are off until an operator says who
may read them, and a scanner learns nothing. A wrong or missing token answers 401 (with
``WWW-Authenticate``: the scraper's configuration is wrong); an address outside the list, when
only the list is configured, 403.

The address is the one the brute-force limits use (``throttle.client_ip``): ``REMOTE_ADDR``, or
behind a reverse proxy the hop the proxy appended to ``CLIENT_IP_HEADER`` — without that header
configured every request through a proxy comes from the proxy's address, so list the scraper
only when it reaches gunicorn directly, or use the token.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest

from usage_portal.web.throttle import client_ip

ALLOWED = None
NOT_CONFIGURED = 404
BAD_TOKEN = 401
NOT_LISTED = 403


@cache
def _networks(entries: tuple[str, ...]):
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def address_listed(request: HttpRequest) -> bool:
    networks = _networks(tuple(settings.METRICS_ALLOWED_IPS))
    address = client_ip(request)
    if address is None:  # no valid address: never on the list
        return False
    return any(ipaddress.ip_address(address) in network for network in networks)


def token_matches(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def metrics_refusal(request: HttpRequest) -> int | None:
    """None when the request may read the metrics, else the status to refuse it with."""
    token, listed = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS
    if not token and not listed:
        return NOT_CONFIGURED
    if listed and address_listed(request):
        return ALLOWED
    if token:
        return ALLOWED if token_matches(request) else BAD_TOKEN
    return NOT_LISTED
