"""Writes for instances: storing pings, mapping licenses, ingest tokens.

Every function here is keyword-only and named ``<entity>_<verb>``; views, tasks and commands are
thin shells around them. Parsing lives in ``instances.parsing`` and never touches the database.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

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
    RejectedPayload,
    UsagePing,
)
from .parsing import ParsedPing

logger = logging.getLogger(__name__)

#: GitLab renamed its tiers; pings from old licenses still carry the old names.
PLAN_ALIASES = {"gold": "ultimate", "silver": "premium", "bronze": "starter", "core": "free"}
RAW_KEEP_LIMIT = 2 * 1024 * 1024  # bytes of a rejected payload worth keeping for ops


def normalize_plan(plan: str | None) -> str:
    plan = (plan or "").strip().lower()
    return PLAN_ALIASES.get(plan, plan)


def version_sort_key(version_tuple: tuple[int, int, int] | None) -> int | None:
    if not version_tuple:
        return None
    major, minor, patch = version_tuple
    return major * 1_000_000 + min(minor, 999) * 1_000 + min(patch, 999)


def _clip(value: str | None, length: int) -> str:
    return (value or "")[:length]


def compress_raw(raw: bytes | None) -> bytes | None:
    return zlib.compress(raw, 1) if raw else None


def decompress_raw(blob: bytes | memoryview | None) -> bytes | None:
    return zlib.decompress(bytes(blob)) if blob else None


# --------------------------------------------------------------------------------------------------
# Storing pings


@dataclass(slots=True)
class PingInput:
    """One ping ready to store, from a self-managed Service Ping or a SaaS namespace export row."""

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
    label: str = ""  # file name or row number, for summaries

    @classmethod
    def from_parsed(cls, parsed: ParsedPing, *, raw: bytes | None = None, label: str = ""):
        return cls(
            kind=InstanceKind.SELF_MANAGED,
            uuid=parsed.uuid,
            hostname=parsed.hostname,
            recorded_at=parsed.recorded_at,
            version=_clip(parsed.version, 64),
            version_tuple=parsed.version_tuple,
            edition=_clip(parsed.edition, 16),
            license_md5=_clip(parsed.license_md5, 32),
            license_sha256=_clip(parsed.license_sha256, 64),
            license_subscription_id=_clip(parsed.license_subscription_id, 64),
            license_plan=_clip(normalize_plan(parsed.license_plan), 32),
            license_trial=parsed.license_trial,
            metrics=parsed.metrics,
            raw=raw,
            label=label,
        )

    @classmethod
    def from_saas(cls, row, *, label: str = ""):
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
    outcomes: list[StoreOutcome] = field(default_factory=list)
    company_ids: set[int] = field(default_factory=set)

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

    Finds or creates each instance, maps each license to a subscription (the ping's
    ``license_subscription_id`` first, then the stored md5/sha256 mapping), keeps unmapped pings
    (their ``subscription`` empty), updates instances and the monthly table, and queues a score
    refresh for every company touched once the transaction commits (unless ``refresh`` is off,
    for bulk loads that recompute everything at the end). A concurrent writer storing
    the same ping makes the batch retry once, after which that ping is a duplicate.
    """
    if not inputs:
        return StoreSummary()
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                summary = _store(inputs, source)
                if refresh:
                    _queue_refresh(summary.company_ids)
                return summary
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("ping batch raced with another writer; retrying once")
    raise AssertionError("unreachable")


def _store(inputs: Sequence[PingInput], source: str) -> StoreSummary:
    now = timezone.now()
    instances = _instances_for(inputs, now)
    licenses = _licenses_for(inputs, now)
    subs_by_name = _subscriptions_by_name(
        {i.license_subscription_id for i in inputs if i.license_subscription_id}
    )

    existing = {
        (iid, recorded): (pid, sid)
        for iid, recorded, pid, sid in UsagePing.objects.filter(
            instance_id__in={inst.id for inst in instances.values()},
            recorded_at__in={i.recorded_at for i in inputs},
        ).values_list("instance_id", "recorded_at", "id", "subscription_id")
    }

    summary = StoreSummary()
    new_pings: list[UsagePing] = []
    slots: list[int] = []  # index into summary.outcomes for each new ping
    batch_keys: dict[tuple, int] = {}
    for item in inputs:
        instance = instances[item.identity]
        key = (instance.id, item.recorded_at)
        if key in existing:
            ping_id, sub_id = existing[key]
            summary.outcomes.append(StoreOutcome("duplicate", ping_id, sub_id is None, item.label))
            continue
        if key in batch_keys:
            summary.outcomes.append(StoreOutcome("duplicate", 0, False, item.label))
            continue
        license = licenses.get(_license_key(item))
        subscription = _subscription_for(item, license, subs_by_name, instance, now)
        ping = UsagePing(
            instance_id=instance.id,
            recorded_at=item.recorded_at,
            received_at=now,
            source=source,
            version=item.version,
            edition=item.edition,
            license=license,
            subscription=subscription,
            license_md5=item.license_md5,
            license_sha256=item.license_sha256,
            license_subscription_id=item.license_subscription_id,
            license_plan=item.license_plan,
            license_trial=item.license_trial,
            raw_payload=compress_raw(item.raw),
            **{name: _as_int(item.metrics.get(name)) for name in METRIC_NAMES},
        )
        batch_keys[key] = len(summary.outcomes)
        slots.append(len(summary.outcomes))
        summary.outcomes.append(StoreOutcome("accepted", 0, subscription is None, item.label))
        new_pings.append(ping)

    UsagePing.objects.bulk_create(new_pings, batch_size=500)
    for slot, ping in zip(slots, new_pings, strict=True):
        summary.outcomes[slot].ping_id = ping.id
    # Duplicates inside one batch point at the ping stored for their first occurrence.
    for item_index, item in enumerate(inputs):
        outcome = summary.outcomes[item_index]
        if outcome.status == "duplicate" and outcome.ping_id == 0:
            instance = instances[item.identity]
            first = summary.outcomes[batch_keys[(instance.id, item.recorded_at)]]
            outcome.ping_id, outcome.unmapped = first.ping_id, first.unmapped

    touched = _instances_touch(instances, new_pings)
    monthly_refresh(pings=new_pings, instances=instances)
    summary.company_ids = {inst.company_id for inst in touched if inst.company_id}
    return summary


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
        Instance.objects.bulk_create(
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
            ignore_conflicts=True,
        )
        found = _fetch_instances(wanted)
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


def _licenses_for(inputs: Sequence[PingInput], now: datetime) -> dict[tuple[str, str], License]:
    """The License row for each (md5, sha256) pair in the batch, created when first seen."""
    pairs: dict[tuple[str, str], PingInput] = {}
    for item in inputs:
        key = _license_key(item)
        if key:
            pairs.setdefault(key, item)
    if not pairs:
        return {}
    md5s = {md5 for md5, _ in pairs if md5}
    shas = {sha for _, sha in pairs if sha}
    by_md5, by_sha = _fetch_licenses(md5s, shas)

    result: dict[tuple[str, str], License] = {}
    to_create: dict[tuple[str, str], License] = {}
    to_update: list[License] = []
    for (md5, sha), item in pairs.items():
        lic = (md5 and by_md5.get(md5)) or (sha and by_sha.get(sha)) or None
        if lic is None:
            to_create[(md5, sha)] = License(
                md5=md5 or None,
                sha256=sha or None,
                subscription_name=item.license_subscription_id,
                plan=item.license_plan,
                first_seen_at=now,
                last_seen_at=now,
            )
            continue
        changed = False
        # One license appears with md5 only (before 15.2), both, then sha256 only (16.2+).
        if md5 and not lic.md5 and md5 not in by_md5:
            lic.md5, changed = md5, True
        if sha and not lic.sha256 and sha not in by_sha:
            lic.sha256, changed = sha, True
        if item.license_subscription_id and lic.subscription_name != item.license_subscription_id:
            lic.subscription_name, changed = item.license_subscription_id, True
        if lic.last_seen_at is None or lic.last_seen_at < now - timedelta(hours=1):
            lic.last_seen_at, changed = now, True
        if changed:
            to_update.append(lic)
        result[(md5, sha)] = lic
    if to_update:
        License.objects.bulk_update(
            to_update, ["md5", "sha256", "subscription_name", "last_seen_at"]
        )
    if to_create:
        License.objects.bulk_create(to_create.values(), ignore_conflicts=True)
        by_md5, by_sha = _fetch_licenses(
            {m for m, _ in to_create if m}, {s for _, s in to_create if s}
        )
        for md5, sha in to_create:
            result[(md5, sha)] = (md5 and by_md5.get(md5)) or by_sha[sha]
    return result


def _fetch_licenses(md5s: set[str], shas: set[str]):
    rows = License.objects.filter(Q(md5__in=md5s) | Q(sha256__in=shas)).select_related(
        "subscription"
    )
    by_md5, by_sha = {}, {}
    for lic in rows:
        if lic.md5:
            by_md5[lic.md5] = lic
        if lic.sha256:
            by_sha[lic.sha256] = lic
    return by_md5, by_sha


def _subscriptions_by_name(names: set[str]) -> dict[str, Subscription]:
    if not names:
        return {}
    return {s.name: s for s in Subscription.objects.filter(name__in=names)}


def _subscription_for(item, license, subs_by_name, instance, now) -> Subscription | None:
    """The ping's subscription id first, then the license mapping; SaaS rows name it directly."""
    sub = subs_by_name.get(item.license_subscription_id) if item.license_subscription_id else None
    if sub is not None:
        if license is not None and license.subscription_id is None:
            license.subscription, license.mapped_via, license.mapped_at = sub, "ping", now
            license.save(update_fields=["subscription", "mapped_via", "mapped_at"])
        return sub
    if license is not None and license.subscription_id:
        return license.subscription
    return None


def _instances_touch(
    instances: dict[tuple, Instance], new_pings: list[UsagePing]
) -> list[Instance]:
    """Move each instance's version, ping dates and mapping forward to its newest ping."""
    by_id = {inst.id: inst for inst in instances.values()}
    changed: dict[int, Instance] = {}
    for ping in new_pings:
        inst = by_id[ping.instance_id]
        if inst.first_ping_at is None or ping.recorded_at < inst.first_ping_at:
            inst.first_ping_at = ping.recorded_at
            changed[inst.id] = inst
        if inst.last_ping_at is None or ping.recorded_at >= inst.last_ping_at:
            inst.last_ping_at = ping.recorded_at
            inst.version = ping.version
            inst.version_sort = version_sort_key(_version_tuple(ping.version))
            inst.edition = ping.edition
            if ping.license_id:
                inst.license_id = ping.license_id
            if ping.subscription_id:
                inst.subscription_id = ping.subscription_id
                inst.company_id = ping.subscription.company_id
            changed[inst.id] = inst
    if changed:
        Instance.objects.bulk_update(
            changed.values(),
            [
                "first_ping_at",
                "last_ping_at",
                "version",
                "version_sort",
                "edition",
                "license",
                "subscription",
                "company",
            ],
            batch_size=500,
        )
    return list(by_id.values())


def _version_tuple(version: str):
    from .parsing import parse_version

    return parse_version(version)


def monthly_refresh(*, pings: Iterable[UsagePing], instances: dict | None = None) -> int:
    """Keep ``MonthlyUsage`` = the last ping of each calendar month, for the given new pings."""
    latest: dict[tuple[int, date], UsagePing] = {}
    for ping in pings:
        month = ping.recorded_at.date().replace(day=1)
        key = (ping.instance_id, month)
        if key not in latest or ping.recorded_at > latest[key].recorded_at:
            latest[key] = ping
    if not latest:
        return 0
    current = {
        (iid, month): rec
        for iid, month, rec in MonthlyUsage.objects.filter(
            instance_id__in={k[0] for k in latest}, month__in={k[1] for k in latest}
        ).values_list("instance_id", "month", "recorded_at")
    }
    companies = dict(
        Instance.objects.filter(id__in={k[0] for k in latest}).values_list("id", "company_id")
    )
    rows = [
        MonthlyUsage(
            instance_id=iid,
            company_id=companies.get(iid),
            month=month,
            ping_id=ping.id,
            recorded_at=ping.recorded_at,
            version=ping.version,
            **{name: getattr(ping, name) for name in METRIC_NAMES},
        )
        for (iid, month), ping in latest.items()
        if (iid, month) not in current or ping.recorded_at > current[(iid, month)]
    ]
    MonthlyUsage.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["instance", "month"],
        update_fields=["company", "ping", "recorded_at", "version", *METRIC_NAMES],
    )
    return len(rows)


def _queue_refresh(company_ids: set[int]) -> None:
    if not company_ids:
        return
    from scoring.tasks import refresh_companies

    ids = sorted(company_ids)
    transaction.on_commit(lambda: refresh_companies.delay(ids, "new ping"))


# --------------------------------------------------------------------------------------------------
# Mapping licenses and subscriptions


def license_map(*, license: License, subscription: Subscription, by=None, via: str) -> int:
    """Map a license to a subscription and attach every ping and instance that waited for it.

    Returns the number of pings attached. Recorded with who did it and how.
    """
    with transaction.atomic():
        license.subscription = subscription
        license.mapped_via = via
        license.mapped_by = by if by is not None and by.is_authenticated else None
        license.mapped_at = timezone.now()
        license.save(update_fields=["subscription", "mapped_via", "mapped_by", "mapped_at"])
        attached = UsagePing.objects.filter(license=license, subscription__isnull=True).update(
            subscription=subscription
        )
        company_ids = _attach_instances(Q(license=license), subscription)
        _queue_refresh(company_ids)
    return attached


def subscription_attach_waiting(*, subscription: Subscription) -> int:
    """Attach unmapped pings whose ``license_subscription_id`` names this (new) subscription."""
    with transaction.atomic():
        pings = UsagePing.objects.filter(
            subscription__isnull=True, license_subscription_id=subscription.name
        )
        license_ids = set(pings.exclude(license=None).values_list("license_id", flat=True))
        attached = pings.update(subscription=subscription)
        License.objects.filter(id__in=license_ids, subscription__isnull=True).update(
            subscription=subscription, mapped_via=MappingSource.PING, mapped_at=timezone.now()
        )
        company_ids = _attach_instances(
            Q(license_id__in=license_ids) | Q(pings__license_subscription_id=subscription.name),
            subscription,
        )
        _queue_refresh(company_ids)
    return attached


def _attach_instances(query: Q, subscription: Subscription) -> set[int]:
    ids = set(
        Instance.objects.filter(query, subscription__isnull=True).values_list("id", flat=True)
    )
    if not ids:
        return set()
    Instance.objects.filter(id__in=ids).update(
        subscription=subscription, company_id=subscription.company_id
    )
    MonthlyUsage.objects.filter(instance_id__in=ids).update(company_id=subscription.company_id)
    return {subscription.company_id}


# --------------------------------------------------------------------------------------------------
# Rejections, companion reports, tokens


def rejected_payload_keep(*, source: str, reason: str, raw: bytes | None, filename: str = ""):
    """Keep what could not be stored as a ping, so ops can see it and nothing vanishes."""
    blob = compress_raw(raw[:RAW_KEEP_LIMIT]) if raw else None
    return RejectedPayload.objects.create(
        source=source, filename=filename[:255], reason=reason, raw=blob
    )


def ping_report_store(*, kind: str, parsed, payload: dict) -> PingReport:
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
