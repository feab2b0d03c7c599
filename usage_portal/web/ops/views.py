"""``/healthz``, ``/readyz`` and ``/-/metrics``: no sign-in, nothing sensitive in the answers.

- ``/healthz`` — liveness: the process answers. Touches no database, cache or broker, so an
  outage of one of those never gets healthy processes restarted.
- ``/readyz`` — readiness: database, cache and broker each checked with a short timeout
  (``probes``); 200 when all pass, 503 naming what failed. The checks catch their own errors, so
  ``ServiceUnavailableMiddleware`` never replaces this answer with its generic one.
- ``/-/metrics`` — Prometheus text format: django-prometheus' request and database metrics and
  the product's own (``collector``), for the scrapers ``access`` lets in. (``/metrics/`` is the
  metrics dictionary page.)
"""

from __future__ import annotations

import os

import prometheus_client
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import multiprocess

from usage_portal.version import portal_version
from usage_portal.web.ops.access import BAD_TOKEN, metrics_refusal
from usage_portal.web.ops.collector import ProductCollector
from usage_portal.web.ops.probes import readiness


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "version": portal_version()})


@login_not_required
@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    results = readiness()
    ready = all(result.ok for result in results.values())
    body = {
        "status": "ok" if ready else "fail",
        "checks": {name: result.as_json() for name, result in results.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


class _Scrape:
    """What one scrape reads: this process's (or, in multiprocess mode, every gunicorn
    worker's) request and database metrics, and the product's, read now."""

    def __init__(self) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.base = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(self.base)
        else:
            self.base = prometheus_client.REGISTRY

    def collect(self):
        yield from self.base.collect()
        yield from ProductCollector().collect()


@login_not_required
@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        response = HttpResponse(status=refusal)
        if refusal == BAD_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        prometheus_client.generate_latest(_Scrape()),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
