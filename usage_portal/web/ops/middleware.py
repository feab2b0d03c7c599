"""django-prometheus' request middleware, safe with a hostile ``Content-Length``.

The library reads the header with ``int()`` before any view runs, so ``Content-Length: lots``
answered 500 instead of the sender endpoint's own 400 ("invalid Content-Length"). The request
is still counted; only its body size, which it did not state, is left out.
"""

from __future__ import annotations

from django_prometheus import middleware
from django_prometheus.utils import Time


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def process_request(self, request):
        try:
            super().process_request(request)
        except ValueError:  # int() of the header: everything before it has been counted
            request.prometheus_after_middleware_event = Time()
