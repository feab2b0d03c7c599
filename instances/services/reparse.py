"""Read stored raw payloads again: metrics a newer release reads, for pings it did not see.

When a release adds a metric (``unique_active_users``) or learns something new about a payload
(which values were failure values), the pings stored before it have NULL there although their
raw JSON (kept ``RAW_PAYLOAD_RETENTION_DAYS``) holds the answer. ``pings_reparse`` parses each
kept payload with today's parser and writes the metric columns and ``failed_metrics`` of the
ping and of the monthly row that stands for it, batch by batch; then the accounts it touched
are rescored, history included. Pings whose raw payload is gone keep their values.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from django.db import transaction

from accounts.changes import ALL_HISTORY, companies_changed
from instances.metrics import FAILED_FIELD, METRIC_NAMES, failed_names, failed_text
from instances.models import MonthlyUsage, UsagePing
from instances.parsing import PingRejected, parse_ping
from instances.services.bulk_sql import rows_update
from instances.services.storable import decompress_raw
from instances.transport import PayloadError, loads_json

BATCH = 500


@dataclass
class ReparseSummary:
    pings: int = 0
    changed: int = 0
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    company_ids: set[int] = field(default_factory=set)


def pings_reparse(*, metrics: tuple[str, ...] = METRIC_NAMES, batch: int = BATCH) -> ReparseSummary:
    """Re-read every kept raw payload into ``metrics`` (all by default) and ``failed_metrics``."""
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics: {', '.join(sorted(unknown))}")
    summary = ReparseSummary()
    fields = [*metrics, FAILED_FIELD]
    last_id = 0
    while True:
        rows = list(
            UsagePing.objects.filter(pk__gt=last_id, raw_payload__isnull=False)
            .order_by("pk")
            .values("pk", "instance__company_id", "raw_payload", *fields)[:batch]
        )
        if not rows:
            break
        last_id = rows[-1]["pk"]
        changed = []
        for row in rows:
            summary.pings += 1
            try:
                parsed = parse_ping(loads_json(decompress_raw(row["raw_payload"])))
            except (PayloadError, PingRejected, ValueError, zlib.error) as exc:
                summary.unreadable.append((row["pk"], getattr(exc, "reason", str(exc))))
                continue
            values = {m: _as_int(parsed.metrics.get(m)) for m in metrics}
            # Failure values of metrics not re-read stay as they were.
            kept = failed_names(row[FAILED_FIELD]) - set(metrics)
            values[FAILED_FIELD] = failed_text(kept | {m for m in parsed.failed if m in metrics})
            if any(row[f] != values[f] for f in fields):
                changed.append((row, values))
        if changed:
            companies = {r["instance__company_id"] for r, _ in changed} - {None}
            _write(changed, fields, companies)
            summary.changed += len(changed)
            summary.company_ids |= companies
    return summary


def _write(changed, fields: list[str], company_ids: set[int]) -> None:
    by_ping = {row["pk"]: values for row, values in changed}
    with transaction.atomic():
        rows_update(UsagePing, [UsagePing(pk=pk, **v) for pk, v in by_ping.items()], fields)
        months = MonthlyUsage.objects.filter(ping_id__in=by_ping).values_list("pk", "ping_id")
        monthly = [MonthlyUsage(pk=pk, **by_ping[ping]) for pk, ping in months]
        rows_update(MonthlyUsage, monthly, fields)
        # Every month may have changed: the accounts' whole history is rescored.
        companies_changed(company_ids, since=ALL_HISTORY, reason="pings re-read")


def _as_int(value) -> int | None:
    if value is None:
        return None
    return round(value) if isinstance(value, float) else value
