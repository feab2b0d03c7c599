"""Reads for the Account C360 pages: the queries, one each.

Each page loads what it needs in a fixed number of queries, whatever the account's size: the
company, its snapshots, subscriptions, instances, label changes and monthly rows are one query
each. Shaping rows into what the templates show is elsewhere (``viewmodels``, ``series``,
``explanations``); which reports exist is ``catalogue``'s.

Scores are never recomputed here. Values, colours, NA reasons and which instances counted come
from the scoring engine's own output (``ScoreSnapshot.detail`` for the current score,
``MonthlyScore.detail`` per month).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from django.db import connection
from django.db.models import BooleanField, Count, F, IntegerField, Q
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Company, Subscription, SubscriptionStatus
from instances.metrics import METRIC_NAMES
from instances.models import (
    Instance,
    InstanceType,
    LabelChange,
    LicenseMappingChange,
    MonthlyUsage,
    UsagePing,
)
from scoring.methodology import sum_or_none
from scoring.models import AlertStatus, HealthAlert, MonthlyScore, SchemeChange, ScoreSnapshot
from scoring.schemes import Scheme, get_scheme
from usage_portal.web.c360.charts import Marker

#: Trends and adoption charts show this many calendar months, ending with the current one.
MONTHS_SHOWN = 24
TYPE_ORDER = {value: n for n, value in enumerate(InstanceType.values)}


def scheme_for(label: str | None) -> Scheme | None:
    """The preset a score was computed with, if it still exists."""
    try:
        return get_scheme(label) if label else None
    except KeyError:
        return None


def company_get(pk: int) -> Company:
    """The account with its CSM, sentiment author and open health drops (the header's badge),
    or 404: one query, which every C360 page runs (it holds the cache's version)."""
    companies = Company.objects.select_related("csm", "sentiment_by").annotate(
        open_drops=RawSQL(_open_drops_sql(), [AlertStatus.OPEN], output_field=IntegerField())
    )
    return get_object_or_404(companies, pk=pk)


@functools.cache
def _open_drops_sql() -> str:
    """The account's open health drops, counted in a correlated subquery written once: built
    with ``Subquery`` and ``Coalesce``, compiling it cost more than the rest of the query
    (1.0 of 2.0 ms per page, in-process)."""
    name = connection.ops.quote_name
    alerts, company = HealthAlert._meta, Company._meta
    table = name(alerts.db_table)
    return (
        f"SELECT COUNT(*) FROM {table}"
        f" WHERE {table}.{name(alerts.get_field('company').column)}"
        f" = {name(company.db_table)}.{name(company.pk.column)}"
        f" AND {table}.{name(alerts.get_field('status').column)} = %s"
    )


def snapshots_recent(company: Company) -> tuple[ScoreSnapshot | None, ScoreSnapshot | None]:
    """The current score snapshot and the one before it (for trends)."""
    rows = list(
        ScoreSnapshot.objects.filter(company=company).order_by("-is_current", "-computed_at")[:2]
    )
    current = rows[0] if rows and rows[0].is_current else None
    previous = rows[1] if current is not None and len(rows) > 1 else None
    return current, previous


def subscriptions_list(company: Company) -> list:
    subs = list(company.subscriptions.all())
    subs.sort(key=lambda s: (s.status != SubscriptionStatus.ACTIVE, s.name))
    return subs


#: What ``Instance.__str__`` (the name pages print) and ``is_saas`` read.
INSTANCE_NAME = ("kind", "uuid", "hostname", "namespace_id", "namespace_path")
#: What the NOT Production report shows of an instance: name, labels, version, last ping.
INSTANCE_USAGE = (*INSTANCE_NAME, "instance_type", "health_inclusion", "version", "last_ping_at")
#: What the Instances section shows of a subscription and the health rule reads.
SUBSCRIPTION_ROW = ("name", "plan", "licensed_seats", "status", "start_date", "end_date")


def instances_list(
    company: Company, *, subscriptions: bool = True, only: Sequence[str] = ()
) -> list[Instance]:
    """Every instance and namespace of the account: Production first, then by name.

    Subscriptions are read in a second query (not when the page shows none of them) and
    attached, not joined: an account has a few, and building one per instance row cost three
    times the instances themselves; ``prefetch_related`` cost twice that query. ``only`` the
    columns a page shows (``INSTANCE_NAME``, ``INSTANCE_USAGE``): each timestamp costs
    Django's loader ~3 µs, and a large account has hundreds.
    """
    rows = Instance.objects.filter(company=company)
    rows = list(rows.only(*only) if only else rows)
    if subscriptions:
        ids = {i.subscription_id for i in rows if i.subscription_id is not None}
        subs = Subscription.objects.filter(pk__in=ids).only(*SUBSCRIPTION_ROW) if ids else ()
        subs = {s.pk: s for s in subs}
        cache = Instance.subscription.field  # as prefetch_related keeps it (None if gone)
        for i in rows:
            if i.subscription_id is not None:
                cache.set_cached_value(i, subs.get(i.subscription_id))
    rows.sort(key=lambda i: (TYPE_ORDER.get(i.instance_type, 99), str(i).lower(), i.pk))
    return rows


def instance_type_counts(company: Company) -> dict[str, int]:
    rows = Instance.objects.filter(company=company).values("instance_type")
    return {r["instance_type"]: r["n"] for r in rows.annotate(n=Count("id")).order_by()}


#: Label changes the Instances section lists in its history.
RECENT_CHANGES = 40


def label_changes_pending(
    company: Company,
    *,
    instance: Instance | None = None,
    instances: Mapping[int, Instance] | None = None,
) -> list:
    """Pending label changes on the account (or one instance), soonest first.

    ``instances`` (the account's, by id) are attached instead of joined when the page has them.
    """
    changes = _pending_changes(_on_account(company, instances))
    if instance is not None:
        changes = changes.filter(instance=instance)
    return _with_instances(changes, instances)


def label_changes_recent(
    company: Company,
    *,
    instance: Instance | None = None,
    instances: Mapping[int, Instance] | None = None,
    limit: int = RECENT_CHANGES,
) -> list:
    """The audit trail: the latest label changes on the account (or one instance)."""
    changes = LabelChange.objects.filter(_on_account(company, instances))
    if instance is not None:
        changes = changes.filter(instance=instance)
    return _with_instances(_recent_changes(changes, limit), instances)


def _pending_changes(on_account):
    return LabelChange.objects.pending().filter(on_account).order_by("effective_at", "id")


def _recent_changes(changes, limit: int):
    # Newest first; of two requested at the same moment, the later one first.
    return changes.select_related("applied_by").order_by("-requested_at", "-id")[:limit]


def instances_digest(company: Company, *, stale_before) -> tuple[str | None, ...] | None:
    """PostgreSQL: a digest of every row the Instances section is built from, in one query,
    without loading them (None on other databases).

    The same rows as ``instances_list``, ``label_changes_pending`` and ``label_changes_recent``
    read (the same querysets, every column they select), and which instances are stale: equal
    digests, equal content. After a write that changed none of them (a ping touches the account
    many times a day), the section's finished HTML is found by this digest, and the 81 instances
    and 40 changes of the largest account are not read and built into objects just to learn
    that they are as they were: reading and signing them was ~40 % of that first view, the
    digest query costs about a tenth of it (measured on the 50,000-account book).
    """
    if connection.vendor != "postgresql":
        return None
    own = Instance.objects.filter(company=company)
    on_account = Q(instance_id__in=own.values("pk"))
    querysets = (
        own.order_by("pk"),
        Subscription.objects.filter(pk__in=own.values("subscription_id"))
        .only(*SUBSCRIPTION_ROW)
        .order_by("pk"),
        _pending_changes(on_account),
        _recent_changes(LabelChange.objects.filter(on_account), RECENT_CHANGES),
        own.filter(last_ping_at__lt=stale_before).order_by("pk").values_list("pk"),
    )
    parts, params = [], []
    for queryset in querysets:
        sql, args = queryset.query.sql_with_params()
        # Every selected column of every row, in the queryset's order (an aggregate takes a
        # sorted subquery's rows in its order).
        parts.append(f"(SELECT md5(string_agg(r::text, '|')) FROM ({sql}) r)")
        params.extend(args)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return tuple(cursor.fetchone())


def license_mapping_history(instance: Instance, *, limit: int = 40) -> list[LicenseMappingChange]:
    """How the licenses this instance reports (now or in any stored ping) were mapped, newest
    first: the subscriptions, and so the accounts, its usage went to. One query."""
    licenses = UsagePing.objects.filter(instance=instance, license__isnull=False).values(
        "license_id"
    )
    changes = LicenseMappingChange.objects.filter(license_id__in=licenses)
    if instance.license_id is not None:
        changes = changes | LicenseMappingChange.objects.filter(license_id=instance.license_id)
    return list(
        changes.select_related(
            "from_subscription__company", "to_subscription__company", "changed_by"
        ).order_by("-changed_at", "-pk")[:limit]
    )


def _on_account(company: Company, instances: Mapping[int, Instance] | None):
    """The account's label changes (a filter): by its instances' ids when the page has them.

    PostgreSQL then reads each instance's changes from its index; joined to the account
    instead, it scanned the whole change table (4 ms at 5,000 accounts, growing with the
    book). The ids go as one array (``= ANY``): as an ``IN`` list of the largest account's 81,
    compiling and planning them cost 0.3 ms a query (measured on the 50,000-account book).
    """
    if instances is None:
        return Q(instance__company=company)
    ids = list(instances)
    if connection.vendor != "postgresql":
        return Q(instance_id__in=ids)
    qn = connection.ops.quote_name
    column = f"{qn(LabelChange._meta.db_table)}.{qn('instance_id')}"
    return RawSQL(f"{column} = ANY(%s)", [ids], output_field=BooleanField())


def _with_instances(changes, instances: Mapping[int, Instance] | None) -> list:
    if instances is None:
        return list(changes.select_related("instance"))
    rows = list(changes)
    attach = LabelChange.instance.field.set_cached_value  # no check per row: they are its own
    for change in rows:
        attach(change, instances[change.instance_id])
    return rows


def scheme_markers() -> list[Marker]:
    """Where the scoring scheme changed, as chart markers, in the reader's zone (the chart
    draws and prints the moment as it reads there)."""
    return [
        Marker(at=timezone.localtime(at), text=f"scheme → {to}")
        for at, to in SchemeChange.objects.order_by("changed_at").values_list(
            "changed_at", "to_scheme"
        )
    ]


def pings_by_id(ids: Iterable[int]) -> dict[int, dict]:
    """Date and version of the pings a score used (never the raw payload)."""
    ids = {i for i in ids if i}
    if not ids:
        return {}
    rows = UsagePing.objects.filter(id__in=ids).values(
        "id", "instance_id", "recorded_at", "version"
    )
    return {r["id"]: r for r in rows}


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class MonthlyHistory:
    """An account's monthly scorecards over ``months``, and the per-instance usage asked for.

    ``scores`` maps a month to its ``MonthlyScore`` row: ``detail`` is the engine's scorecard for
    that month, ``totals`` each metric summed over the instances it scored. ``usage`` maps
    ``(instance_id, month)`` to that instance's last ping of the month, for the instances and
    metrics ``monthly_history`` was asked for (and for any month scored before totals were
    stored, which is summed from it).
    """

    months: tuple[date, ...]
    scores: Mapping[date, dict]
    usage: Mapping[tuple[int, date], dict]
    as_of: date | None
    scheme: Scheme | None

    def card(self, month: date) -> dict:
        return self.scores[month]["detail"]

    def included(self, month: date) -> tuple[int, ...]:
        """The instances the engine scored that month (applied Production, not Opt-Out)."""
        return tuple(self.card(month).get("instance_ids", ()))

    def totals(self, month: date, metrics: Sequence[str]) -> dict[str, float | None]:
        """Each metric summed over that month's included instances; NULL anywhere → None.

        A KeyError for a history read without its totals (``monthly_history(totals=False)``):
        its usage holds only some instances, whose sum would be wrong, not missing."""
        stored = self.scores[month]["totals"]
        if stored is not None and all(m in stored for m in metrics):
            return {m: stored[m] for m in metrics}
        rows = [self.usage.get((i, month)) for i in self.included(month)]
        rows = [r for r in rows if r is not None]
        return {metric: sum_or_none(r.get(metric) for r in rows) for metric in metrics}

    def signature(self) -> tuple:
        """Every row this history was read from, in the order read (a content signature)."""
        usage = self.usage.rows if isinstance(self.usage, UsageRows) else list(self.usage.items())
        return list(self.scores.values()), usage


class UsageRows(Mapping):
    """``(instance id, month)`` → that month's usage as a dict, the dicts made on first read.

    A section that finds its content in the cache reads only ``rows`` (for its signature): the
    NOT Production report's 1,264 monthly rows need not become dicts then.
    """

    __slots__ = ("names", "rows", "_by_key")

    def __init__(self, names: Sequence[str], rows: list[tuple]):
        self.names = tuple(names)  # ("instance_id", "month", *fields)
        self.rows = rows
        self._by_key: dict | None = None

    def _map(self) -> dict[tuple[int, date], dict]:
        if self._by_key is None:
            names = self.names
            self._by_key = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in self.rows}
        return self._by_key

    def __getitem__(self, key):
        return self._map()[key]

    def __iter__(self):
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())


def monthly_history(
    company: Company,
    *,
    today: date | None = None,
    card_paths: Sequence[str] | None = None,
    usage_of: Iterable[int] | None = None,
    fields: Sequence[str] = METRIC_NAMES,
    totals: bool = True,
) -> MonthlyHistory:
    """The last ``MONTHS_SHOWN`` monthly scorecards, in one query.

    ``card_paths`` (dotted, e.g. ``"measures.license_utilization"``) limits each month's
    scorecard to those parts, read from the JSON in the database: a whole scorecard is ~9 kB,
    most of it measures a page does not show. Charts of the scored instances read the stored
    monthly ``totals``. ``usage_of`` asks for those instances' own monthly usage ``fields`` too
    (a second query; ask only for what the page shows: 24 months of a large account is
    thousands of rows). Months scored before totals were stored are summed from every
    instance's usage instead (all metrics). ``totals=False``: a page that charts no total
    (NOT Production) reads neither the totals nor that fallback.
    """
    today = today or timezone.now().date()
    start = _month_start(today, MONTHS_SHOWN - 1)
    parts = {} if card_paths is None else _card_parts(card_paths)
    scores = {
        r["month"]: r
        for r in MonthlyScore.objects.filter(company=company, month__gte=start)
        .order_by("month")
        .values(
            "month",
            "scheme",
            "as_of",
            *(("totals",) if totals else ()),
            "billable_users",
            "licensed_seats",
            "license_utilization",
            "license_utilization_color",
            *(() if card_paths is not None else ("detail",)),
            **parts,
        )
    }
    if card_paths is not None:
        for row in scores.values():
            row["detail"] = _card_of(row, parts)
    usage: Mapping[tuple[int, date], dict] = {}
    if totals and any(r["totals"] is None for r in scores.values()):
        usage = _monthly_usage(company, start, None, METRIC_NAMES)
    if usage_of is not None and not usage:
        usage = _monthly_usage(company, start, usage_of, fields)
    elif usage_of is not None:
        usage = dict(usage)
        for key, row in _monthly_usage(company, start, usage_of, fields).items():
            usage[key] = {**usage.get(key, {}), **row}
    months = tuple(sorted(scores))
    as_of = max((r["as_of"] for r in scores.values() if r["as_of"]), default=None)
    scheme = scheme_for(scores[months[-1]]["scheme"]) if months else None
    return MonthlyHistory(months, scores, usage, as_of, scheme)


def _card_parts(paths: Sequence[str]) -> dict[str, F]:
    """``values()`` aliases reading each dotted path out of the scorecard JSON."""
    return {f"_card_{n}": F("detail__" + path.replace(".", "__")) for n, path in enumerate(paths)}


def _card_of(row: dict, parts: Mapping[str, F]) -> dict:
    """The partial scorecard: each path's value (when present) nested as in the whole one."""
    card: dict = {}
    for alias, expression in parts.items():
        *parents, leaf = expression.name.removeprefix("detail__").split("__")
        node = card
        for key in parents:
            node = node.setdefault(key, {})
        value = row.pop(alias)
        if value is not None:
            node[leaf] = value
    return card


def _monthly_usage(
    company: Company, start: date, instance_ids: Iterable[int] | None, fields: Sequence[str]
) -> UsageRows:
    rows = MonthlyUsage.objects.filter(company_id=company.pk, month__gte=start)
    if instance_ids is not None:
        rows = rows.filter(instance_id__in=list(instance_ids))
    names = ("instance_id", "month", *fields)
    # In a fixed order: the same rows make the same signature (sections' content cache).
    return UsageRows(names, list(rows.order_by("instance_id", "month").values_list(*names)))
