"""Writes for instances: storing pings, mapping licenses, ingest tokens.

Every function here is keyword-only and named ``<entity>_<verb>``; views, tasks and commands are
thin shells around them. Parsing lives in ``instances.parsing`` and never touches the database.

Storing is set-based: a batch of pings costs a fixed number of queries whatever its size (plus one
or two per license that is merged or newly mapped, which happens once per license in its life).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import multiprocessing
import secrets
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import DataError, IntegrityError, connection, models, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts.changes import ALL_HISTORY, companies_changed
from accounts.models import Subscription

from .metrics import METRIC_NAMES
from .models import (
    IngestToken,
    Instance,
    InstanceKind,
    InstanceType,
    License,
    MappingSource,
    MonthlyUsage,
    PingReport,
    PingSource,
    RejectedPayload,
    UsagePing,
)
from .parsing import (
    ParsedPing,
    PingRejected,
    read_payload_file,
    read_payload_file_or_reason,
)
from .saas import parse_saas_row, read_rows
from .versions import parse_version
from .versions import sort_key as version_sort

logger = logging.getLogger(__name__)

#: GitLab renamed its tiers; pings from old licenses still carry the old names.
PLAN_ALIASES = {"gold": "ultimate", "silver": "premium", "bronze": "starter", "core": "free"}
RAW_KEEP_LIMIT = 2 * 1024 * 1024  # bytes of a rejected payload worth keeping for ops
# zlib level 1: a full-size payload shrinks about 4x at a fraction of level 6's cost, and
# compression is the largest per-ping cost of a bulk load.
RAW_COMPRESSION_LEVEL = 1


def normalize_plan(plan: str | None) -> str:
    plan = (plan or "").strip().lower()
    return PLAN_ALIASES.get(plan, plan)


def _clip(value: str | None, length: int) -> str:
    return (value or "")[:length]


def compress_raw(raw: bytes | None) -> bytes | None:
    return zlib.compress(raw, RAW_COMPRESSION_LEVEL) if raw else None


def decompress_raw(blob: bytes | memoryview | None) -> bytes | None:
    return zlib.decompress(bytes(blob)) if blob else None


# --------------------------------------------------------------------------------------------------
# Storing pings


@dataclass(slots=True)
class PingInput:
    """One ping ready to store, from a self-managed Service Ping or a SaaS namespace export row.

    ``raw`` is the JSON as received; a caller that compressed it already (the bulk loader does so
    in worker threads) passes ``raw_compressed`` instead.
    """

    kind: str
    recorded_at: datetime
    metrics: dict
    uuid: str | None = None
    hostname: str = ""
    namespace_id: int | None = None
    namespace_path: str = ""
    version: str = ""
    version_tuple: tuple[int, int, int] | None = None
    edition: str = ""
    license_md5: str = ""
    license_sha256: str = ""
    license_subscription_id: str = ""
    license_plan: str = ""
    license_trial: bool | None = None
    raw: bytes | None = None
    raw_compressed: bytes | None = None
    label: str = ""  # file name or row number, for summaries

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedPing,
        *,
        raw: bytes | None = None,
        raw_compressed: bytes | None = None,
        label: str = "",
    ) -> PingInput:
        return cls(
            kind=InstanceKind.SELF_MANAGED,
            uuid=parsed.uuid,
            hostname=parsed.hostname,
            recorded_at=parsed.recorded_at,
            version=_clip(parsed.version, 64),
            version_tuple=parsed.version_tuple,
            edition=_clip(parsed.edition, 16),
            # Hashes are hex: case must not split one license into two rows.
            license_md5=_clip(parsed.license_md5, 32).lower(),
            license_sha256=_clip(parsed.license_sha256, 64).lower(),
            license_subscription_id=_clip(parsed.license_subscription_id, 64),
            license_plan=_clip(normalize_plan(parsed.license_plan), 32),
            license_trial=parsed.license_trial,
            metrics=parsed.metrics,
            raw=raw,
            raw_compressed=raw_compressed,
            label=label,
        )

    @classmethod
    def from_saas(cls, row, *, label: str = "") -> PingInput:
        return cls(
            kind=InstanceKind.SAAS,
            namespace_id=row.namespace_id,
            namespace_path=row.namespace_path,
            recorded_at=row.recorded_at,
            license_subscription_id=row.subscription_name,
            metrics=row.metrics,
            label=label or f"row {row.line}",
        )

    @property
    def identity(self) -> tuple:
        if self.kind == InstanceKind.SAAS:
            return (InstanceKind.SAAS, self.namespace_id)
        return (InstanceKind.SELF_MANAGED, self.uuid, self.hostname)


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
    after which that ping counts as a duplicate.
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
    raise AssertionError("unreachable")


def _store(inputs: Sequence[PingInput], source: str) -> StoreSummary:
    now = timezone.now()
    instances = _instances_for(inputs, now)
    book = _LicenseBook(now=now)
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
        for iid, recorded, pid, sid in UsagePing.objects.filter(
            instance_id__in={inst.id for inst in instances.values()},
            recorded_at__in={i.recorded_at for i in inputs},
        ).values_list("instance_id", "recorded_at", "id", "subscription_id")
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
                raw_payload=(
                    item.raw_compressed
                    if item.raw_compressed is not None
                    else compress_raw(item.raw)
                ),
                **{name: _as_int(item.metrics.get(name)) for name in METRIC_NAMES},
            )
        )
        new_items.append(item)
        outcome = StoreOutcome("accepted", 0, subscription is None, item.label)
        first_in_batch[key] = outcome
        summary.outcomes.append(outcome)

    _pings_insert(new_pings)
    for ping, key in zip(new_pings, first_in_batch, strict=True):
        first_in_batch[key].ping_id = ping.id
    # A ping repeated inside one batch points at the row stored for its first occurrence.
    for outcome, key in later_duplicates:
        first = first_in_batch[key]
        outcome.ping_id, outcome.unmapped = first.ping_id, first.unmapped

    touched, moved_from = _instances_touch(instances, new_pings, new_items)
    if moved_from:
        _monthly_usage_follow(touched, moved_from)
    monthly_refresh(pings=new_pings, instances=instances)
    attached = book.attach_waiting()
    summary.company_ids = {inst.company_id for inst in touched if inst.company_id}
    # The company an instance left must be rescored without it.
    summary.company_ids |= {cid for cid in moved_from.values() if cid} | attached
    summary.history_changed = bool(moved_from or attached)
    return summary


def _monthly_usage_follow(touched: list[Instance], moved_from: dict[int, int | None]) -> None:
    """An instance's monthly rows belong to the company it now belongs to."""
    by_company: dict[int | None, list[int]] = defaultdict(list)
    for inst in touched:
        if inst.id in moved_from:
            by_company[inst.company_id].append(inst.id)
    for company_id, ids in by_company.items():
        MonthlyUsage.objects.filter(instance_id__in=ids).update(company_id=company_id)


def _pings_insert(pings: list[UsagePing]) -> None:
    """Insert new pings and set their ids: COPY on PostgreSQL, ``bulk_create`` elsewhere.

    COPY (binary) sends the compressed payloads as raw bytes instead of hex literals inside a
    multi-megabyte INSERT; at full-size payloads it is about five times faster.
    """
    if connection.vendor != "postgresql" or len(pings) < 20:
        UsagePing.objects.bulk_create(pings, batch_size=500)
        return
    meta = UsagePing._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(pings)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        columns = ", ".join(qn(c) for c in [meta.pk.column, *(f.column for f in fields)])
        types = [_pg_type(meta.pk), *(_pg_type(f) for f in fields)]
        copy_sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
        # The raw psycopg cursor bypasses Django's error translation: restore it, so that a
        # duplicate raises IntegrityError (and pings_store retries) as with bulk_create.
        with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
            copy.set_types(types)
            for ping, pk in zip(pings, ids, strict=True):
                ping.pk = pk
                # Attribute values are plain Python values (str, int, bool, datetime, bytes,
                # None) that psycopg writes directly; no field needs Django's conversion.
                copy.write_row([pk, *(getattr(ping, f.attname) for f in fields)])
    for ping in pings:
        ping._state.adding = False
        ping._state.db = connection.alias


def _pg_type(field) -> str:
    if field.is_relation:
        field = field.target_field
    # "varchar(64)" -> "varchar"; "timestamp with time zone" is known to psycopg as timestamptz.
    name = field.db_type(connection).split("(")[0].strip()
    return {"timestamp with time zone": "timestamptz", "bigserial": "int8"}.get(name, name)


def _rows_update(model, objs: Sequence, fields: list[str]) -> None:
    """UPDATE each object's row by primary key, all statements in one ``executemany``.

    For hundreds of rows this is far cheaper than ``bulk_update``'s CASE expressions (psycopg
    pipelines the statements; SQLite runs them in-process).
    """
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in columns)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"
    prepare = _db_preparers(columns)
    params = [
        [
            value if conv is None else conv(value)
            for conv, value in zip(prepare, (getattr(obj, f.attname) for f in columns), strict=True)
        ]
        + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _db_preparers(fields) -> list:
    """Per field, the conversion its values need before a raw query, or None.

    Ints, strings, booleans and None go as they are; dates and datetimes need Django's
    adaptation on SQLite (text in Django's own format), not on PostgreSQL. Calling
    ``get_db_prep_save`` for every value instead costs more than the query itself.
    """
    if connection.vendor == "postgresql":
        return [None] * len(fields)
    return [
        functools.partial(f.get_db_prep_save, connection=connection)
        if isinstance(f, models.DateField)
        else None
        for f in fields
    ]


def _as_int(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, float):
        return round(value)
    return value


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
                    instance_type=(
                        InstanceType.PRODUCTION
                        if item.kind == InstanceKind.SAAS
                        else InstanceType.UNKNOWN
                    ),
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
    query = Q(pk__in=[])
    if uuids:
        query |= Q(kind=InstanceKind.SELF_MANAGED, uuid__in=uuids)
    if namespaces:
        query |= Q(kind=InstanceKind.SAAS, namespace_id__in=namespaces)
    found = {}
    for inst in Instance.objects.filter(query):
        identity = (
            (InstanceKind.SAAS, inst.namespace_id)
            if inst.kind == InstanceKind.SAAS
            else (InstanceKind.SELF_MANAGED, inst.uuid, inst.hostname)
        )
        if identity in wanted:
            found[identity] = inst
    return found


def _license_key(item: PingInput) -> tuple[str, str] | None:
    if item.license_md5 or item.license_sha256:
        return (item.license_md5, item.license_sha256)
    return None


_LICENSE_FIELDS = [
    "md5",
    "sha256",
    "subscription_name",
    "plan",
    "first_seen_at",
    "last_seen_at",
    "subscription",
    "mapped_via",
    "mapped_by",
    "mapped_at",
]


class _LicenseBook:
    """The batch's ``License`` rows, one per license key, however the pings spell the key.

    A license key shows up as md5 only (before 15.2), md5 + sha256 (15.2 to 16.1) and sha256 only
    (16.2+); GitLab's mapping file knows it by md5. Rows first seen through different hashes are
    merged as soon as a ping carrying both hashes proves they are one key: the survivor keeps the
    mapping (a person's or an import's over one from a ping), pings and instances follow it.
    """

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self.by_md5: dict[str, License] = {}
        self.by_sha: dict[str, License] = {}
        self.by_pair: dict[tuple[str, str], License] = {}
        self.new: list[License] = []
        self.dirty: dict[int, License] = {}  # saved rows to update, by pk
        self.merges: list[tuple[License, License]] = []  # saved (survivor, absorbed) pairs
        self.forward: dict[int, License] = {}  # id() of an absorbed object -> its survivor
        self.newly_mapped: list[License] = []  # saved rows mapped now: their older pings wait
        self.replaced: dict[int, int] = {}  # pk of a merged-away row -> pk of its survivor

    def load(self, inputs: Sequence[PingInput]) -> None:
        pairs: dict[tuple[str, str], PingInput] = {}
        for item in inputs:
            key = _license_key(item)
            if key:
                pairs[key] = item  # the last item wins: its subscription id and plan are newest
        if not pairs:
            return
        md5s = {md5 for md5, _ in pairs if md5}
        shas = {sha for _, sha in pairs if sha}
        for lic in License.objects.filter(Q(md5__in=md5s) | Q(sha256__in=shas)).select_related(
            "subscription"
        ):
            self._register(lic)
        for key, item in pairs.items():
            self.by_pair[key] = self._resolve(key, item)

    def get(self, item: PingInput) -> License | None:
        key = _license_key(item)
        if key is None:
            return None
        lic = self.by_pair[key]
        while id(lic) in self.forward:
            lic = self.forward[id(lic)]
        return lic

    def map(self, lic: License, subscription: Subscription, *, via: str) -> None:
        lic.subscription, lic.mapped_via, lic.mapped_at = subscription, via, self.now
        if lic.pk is not None:
            self.dirty[lic.pk] = lic
            self.newly_mapped.append(lic)

    def save(self) -> None:
        """Write merges, updates and new rows, in the order the unique constraints allow."""
        for survivor, absorbed in self.merges:
            self.replaced[absorbed.pk] = survivor.pk
            UsagePing.objects.filter(license=absorbed).update(license=survivor)
            Instance.objects.filter(license=absorbed).update(license=survivor)
            # Delete first: the survivor is about to take over the absorbed row's hash.
            absorbed.delete()
        if self.dirty:
            _rows_update(License, list(self.dirty.values()), _LICENSE_FIELDS)
        if self.new:
            License.objects.bulk_create(self.new)

    def attach_waiting(self) -> set[int]:
        """Attach earlier unmapped pings and instances of licenses mapped in this batch."""
        ids = {lic.pk for lic in self.newly_mapped if lic.subscription_id is not None}
        return _attach_by_license(ids)[1] if ids else set()

    def _register(self, lic: License) -> None:
        if lic.md5:
            self.by_md5[lic.md5] = lic
        if lic.sha256:
            self.by_sha[lic.sha256] = lic

    def _touch(self, lic: License) -> None:
        if lic.pk is not None:
            self.dirty[lic.pk] = lic

    def _resolve(self, key: tuple[str, str], item: PingInput) -> License:
        md5, sha = key
        by_md5 = self.by_md5.get(md5) if md5 else None
        by_sha = self.by_sha.get(sha) if sha else None
        if by_md5 is not None and by_sha is not None and by_md5 is not by_sha:
            if by_md5.sha256 is None and by_sha.md5 is None:
                lic = self._merge(by_md5, by_sha)
            else:
                # Two hashes of one key cannot belong to two different keys; a sender mixing
                # them is broken. Keep both rows as they are and go by the md5.
                logger.warning("license hashes %s / %s name two different licenses", md5, sha)
                lic = by_md5
        elif by_md5 is not None or by_sha is not None:
            lic = by_md5 or by_sha
            if md5 and lic.md5 is None:
                lic.md5 = md5
                self._touch(lic)
            if sha and lic.sha256 is None:
                lic.sha256 = sha
                self._touch(lic)
        else:
            lic = License(md5=md5 or None, sha256=sha or None, first_seen_at=self.now)
            self.new.append(lic)
        self._register(lic)
        self._note_sighting(lic, item)
        return lic

    def _note_sighting(self, lic: License, item: PingInput) -> None:
        changed = False
        if item.license_subscription_id and lic.subscription_name != item.license_subscription_id:
            lic.subscription_name, changed = item.license_subscription_id, True
        if item.license_plan and lic.plan != item.license_plan:
            lic.plan, changed = item.license_plan, True
        if lic.first_seen_at is None:  # created by a mapping import before any ping
            lic.first_seen_at, changed = self.now, True
        # Touch at most once an hour: a weekly sender should not cost a write per batch.
        if lic.last_seen_at is None or lic.last_seen_at < self.now - timedelta(hours=1):
            lic.last_seen_at, changed = self.now, True
        if changed:
            self._touch(lic)

    def _merge(self, a: License, b: License) -> License:
        survivor, absorbed = sorted((a, b), key=_survivor_rank)
        survivor.md5 = survivor.md5 or absorbed.md5
        survivor.sha256 = survivor.sha256 or absorbed.sha256
        survivor.subscription_name = survivor.subscription_name or absorbed.subscription_name
        survivor.plan = survivor.plan or absorbed.plan
        if survivor.subscription_id is None and absorbed.subscription_id is not None:
            survivor.subscription = absorbed.subscription
            survivor.mapped_via = absorbed.mapped_via
            survivor.mapped_by_id = absorbed.mapped_by_id
            survivor.mapped_at = absorbed.mapped_at
        if survivor.pk is not None:
            # Pings of either row that were waiting attach to the merged row's mapping, if any.
            self.newly_mapped.append(survivor)
        seen = [t for t in (survivor.first_seen_at, absorbed.first_seen_at) if t]
        survivor.first_seen_at = min(seen) if seen else None
        self.forward[id(absorbed)] = survivor
        if absorbed.pk is None:
            self.new.remove(absorbed)
        else:
            self.dirty.pop(absorbed.pk, None)
            self.merges.append((survivor, absorbed))
        self._touch(survivor)
        self._register(survivor)
        return survivor


def _survivor_rank(lic: License) -> tuple:
    # Saved before new, mapped before unmapped, a person's or an import's mapping before a ping's,
    # then the oldest row.
    return (
        lic.pk is None,
        lic.subscription_id is None,
        lic.mapped_via == MappingSource.PING,
        lic.pk or 0,
    )


def _subscriptions_by_name(names: set[str]) -> dict[str, Subscription]:
    if not names:
        return {}
    return {s.name: s for s in Subscription.objects.filter(name__in=names)}


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
    _rows_update(
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
    ] + [meta.get_field(name) for name in METRIC_NAMES]
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
    prepare = _db_preparers(fields)
    params = []
    for (iid, month), ping in latest.items():
        values = [iid, month, companies.get(iid), ping.id, ping.recorded_at, ping.version]
        values += [getattr(ping, name) for name in METRIC_NAMES]
        params.append(
            [v if conv is None else conv(v) for conv, v in zip(prepare, values, strict=True)]
        )
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        return max(cursor.rowcount, 0)


# --------------------------------------------------------------------------------------------------
# Bulk loading payload files

PING_FILE_SUFFIXES = (".json", ".json.gz")


@dataclass(slots=True)
class BulkSummary:
    """What a bulk load did: ``items`` read (files, or rows of an export), what became of them;
    ``rejected`` holds (path or row location, reason) for each one not stored."""

    items: int = 0
    accepted: int = 0
    duplicates: int = 0
    unmapped: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    company_ids: set[int] = field(default_factory=set)


def ping_files_find(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(files to load, (path, reason) for paths that are neither a file nor a folder).

    A folder is searched recursively for ``*.json`` and ``*.json.gz`` (any case); a file named
    explicitly is loaded whatever its name. Files are returned once each, in path order per
    argument, so repeated runs load in the same order.
    """
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.name.lower().endswith(PING_FILE_SUFFIXES) and p.is_file()
            )
        elif path.is_file():
            found = [path]
        else:
            missing.append((str(arg), "no such file or folder"))
            continue
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files, missing


def ping_file_read(path: Path, *, max_bytes: int) -> PingInput:
    """Read, inflate, parse and compress one payload file (no database access).

    Raises ``OSError``, ``PayloadError`` or ``PingRejected``, each with a reason for a person.
    """
    parsed, blob = read_payload_file(
        str(path), max_bytes=max_bytes, compress_level=RAW_COMPRESSION_LEVEL
    )
    return PingInput.from_parsed(parsed, raw_compressed=blob, label=str(path))


#: Below this many files, starting worker processes costs more than it saves.
PROCESS_POOL_FROM = 100


def ping_files_ingest(
    *,
    files: Sequence[Path],
    batch_size: int = 500,
    workers: int = 2,
    max_bytes: int | None = None,
    on_progress=None,
) -> BulkSummary:
    """Store payload files in batches: ``pings_store`` per batch, rejections kept per batch.

    Reading, parsing and compressing run in ``workers`` processes (threads for a handful of
    files), overlapping with storing: JSON parsing holds the GIL, so threads alone would leave
    a core idle. Streams: at most two batches are in memory, one being stored while the workers
    read the next. Nothing is refreshed per batch; the caller queues one refresh with
    ``companies_changed(summary.company_ids)``. A batch the database refuses
    (a value out of range) is retried file by file so only the guilty file is rejected.
    ``on_progress(n)`` is called after each batch with the number of files it held.
    """
    read = functools.partial(
        read_payload_file_or_reason,
        max_bytes=max_bytes or settings.PING_MAX_DECOMPRESSED_BYTES,
        compress_level=RAW_COMPRESSION_LEVEL,
    )
    summary = BulkSummary(items=len(files))
    paths = [str(p) for p in files]
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    if not batches:
        return summary
    workers = max(1, workers)
    if len(files) >= PROCESS_POOL_FROM and workers > 1:
        # spawn, not fork: the parent holds database connections and threads (tqdm's monitor).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        chunk = max(1, min(32, batch_size // (4 * workers)))
    else:
        pool, chunk = ThreadPoolExecutor(workers), 1
    with pool:
        pending = pool.map(read, batches[0], chunksize=chunk)
        for index, batch in enumerate(batches):
            results = list(pending)
            if index + 1 < len(batches):
                pending = pool.map(read, batches[index + 1], chunksize=chunk)
            attempts = [
                (path, PingInput.from_parsed(parsed, raw_compressed=blob, label=path), None)
                if parsed is not None
                else (path, None, reason)
                for path, (parsed, blob, reason) in zip(batch, results, strict=True)
            ]
            _bulk_store(attempts, summary)
            if on_progress is not None:
                on_progress(len(attempts))
    return summary


def _bulk_store(attempts, summary: BulkSummary) -> None:
    inputs = [item for _, item, _ in attempts if item is not None]
    rejections = [(str(path), reason) for path, item, reason in attempts if item is None]
    try:
        stored = [pings_store(inputs=inputs, source=PingSource.BULK, refresh=False)]
    except DataError:
        stored = []
        for item in inputs:
            try:
                stored.append(pings_store(inputs=[item], source=PingSource.BULK, refresh=False))
            except DataError:
                rejections.append((item.label, "a value does not fit the database"))
    for result in stored:
        summary.accepted += result.accepted
        summary.duplicates += result.duplicates
        summary.unmapped += result.unmapped
        summary.company_ids |= result.company_ids
    if rejections:
        summary.rejected.extend(rejections)
        rejected_payloads_keep(
            source=PingSource.BULK,
            rejections=[(path[-255:], reason, _head(path)) for path, reason in rejections],
        )


def _head(path: str) -> bytes | None:
    """The start of a rejected file, for ops; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(RAW_KEEP_LIMIT)
    except OSError:
        return None


def saas_export_ingest(*, data: bytes, filename: str, batch_size: int = 500) -> BulkSummary:
    """Store a weekly SaaS namespace export (CSV, JSON array or JSON Lines).

    Good rows are stored as namespace pings (namespaces are Production on arrival; the same
    namespace and snapshot date is stored once), each bad row is kept as a rejected payload and
    listed in ``rejected`` as ("line N" / "item N", reason). Raises ``PingRejected`` when the
    file as a whole cannot be read. No refresh is queued: the caller queues one for
    ``summary.company_ids``.
    """
    summary = BulkSummary()
    batch: list[PingInput] = []
    rejections: list[tuple[str, str, bytes | None]] = []

    def flush() -> None:
        result = pings_store(inputs=batch, source=PingSource.SAAS, refresh=False)
        summary.accepted += result.accepted
        summary.duplicates += result.duplicates
        summary.unmapped += result.unmapped
        summary.company_ids |= result.company_ids
        batch.clear()

    for number, (location, row) in enumerate(read_rows(data, filename=filename), start=1):
        summary.items += 1
        try:
            batch.append(PingInput.from_saas(parse_saas_row(row, line=number), label=location))
        except PingRejected as exc:
            summary.rejected.append((location, exc.reason))
            raw = orjson.dumps(row, default=str) if row is not None else None
            rejections.append((filename[-255:], f"{location}: {exc.reason}", raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if rejections:
        rejected_payloads_keep(source=PingSource.SAAS, rejections=rejections)
    return summary


# --------------------------------------------------------------------------------------------------
# Mapping licenses and subscriptions


def license_map(*, license: License, subscription: Subscription, by=None, via: str) -> int:
    """Map a license to a subscription and attach every ping and instance that waited for it.

    Pings stored unmapped with this license get the subscription; so do pings that got the
    license's previous mapping (a correction moves them), but never pings whose own
    ``license_subscription_id`` named their subscription. Recorded with who did it and how.
    Returns the number of pings attached or moved; queues a score refresh for the companies
    concerned.
    """
    return licenses_map(pairs=[(license, subscription)], by=by, via=via)


def licenses_map(*, pairs: Sequence[tuple[License, Subscription]], by=None, via: str) -> int:
    """``license_map`` for many licenses at once, in a fixed number of queries.

    (Plus a few per license whose previous, different mapping is corrected: rare.)
    """
    if not pairs:
        return 0
    now = timezone.now()
    user = by if by is not None and by.is_authenticated else None
    company_ids: set[int] = set()
    moved = 0
    with transaction.atomic():
        corrections = []
        for lic, sub in pairs:
            if lic.subscription_id is not None and lic.subscription_id != sub.pk:
                corrections.append((lic, lic.subscription, sub))
            lic.subscription, lic.mapped_via, lic.mapped_by, lic.mapped_at = sub, via, user, now
        _rows_update(
            License,
            [lic for lic, _ in pairs],
            ["subscription", "mapped_via", "mapped_by", "mapped_at"],
        )
        for lic, old, sub in corrections:
            # Pings that took the old mapping follow the license; a ping that named its own
            # subscription (license_subscription_id) keeps it.
            moved += (
                UsagePing.objects.filter(license=lic, subscription=old)
                .exclude(license_subscription_id=old.name)
                .update(subscription=sub)
            )
            instance_ids = list(
                Instance.objects.filter(license=lic, subscription=old).values_list("id", flat=True)
            )
            Instance.objects.filter(id__in=instance_ids).update(
                subscription=sub, company_id=sub.company_id
            )
            MonthlyUsage.objects.filter(instance_id__in=instance_ids).update(
                company_id=sub.company_id
            )
            company_ids |= {old.company_id, sub.company_id}
        attached, companies = _attach_by_license({lic.pk for lic, _ in pairs})
        company_ids |= companies
        companies_changed(company_ids, reason="license mapped")
    return attached + moved


def subscription_attach_waiting(*, subscription: Subscription) -> int:
    """Attach unmapped pings whose ``license_subscription_id`` names this (new) subscription."""
    return subscriptions_attach_waiting(subscriptions=[subscription])


def subscriptions_attach_waiting(*, subscriptions: Sequence[Subscription]) -> int:
    """Attach pings waiting for these (newly imported) subscriptions, and their licenses.

    A ping whose ``license_subscription_id`` names one of them gets it; its license, if still
    unmapped, is mapped to it (as from a ping), and so every other waiting ping of that license
    (e.g. older pings without a subscription id) attaches too. Instances follow. Returns the
    number of pings attached; queues a score refresh for the companies concerned. A fixed number
    of queries, whatever the number of subscriptions.
    """
    by_name = {s.name: s for s in subscriptions}
    if not by_name:
        return 0
    now = timezone.now()
    with transaction.atomic():
        named = UsagePing.objects.filter(
            subscription__isnull=True, license_subscription_id__in=by_name
        )
        waiting = set(named.values_list("license_subscription_id", "license_id", "instance_id"))
        if not waiting:
            return 0
        company_ids = {by_name[name].company_id for name, _, _ in waiting}
        name_of_license = {license_id: name for name, license_id, _ in waiting if license_id}
        newly = list(
            License.objects.filter(id__in=name_of_license, subscription__isnull=True).only("id")
        )
        for lic in newly:
            lic.subscription = by_name[name_of_license[lic.pk]]
            lic.mapped_via, lic.mapped_at = MappingSource.PING, now
        _rows_update(License, newly, ["subscription", "mapped_via", "mapped_at"])
        attached = named.update(
            subscription_id=Subquery(
                Subscription.objects.filter(name=OuterRef("license_subscription_id")).values("id")[
                    :1
                ]
            )
        )
        more, companies = _attach_by_license({lic.pk for lic in newly})
        company_ids |= companies
        company_ids |= _instances_attach({instance_id for _, _, instance_id in waiting})
        companies_changed(company_ids, reason="subscription imported")
    return attached + more


def _attach_by_license(license_ids: set[int]) -> tuple[int, set[int]]:
    """Give waiting pings of these licenses their license's subscription; instances follow.

    Returns (pings attached, companies concerned). A fixed number of queries.
    """
    if not license_ids:
        return 0, set()
    waiting = UsagePing.objects.filter(
        license_id__in=license_ids, subscription__isnull=True, license__subscription__isnull=False
    )
    found = set(waiting.values_list("instance_id", "license__subscription__company_id"))
    attached = 0
    if found:
        attached = waiting.update(
            subscription_id=Subquery(
                License.objects.filter(pk=OuterRef("license_id")).values("subscription_id")[:1]
            )
        )
    instance_ids = {instance_id for instance_id, _ in found}
    instance_ids |= set(
        Instance.objects.filter(license_id__in=license_ids, subscription__isnull=True).values_list(
            "id", flat=True
        )
    )
    return attached, {company for _, company in found} | _instances_attach(instance_ids)


def _instances_attach(instance_ids: set[int]) -> set[int]:
    """Instances without a subscription take the one of their newest mapped ping.

    Their company follows the subscription, and their monthly rows follow the company. Returns
    the companies of the instances attached.
    """
    if not instance_ids:
        return set()
    ids = list(
        Instance.objects.filter(id__in=instance_ids, subscription__isnull=True).values_list(
            "id", flat=True
        )
    )
    if not ids:
        return set()
    newest_mapped = (
        UsagePing.objects.filter(instance=OuterRef("pk"), subscription__isnull=False)
        .order_by("-recorded_at")
        .values("subscription_id")[:1]
    )
    Instance.objects.filter(id__in=ids).update(subscription_id=Subquery(newest_mapped))
    Instance.objects.filter(id__in=ids, subscription__isnull=False).update(
        company_id=Subquery(
            Subscription.objects.filter(pk=OuterRef("subscription_id")).values("company_id")[:1]
        )
    )
    MonthlyUsage.objects.filter(instance_id__in=ids).update(
        company_id=Subquery(
            Instance.objects.filter(pk=OuterRef("instance_id")).values("company_id")[:1]
        )
    )
    return set(
        Instance.objects.filter(id__in=ids, company__isnull=False).values_list(
            "company_id", flat=True
        )
    )


# --------------------------------------------------------------------------------------------------
# Rejections, companion reports, tokens


def rejected_payload_keep(*, source: str, reason: str, raw: bytes | None, filename: str = ""):
    """Keep what could not be stored as a ping, so ops can see it and nothing vanishes.

    At most ``RAW_KEEP_LIMIT`` bytes of it are kept (compressed).
    """
    blob = compress_raw(raw[:RAW_KEEP_LIMIT]) if raw else None
    return RejectedPayload.objects.create(
        source=source,
        filename=_storable_text(filename)[:255],
        reason=_storable_text(reason),
        raw=blob,
    )


def rejected_payloads_keep(*, source: str, rejections: Sequence[tuple[str, str, bytes | None]]):
    """``rejected_payload_keep`` for many (filename, reason, raw) at once, in one insert."""
    RejectedPayload.objects.bulk_create(
        [
            RejectedPayload(
                source=source,
                filename=_storable_text(filename)[:255],
                reason=_storable_text(reason),
                raw=compress_raw(raw[:RAW_KEEP_LIMIT]) if raw else None,
            )
            for filename, reason, raw in rejections
        ],
        batch_size=100,
    )


def ping_report_store(*, kind: str, parsed, payload: dict) -> PingReport:
    """Store a ``/usage_ping_errors`` or ``/usage_ping_metadata`` report for ops.

    The payload is kept as JSON made storable: PostgreSQL's jsonb refuses NUL characters and
    non-finite numbers, which a broken sender may still send.
    """
    payload = _storable_json(payload)
    if kind == PingReport.Kind.ERROR:
        return PingReport.objects.create(
            kind=kind,
            uuid=_clip(parsed.uuid, 64),
            hostname=_clip(parsed.hostname, 255),
            version=_clip(parsed.version, 64),
            message=parsed.message,
            elapsed=parsed.elapsed,
            payload=payload,
        )
    return PingReport.objects.create(
        kind=kind,
        uuid=_clip(parsed.uuid, 64),
        message=f"{len(parsed.metrics)} metric timings",
        payload=payload,
    )


def _storable_text(value: str) -> str:
    return value.replace("\x00", "\N{REPLACEMENT CHARACTER}")


REPORT_MAX_DEPTH = 32  # GitLab's reports nest three or four levels; deeper is noise


def _storable_json(value, depth: int = 0):
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return None  # past what any database's JSON number holds
    if isinstance(value, dict | list) and depth >= REPORT_MAX_DEPTH:
        return "… (nested too deeply, cut)"
    if isinstance(value, dict):
        return {_storable_text(str(k)): _storable_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable_json(v, depth + 1) for v in value]
    return value


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ingest_token_create(*, name: str, by=None) -> tuple[IngestToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored."""
    secret = "upt_" + secrets.token_urlsafe(32)
    token = IngestToken.objects.create(
        name=name,
        token_hash=_hash_token(secret),
        prefix=secret[:10],
        created_by=by if by is not None and by.is_authenticated else None,
    )
    return token, secret


def ingest_token_authenticate(secret: str) -> IngestToken | None:
    """The active (not revoked) token with this secret, or None. Marks it used."""
    if not secret:
        return None
    token = IngestToken.objects.filter(
        token_hash=_hash_token(secret), revoked_at__isnull=True
    ).first()
    if token is not None:
        now = timezone.now()
        # Touch at most once a minute: a busy sender should not cost a write per ping.
        if token.last_used_at is None or token.last_used_at < now - timedelta(minutes=1):
            IngestToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
