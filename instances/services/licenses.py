"""Licenses and their mapping to subscriptions, and the pings and instances that waited for one.

``LicenseBook`` keeps one ``License`` row per license key for the ping store, merging rows that
turn out to be the same key. ``license_map``/``licenses_map`` (a person, an import) and
``subscription(s)_attach_waiting`` (a new subscription a ping already named) map licenses and
attach the unmapped pings and instances concerned; each announces the companies it changed
through ``accounts.changes.companies_changed``. Every change of a mapping, whichever of these
makes it, is written to the audit (``LicenseMappingChange``) by ``mapping_changes_record``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts.audit import audit_records
from accounts.changes import companies_changed
from accounts.models import AuditAction, Subscription
from instances.models import (
    Instance,
    License,
    LicenseMappingChange,
    MappingSource,
    MonthlyUsage,
    UsagePing,
)
from instances.services.bulk_sql import models_select, rows_update
from instances.services.inputs import PingInput

logger = logging.getLogger(__name__)


#: (license, its subscription before, its subscription after) — one change of a mapping.
MappingStep = tuple[License, Subscription | None, Subscription]

#: Who changed a mapping when no person did, in the audit trail.
MAPPED_BY = {MappingSource.PING: "ingest", MappingSource.IMPORT: "import_crm"}


def mapping_changes_record(
    *, steps: Sequence[MappingStep], via: str, by=None, at: datetime
) -> list[LicenseMappingChange]:
    """Write the audit row of each mapping change; a step that keeps its subscription is none.

    The one writer of ``LicenseMappingChange``: every path that sets ``License.subscription``
    calls it in the same transaction (licenses must be saved). Each change is also an event
    of the audit trail (``AuditEvent``). Two queries.
    """
    user = by if by is not None and by.is_authenticated else None
    rows = [
        LicenseMappingChange(
            license=lic,
            from_subscription=old,
            to_subscription=new,
            from_name=old.name if old is not None else "",
            to_name=new.name,
            via=via,
            changed_by=user,
            changed_at=at,
        )
        for lic, old, new in steps
        if old is None or old.pk != new.pk
    ]
    if not rows:
        return []
    audit_records(
        actor=user,
        actor_label=MAPPED_BY.get(via, "system"),
        action=AuditAction.LICENSE_MAPPED,
        items=[
            (row.license, {"from": row.from_name or None, "to": row.to_name, "via": via})
            for row in rows
        ],
    )
    return LicenseMappingChange.objects.bulk_create(rows)


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


class LicenseBook:
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
        self.mapped: list[MappingStep] = []  # mappings made from pings, for the audit

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
        if connection.vendor == "postgresql":
            rows = models_select(
                License,
                "t.md5 = ANY(%s) OR t.sha256 = ANY(%s)",
                [sorted(md5s), sorted(shas)],
                related="subscription",
            )
        else:
            rows = License.objects.filter(Q(md5__in=md5s) | Q(sha256__in=shas)).select_related(
                "subscription"
            )
        for lic in rows:
            self._register(lic)
        for key, item in pairs.items():
            self.by_pair[key] = self._resolve(key, item)

    def get(self, item: PingInput) -> License | None:
        key = _license_key(item)
        if key is None:
            return None
        return self._survivor(self.by_pair[key])

    def map(self, lic: License, subscription: Subscription, *, via: str) -> None:
        self.mapped.append((lic, lic.subscription if lic.subscription_id else None, subscription))
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
            # The merged row's history is the survivor's: it outlives the absorbed row.
            LicenseMappingChange.objects.filter(license=absorbed).update(license=survivor)
            # Delete first: the survivor is about to take over the absorbed row's hash.
            absorbed.delete()
        if self.dirty:
            rows_update(License, list(self.dirty.values()), _LICENSE_FIELDS)
        if self.new:
            License.objects.bulk_create(self.new)
        # A license mapped and then merged away in this batch is audited on its survivor.
        steps = [(self._survivor(lic), old, new) for lic, old, new in self.mapped]
        mapping_changes_record(steps=steps, via=MappingSource.PING, at=self.now)

    def attach_waiting(self) -> set[int]:
        """Attach earlier unmapped pings and instances of licenses mapped in this batch."""
        ids = {lic.pk for lic in self.newly_mapped if lic.subscription_id is not None}
        return _attach_by_license(ids)[1] if ids else set()

    def _survivor(self, lic: License) -> License:
        while id(lic) in self.forward:
            lic = self.forward[id(lic)]
        return lic

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
        corrections, steps = [], []
        for lic, sub in pairs:
            before = lic.subscription if lic.subscription_id is not None else None
            steps.append((lic, before, sub))
            if before is not None and before.pk != sub.pk:
                corrections.append((lic, before, sub))
            lic.subscription, lic.mapped_via, lic.mapped_by, lic.mapped_at = sub, via, user, now
        rows_update(
            License,
            [lic for lic, _ in pairs],
            ["subscription", "mapped_via", "mapped_by", "mapped_at"],
        )
        mapping_changes_record(steps=steps, via=via, by=user, at=now)
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
        rows_update(License, newly, ["subscription", "mapped_via", "mapped_at"])
        mapping_changes_record(
            steps=[(lic, None, lic.subscription) for lic in newly],
            via=MappingSource.PING,
            at=now,
        )
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
