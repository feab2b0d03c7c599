"""Storing pings: ``pings_store``, the one way a ping reaches the database.

Storing is set-based: a batch of pings costs a fixed number of queries whatever its size (plus one
or two per license that is merged or newly mapped, which happens once per license in its life).
The HTTP endpoint, the upload page, the bulk loaders and the demo data all store through it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.changes import ALL_HISTORY, companies_changed
from accounts.models import Subscription
from instances.metrics import METRIC_NAMES, failed_text
from instances.models import Instance, InstanceKind, InstanceType, MappingSource, UsagePing
from instances.services.bulk_sql import models_select, pings_existing, pings_insert, rows_update
from instances.services.inputs import PingInput
from instances.services.licenses import LicenseBook
from instances.services.monthly import monthly_refresh, monthly_usage_follow
from instances.versions import parse_version
from instances.versions import sort_key as version_sort

logger = logging.getLogger(__name__)

#: PostgreSQL's SQLSTATE for a transaction it failed to break a deadlock.
DEADLOCK = "40P01"


@dataclass(slots=True)
class StoreOutcome:
    status: str  # "accepted" | "duplicate"
    ping_id: int
    unmapped: bool
    label: str = ""


@dataclass(slots=True)
class StoreSummary:
    """What a batch did. ``company_ids``: companies whose data changed (for a score refresh)."""

    outcomes: list[StoreOutcome] = field(default_factory=list)
    company_ids: set[int] = field(default_factory=set)
    # Set when the batch moved or attached older data: history must be rescored in full.
    history_changed: bool = False

    @property
    def accepted(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "accepted")

    @property
    def duplicates(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "duplicate")

    @property
    def unmapped(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "accepted" and o.unmapped)


def pings_store(*, inputs: Sequence[PingInput], source: str, refresh: bool = True) -> StoreSummary:
    """Store pings idempotently: the same instance + ``recorded_at`` is stored once.

    Finds or creates each instance (self-managed: Unknown; SaaS namespace: Production), resolves
    each license key to ONE ``License`` row whether the ping carries md5, sha256 or both (rows
    that turn out to be the same key are merged), maps each ping to a subscription (the ping's
    ``license_subscription_id`` when it names a known subscription, else the license's mapping),
    keeps unmapped pings with an empty ``subscription``, moves each instance's version, ping dates
    and mapping to its newest ping, keeps ``MonthlyUsage`` = the last ping of each calendar month,
    and stores the raw payload zlib-compressed.

    All or nothing per call. With ``refresh`` a score refresh for every touched company is queued
    once the transaction commits; bulk loaders pass ``refresh=False`` and call
    ``accounts.changes.companies_changed`` once at the end with ``summary.company_ids``.
    A concurrent writer storing the same instance, license or ping makes the batch retry once,
    after which that ping counts as a duplicate; so does a deadlock with another writer.
    """
    if not inputs:
        return StoreSummary()
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                summary = _store(inputs, source)
                # A ping changes its own month's history only: rescore from that month on
                # (unless it moved an instance or attached waiting pings: then all of it).
                since = (
                    ALL_HISTORY
                    if summary.history_changed
                    else min(item.recorded_at for item in inputs).date()
                )
                companies_changed(
                    summary.company_ids, since=since, reason="new ping", refresh=refresh
                )
                return summary
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("ping batch raced with another writer; retrying once")
        except OperationalError as exc:
            # PostgreSQL broke a lock cycle with another writer by failing this transaction:
            # nothing of it was written, and alone again it goes through.
            if attempt == 2 or getattr(exc.__cause__, "sqlstate", None) != DEADLOCK:
                raise
            logger.warning("ping batch deadlocked with another writer; retrying once")
    raise AssertionError("unreachable")


def _store(inputs: Sequence[PingInput], source: str) -> StoreSummary:
    now = timezone.now()
    instances = _instances_for(inputs, now)
    book = LicenseBook(now=now)
    book.load(inputs)
    subs_by_name = _subscriptions_by_name(
        {i.license_subscription_id for i in inputs if i.license_subscription_id}
    )
    # A ping naming a known subscription maps its (still unmapped) license: done before any ping
    # is built so that every ping of the batch, in whatever order, sees the mapping.
    for item in inputs:
        sub = subs_by_name.get(item.license_subscription_id)
        lic = book.get(item)
        if sub is not None and lic is not None and lic.subscription_id is None:
            book.map(lic, sub, via=MappingSource.PING)
    book.save()
    for inst in instances.values():
        # An instance loaded before a merge may still point at the license row it absorbed.
        inst.license_id = book.replaced.get(inst.license_id, inst.license_id)

    existing = {
        (iid, recorded): (pid, sid)
        for iid, recorded, pid, sid in pings_existing(
            {inst.id for inst in instances.values()}, {i.recorded_at for i in inputs}
        )
    }

    summary = StoreSummary()
    new_pings: list[UsagePing] = []
    new_items: list[PingInput] = []
    first_in_batch: dict[tuple, StoreOutcome] = {}
    later_duplicates: list[tuple[StoreOutcome, tuple]] = []
    for item in inputs:
        instance = instances[item.identity]
        key = (instance.id, item.recorded_at)
        if key in existing:
            ping_id, sub_id = existing[key]
            summary.outcomes.append(StoreOutcome("duplicate", ping_id, sub_id is None, item.label))
            continue
        if key in first_in_batch:
            outcome = StoreOutcome("duplicate", 0, False, item.label)
            later_duplicates.append((outcome, key))
            summary.outcomes.append(outcome)
            continue
        lic = book.get(item)
        subscription = subs_by_name.get(item.license_subscription_id)
        if subscription is None and lic is not None and lic.subscription_id is not None:
            subscription = lic.subscription
        new_pings.append(
            UsagePing(
                instance_id=instance.id,
                recorded_at=item.recorded_at,
                received_at=now,
                source=source,
                version=item.version,
                edition=item.edition,
                license=lic,
                subscription=subscription,
                license_md5=item.license_md5,
                license_sha256=item.license_sha256,
                license_subscription_id=item.license_subscription_id,
                license_plan=item.license_plan,
                license_trial=item.license_trial,
                raw_payload=item.stored_raw(),
                **{name: _as_int(item.metrics.get(name)) for name in METRIC_NAMES},
                failed_metrics=failed_text(item.failed),
            )
        )
        new_items.append(item)
        outcome = StoreOutcome("accepted", 0, subscription is None, item.label)
        first_in_batch[key] = outcome
        summary.outcomes.append(outcome)

    pings_insert(new_pings)
    for ping, key in zip(new_pings, first_in_batch, strict=True):
        first_in_batch[key].ping_id = ping.id
    # A ping repeated inside one batch points at the row stored for its first occurrence.
    for outcome, key in later_duplicates:
        first = first_in_batch[key]
        outcome.ping_id, outcome.unmapped = first.ping_id, first.unmapped

    touched, moved_from = _instances_touch(instances, new_pings, new_items)
    if moved_from:
        monthly_usage_follow(touched=touched, moved_from=moved_from)
    monthly_refresh(pings=new_pings, instances=instances)
    attached = book.attach_waiting()
    summary.company_ids = {inst.company_id for inst in touched if inst.company_id}
    # The company an instance left must be rescored without it.
    summary.company_ids |= {cid for cid in moved_from.values() if cid} | attached
    summary.history_changed = bool(moved_from or attached)
    return summary


def _as_int(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, float):
        return round(value)
    return value


def _initial_type(kind: str) -> str:
    # A SaaS namespace is a customer's production group; a new self-managed instance waits for
    # a CSM (or a labeling rule) to say what it is.
    return InstanceType.PRODUCTION if kind == InstanceKind.SAAS else InstanceType.UNKNOWN


def _instances_for(inputs: Sequence[PingInput], now: datetime) -> dict[tuple, Instance]:
    """Every instance the batch names, created if new (self-managed: Unknown; SaaS: Production)."""
    wanted: dict[tuple, PingInput] = {}
    for item in inputs:
        wanted.setdefault(item.identity, item)
    found = _fetch_instances(wanted)
    missing = [item for identity, item in wanted.items() if identity not in found]
    if missing:
        # No ignore_conflicts: primary keys come back on both databases, and a concurrent
        # creator raises IntegrityError, which makes pings_store retry the batch once.
        created = Instance.objects.bulk_create(
            [
                Instance(
                    kind=item.kind,
                    uuid=item.uuid,
                    hostname=item.hostname,
                    namespace_id=item.namespace_id,
                    namespace_path=item.namespace_path,
                    instance_type=_initial_type(item.kind),
                    created_at=now,
                )
                for item in missing
            ],
            batch_size=500,
        )
        for item, inst in zip(missing, created, strict=True):
            found[item.identity] = inst
    return found


def _fetch_instances(wanted: dict[tuple, PingInput]) -> dict[tuple, Instance]:
    uuids = {k[1] for k in wanted if k[0] == InstanceKind.SELF_MANAGED}
    namespaces = {k[1] for k in wanted if k[0] == InstanceKind.SAAS}
    if connection.vendor == "postgresql":
        rows = models_select(
            Instance,
            "(t.kind = %s AND t.uuid = ANY(%s)) OR (t.kind = %s AND t.namespace_id = ANY(%s))",
            [InstanceKind.SELF_MANAGED, sorted(uuids), InstanceKind.SAAS, sorted(namespaces)],
        )
    else:
        query = Q(pk__in=[])
        if uuids:
            query |= Q(kind=InstanceKind.SELF_MANAGED, uuid__in=uuids)
        if namespaces:
            query |= Q(kind=InstanceKind.SAAS, namespace_id__in=namespaces)
        rows = Instance.objects.filter(query)
    found = {}
    for inst in rows:
        identity = (
            (InstanceKind.SAAS, inst.namespace_id)
            if inst.kind == InstanceKind.SAAS
            else (InstanceKind.SELF_MANAGED, inst.uuid, inst.hostname)
        )
        if identity in wanted:
            found[identity] = inst
    return found


def _subscriptions_by_name(names: set[str]) -> dict[str, Subscription]:
    if not names:
        return {}
    if connection.vendor == "postgresql":
        rows = models_select(Subscription, "t.name = ANY(%s)", [sorted(names)])
    else:
        rows = Subscription.objects.filter(name__in=names)
    return {s.name: s for s in rows}


def _instances_touch(
    instances: dict[tuple, Instance], new_pings: list[UsagePing], items: list[PingInput]
) -> tuple[list[Instance], dict[int, int | None]]:
    """Move each instance's version, ping dates and mapping forward to its newest ping.

    An instance with no subscription yet takes one from any of its new pings, even an older one
    arriving late. Returns the instances that received new pings, and for those whose company
    changed, the company they had before.
    """
    by_id = {inst.id: inst for inst in instances.values()}
    # Only an instance with earlier pings can carry older data to another company.
    before = {inst.id: inst.company_id for inst in by_id.values() if inst.last_ping_at}
    changed: dict[int, Instance] = {}
    for ping, item in zip(new_pings, items, strict=True):
        inst = by_id[ping.instance_id]
        changed[inst.id] = inst
        if inst.first_ping_at is None or ping.recorded_at < inst.first_ping_at:
            inst.first_ping_at = ping.recorded_at
        newest = inst.last_ping_at is None or ping.recorded_at >= inst.last_ping_at
        if newest:
            inst.last_ping_at = ping.recorded_at
            if inst.kind == InstanceKind.SELF_MANAGED:
                inst.version = ping.version
                inst.version_sort = version_sort(parse_version(ping.version))
                inst.edition = ping.edition
            if item.namespace_path:
                inst.namespace_path = item.namespace_path
            if ping.license_id:
                inst.license_id = ping.license_id
        if ping.subscription_id and (newest or inst.subscription_id is None):
            inst.subscription_id = ping.subscription_id
            inst.company_id = ping.subscription.company_id
    rows_update(
        Instance,
        list(changed.values()),
        [
            "first_ping_at",
            "last_ping_at",
            "version",
            "version_sort",
            "edition",
            "namespace_path",
            "license",
            "subscription",
            "company",
        ],
    )
    moved_from = {
        i: before[i] for i, inst in changed.items() if i in before and inst.company_id != before[i]
    }
    return list(changed.values()), moved_from
