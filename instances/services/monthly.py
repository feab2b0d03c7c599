"""The monthly rollup: ``MonthlyUsage`` holds the last ping of each instance's calendar month.

The ping store keeps these rows current as pings arrive (one upsert per month row, a later ping
never overwritten by an older one) and moves them with their instance when it changes company.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from django.db import connection

from instances.metrics import FAILED_FIELD, METRIC_NAMES
from instances.models import Instance, MonthlyUsage, UsagePing
from instances.services.bulk_sql import db_preparers


def monthly_refresh(*, pings: Iterable[UsagePing], instances: dict | None = None) -> int:
    """Keep ``MonthlyUsage`` = the last ping of each calendar month, for the given new pings.

    ``instances`` (identity -> Instance, as ``pings_store`` holds them) saves looking up each
    instance's company. Returns the number of monthly rows written.
    """
    latest: dict[tuple[int, date], UsagePing] = {}
    for ping in pings:
        month = ping.recorded_at.date().replace(day=1)
        key = (ping.instance_id, month)
        if key not in latest or ping.recorded_at > latest[key].recorded_at:
            latest[key] = ping
    if not latest:
        return 0
    if instances is not None:
        companies = {inst.id: inst.company_id for inst in instances.values()}
    else:
        companies = dict(
            Instance.objects.filter(id__in={k[0] for k in latest}).values_list("id", "company_id")
        )
    meta = MonthlyUsage._meta
    fields = [
        meta.get_field(name)
        for name in ("instance", "month", "company", "ping", "recorded_at", "version")
    ] + [meta.get_field(name) for name in (*METRIC_NAMES, FAILED_FIELD)]
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    columns = [qn(f.column) for f in fields]
    # One upsert per month row, all in one executemany; the WHERE keeps a later ping already
    # stored (by an earlier batch or a concurrent writer) from being overwritten by an older one.
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({columns[0]}, {columns[1]}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
        + f" WHERE {table}.{qn('recorded_at')} < excluded.{qn('recorded_at')}"
    )
    prepare = db_preparers(fields)
    params = []
    # In key order, as every writer does (see ``rows_update``).
    for (iid, month), ping in sorted(latest.items(), key=lambda entry: entry[0]):
        values = [iid, month, companies.get(iid), ping.id, ping.recorded_at, ping.version]
        values += [getattr(ping, name) for name in (*METRIC_NAMES, FAILED_FIELD)]
        params.append(
            [v if conv is None else conv(v) for conv, v in zip(prepare, values, strict=True)]
        )
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        return max(cursor.rowcount, 0)


def monthly_usage_follow(*, touched: list[Instance], moved_from: dict[int, int | None]) -> None:
    """Monthly rows of the instances that changed company (``moved_from``) follow them."""
    by_company: dict[int | None, list[int]] = defaultdict(list)
    for inst in touched:
        if inst.id in moved_from:
            by_company[inst.company_id].append(inst.id)
    for company_id, ids in by_company.items():
        MonthlyUsage.objects.filter(instance_id__in=ids).update(company_id=company_id)
