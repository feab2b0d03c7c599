"""Database metrics for Prometheus without swapping the database backend.

django-prometheus counts queries by replacing ``ENGINE`` with its own backend classes; the
portal keeps Django's (the settings, dj-database-url and the tests name them) and feeds the
same metric families — ``django_db_execute_total``, ``django_db_query_duration_seconds``,
``django_db_errors_total``, ``django_db_new_connections_total`` — from an execute wrapper that
every new connection gets (``connection_created``). Installed by ``WebConfig.ready``.
"""

from __future__ import annotations

import time

from django.db.backends.signals import connection_created
from django_prometheus.db import (
    connections_total,
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
)


def query_instrument(execute, sql, params, many, context):
    connection = context["connection"]
    labels = (connection.alias, connection.vendor)
    count = len(params) if many and hasattr(params, "__len__") else 1
    execute_total.labels(*labels).inc(count)
    if many:
        execute_many_total.labels(*labels).inc(count)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        errors_total.labels(*labels, type(exc).__name__).inc()
        raise
    finally:
        query_duration_seconds.labels(*labels).observe(time.perf_counter() - started)


def connection_instrument(sender=None, connection=None, **kwargs) -> None:
    connections_total.labels(connection.alias, connection.vendor).inc()
    if query_instrument not in connection.execute_wrappers:
        # First in the list: ``connection.execute_wrapper()`` pops the last one on exit, which
        # must stay the caller's own when a connection is (re)made inside it.
        connection.execute_wrappers.insert(0, query_instrument)


def db_metrics_install() -> None:
    connection_created.connect(connection_instrument, dispatch_uid="ops.db_metrics")
