"""The product's metrics as a prometheus_client Collector: read when scraped, never stored.

A counter kept in each process would count only that process's pings (gunicorn runs several,
the worker others); the database and the broker are what every process shares, so each scrape
reads them (``selectors``: one cheap aggregate per family). A part that cannot be read (the
database or the broker is down) is left out and ``usage_portal_metrics_part_up`` says which;
the rest of the scrape still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from kombu.exceptions import ChannelError
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from instances.models import PingSource
from usage_portal.celery import app as celery_app
from usage_portal.version import portal_version
from usage_portal.web.ops import selectors

logger = logging.getLogger(__name__)
PREFIX = "usage_portal_"


def _gauge(name: str, documentation: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _value(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def pings(now: datetime) -> list[Metric]:
    stored = _gauge(
        "pings_stored_24h", "Usage pings stored in the last 24 hours, by source.", ["source"]
    )
    counts = selectors.pings_stored_recently(now)
    for source in PingSource.values:
        stored.add_metric([source], counts.get(source, 0))
    rejected = _gauge(
        "pings_rejected_24h",
        "Payloads refused and kept for ops (Data quality) in the last 24 hours, by source and "
        "kind of reason.",
        ["source", "reason"],
    )
    for (source, kind), count in sorted(selectors.pings_rejected_recently(now).items()):
        rejected.add_metric([source, kind], count)
    return [stored, rejected]


def label_changes(now: datetime) -> list[Metric]:
    lag = selectors.label_change_lag(now)
    return [
        _value("label_changes_pending", "Label changes recorded and not yet applied.", lag.pending),
        _value(
            "label_changes_overdue", "Pending label changes past their effective time.", lag.overdue
        ),
        _value(
            "label_changes_overdue_seconds",
            "How long the oldest overdue label change is past its effective time (0: none).",
            lag.oldest_overdue_seconds,
        ),
    ]


def score_refresh(now: datetime) -> list[Metric]:
    lag = selectors.refresh_lag(now)
    return [
        _value(
            "score_refresh_pending_accounts",
            "Accounts whose data changed and whose scores have not been refreshed yet.",
            lag.pending_accounts,
        ),
        _value(
            "score_refresh_lag_seconds",
            "Age of the oldest change whose scores have not been refreshed (0: none).",
            lag.oldest_seconds,
        ),
    ]


def queue_names() -> list[str]:
    """Every queue a task is routed to (``CELERY_TASK_ROUTES``) and the default one."""
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in settings.CELERY_TASK_ROUTES.values():
        queue = route.get("queue") if isinstance(route, dict) else route
        if queue:
            names.add(queue)
    return sorted(names)


def queue_lengths() -> dict[str, int]:
    """Messages waiting in each queue: Redis' list lengths (all priority levels), the message
    files of the filesystem broker. Messages a worker holds (prefetched, or an ETA it waits
    for) are not waiting and not counted."""
    lengths: dict[str, int] = {}
    with celery_app.connection_for_read() as connection:
        # Once, bounded by the broker's timeouts: a scrape must not wait for a broker to return.
        connection.ensure_connection(max_retries=0)
        channel = connection.default_channel
        for name in queue_names():
            try:
                lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:  # Redis keeps no key for an empty list: the queue "not found"
                lengths[name] = 0
    return lengths


def queues(now: datetime) -> list[Metric]:
    family = _gauge("celery_queue_length", "Messages waiting in each Celery queue.", ["queue"])
    for name, length in queue_lengths().items():
        family.add_metric([name], length)
    return [family]


def beat(now: datetime) -> list[Metric]:
    family = _gauge(
        "beat_last_success_timestamp_seconds",
        "When each periodic job (CELERY_BEAT_SCHEDULE) last succeeded, sent by beat (0: never).",
        ["job"],
    )
    successes = selectors.job_last_successes()
    for job in sorted(settings.CELERY_BEAT_SCHEDULE):
        at = successes.get(job)
        family.add_metric([job], at.timestamp() if at else 0)
    return [family]


PARTS: dict[str, Callable[[datetime], list[Metric]]] = {
    "pings": pings,
    "label_changes": label_changes,
    "score_refresh": score_refresh,
    "queues": queues,
    "beat": beat,
}


class ProductCollector:
    """Registered per scrape (``views.metrics``), not globally: nothing else runs its queries."""

    def collect(self) -> Iterable[Metric]:
        now = timezone.now()
        yield InfoMetricFamily(
            PREFIX + "build", "The portal's version.", value={"version": portal_version()}
        )
        up = _gauge(
            "metrics_part_up", "1 when this part of the product metrics was read.", ["part"]
        )
        for part, read in PARTS.items():
            try:
                families = read(now)
            except Exception as exc:  # a part that cannot be read must not fail the scrape
                logger.warning("metrics: %s could not be read: %r", part, exc)
                up.add_metric([part], 0)
                continue
            up.add_metric([part], 1)
            yield from families
        yield up
