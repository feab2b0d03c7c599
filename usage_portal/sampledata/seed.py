"""Store the demo book through the real CRM import, ping ingest and labeling paths.

``demo_book_seed`` is what ``manage.py seed_demo`` (and so ``make demo``) runs. Everything goes
through the services a real book goes through (``companies_import``, ``pings_store``,
``label_change_request``, ``companies_recompute_all``), so the demo exercises the product's own
code. Safe to re-run: imports update in place, pings already stored are duplicates, an instance
already labeled is never relabeled and a sentiment already set is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.importers import CompanyRow, LicenseMappingRow, SubscriptionRow
from accounts.models import Company
from accounts.services import companies_import, license_mappings_import, subscriptions_import
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance, InstanceKind, LabelChange, PingSource
from instances.parsing import parse_ping
from instances.saas import parse_saas_row
from instances.services.inputs import PingInput
from instances.services.store import pings_store
from scoring.services import companies_recompute_all, scheme_version_sync

from .demo import DEMO_PEOPLE, build_book, iter_ping_kwargs, iter_saas_rows
from .payloads import build_payload
from .shapes import Book, given_labels

#: Pings per ``pings_store`` call.
BATCH = 500


@dataclass(frozen=True)
class DemoSeedSummary:
    companies: int
    instances: int  # instances and namespaces
    stored: int  # new pings
    duplicates: int  # pings already present
    scored: int  # scorecards
    usernames: tuple[str, ...]


def demo_book_seed(*, companies: int, weeks: int, password: str) -> DemoSeedSummary:
    """Create (or bring up to date) the demo book, its logins (all with ``password``) and scores."""
    users = _users(password)
    book = build_book(companies=companies, weeks=weeks)
    _crm_import(book)
    stored, duplicates = _pings(book)
    _labels(book, users)
    _sentiment(book, users)
    # A book seeded by an older release: its scores were computed under older rules.
    scheme_version_sync()
    scored = companies_recompute_all(reason="seed_demo")
    return DemoSeedSummary(
        companies=len(book.companies),
        instances=len(book.instances),
        stored=stored,
        duplicates=duplicates,
        scored=scored,
        usernames=tuple(p.username for p in DEMO_PEOPLE),
    )


def _users(password: str) -> dict:
    User = get_user_model()
    users = {}
    for person in DEMO_PEOPLE:
        user, _ = User.objects.update_or_create(
            username=person.username, defaults=person.user_fields()
        )
        user.set_password(password)
        user.save()
        user.groups.set([Group.objects.get(name=person.role)])
        users[person.username] = user
    return users


def _crm_import(book: Book) -> None:
    """Companies, subscriptions and the md5 mapping file, as the CRM exports would carry them."""
    today = timezone.now().date()
    companies_import(
        rows=[
            CompanyRow(n, c.crm_account_id, c.name, c.segment, c.csm, c.customer_since)
            for n, c in enumerate(book.companies, start=2)
        ]
    )
    subscriptions_import(
        rows=[
            SubscriptionRow(
                n,
                s.name,
                s.crm_account_id,
                s.plan,
                s.licensed_seats,
                s.start_date,
                s.end_date,
                "active" if s.end_date >= today else "expired",
                s.deployment,
                s.arr,
            )
            for n, s in enumerate(book.subscriptions, start=2)
        ]
    )
    # Instances that send no subscription id are mapped the way GitLab does it: md5 → sub.
    license_mappings_import(
        rows=[
            LicenseMappingRow(n, spec.license_md5, spec.subscription.name)
            for n, spec in enumerate(book.instances, start=2)
            if spec.kind == "self-managed"
            and not spec.sends_subscription_id
            and not spec.unmapped
            and spec.license_md5
        ]
    )


def _pings(book: Book) -> tuple[int, int]:
    """Every self-managed ping as a real payload, then the SaaS export; (stored, duplicates)."""
    stored = duplicates = 0
    batch: list[PingInput] = []

    def flush(source: str) -> None:
        nonlocal stored, duplicates, batch
        if batch:
            summary = pings_store(inputs=batch, source=source, refresh=False)
            stored += summary.accepted
            duplicates += summary.duplicates
            batch = []

    for spec in book.instances:
        if spec.kind != "self-managed":
            continue
        for kwargs in iter_ping_kwargs(book, spec):
            raw = orjson.dumps(build_payload(**kwargs))
            batch.append(PingInput.from_parsed(parse_ping(orjson.loads(raw)), raw=raw))
            if len(batch) >= BATCH:
                flush(PingSource.BULK)
    flush(PingSource.BULK)
    for spec in book.instances:
        if spec.kind == "saas":
            for line, row in enumerate(iter_saas_rows(book, spec), start=2):
                batch.append(PingInput.from_saas(parse_saas_row(row, line=line)))
    flush(PingSource.SAAS)
    return stored, duplicates


@transaction.atomic
def _labels(book: Book, users: dict) -> None:
    """Labels people gave before today, applied; plus one edit still pending."""
    instances = {
        (i.uuid, i.hostname) if i.kind == InstanceKind.SELF_MANAGED else i.namespace_id: i
        for i in Instance.objects.all()
    }
    labeled = set(LabelChange.objects.values_list("instance_id", "field"))
    for spec in book.instances:
        key = (spec.uuid, spec.hostname) if spec.kind == "self-managed" else spec.namespace_id
        inst = instances.get(key)
        if inst is None:
            continue
        by = users.get(spec.company.csm) or users["ops"]
        for field, value in given_labels(spec):
            if (inst.id, field) in labeled:
                continue  # re-running never relabels what is already labeled
            change = label_change_request(
                instance=inst, field=field, value=value, by=by, schedule=False
            )
            if change is not None and change.is_pending:
                label_change_apply(change_id=change.id, via="seed", force=True, refresh=False)
    # One Unknown instance with an edit waiting for the refresh delay: always the first one the
    # book leaves Unknown on csm1's accounts, and only while it has no edit (so re-runs add none).
    unknown = next(
        (
            inst
            for spec in book.instances
            if spec.kind == "self-managed"
            and not spec.label
            and not spec.unmapped
            and spec.company.csm == "csm1"
            and (inst := instances.get((spec.uuid, spec.hostname))) is not None
        ),
        None,
    )
    if unknown is not None and not unknown.label_changes.exists():
        label_change_request(
            instance=unknown,
            field="instance_type",
            value="non_production",
            by=users["csm1"],
        )


def _sentiment(book: Book, users: dict) -> None:
    """The sentiment CSMs (or, on an account no CSM owns, Ops) recorded, where none is set yet."""
    for spec in book.companies:
        if not spec.sentiment:
            continue
        Company.objects.filter(crm_account_id=spec.crm_account_id, sentiment="").update(
            sentiment=spec.sentiment,
            sentiment_note=spec.sentiment_note,
            sentiment_by=users.get(spec.csm) or users["ops"],
            sentiment_at=timezone.now(),
        )
