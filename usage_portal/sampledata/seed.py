"""Store the demo book through the real CRM import, ping ingest and labeling paths.

``demo_book_seed`` is what ``manage.py seed_demo`` (and so ``make demo``) runs. Everything goes
through the services a real book goes through (``companies_import``, ``pings_store``,
``label_change_request``, ``labeling_rules_run``, ``companies_recompute_all``), so the demo
exercises the product's own code. The label history is authored by ``SEED_AUTHOR`` (or by the
labeling rules), never by a login: no person made those edits.

Safe to re-run, on any later day too: the book keeps the day it first ended on, imports update in
place, pings already stored are duplicates, an instance already labeled is never relabeled, a
sentiment already set is kept and score history is only written for accounts that have no score.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.importers import (
    CompanyRow,
    LicenseMappingRow,
    MeetingRow,
    SubscriptionRow,
    SuccessPlanRow,
    TicketRow,
)
from accounts.models import Company
from accounts.services import (
    companies_import,
    license_mappings_import,
    meetings_import,
    subscriptions_import,
    success_plans_import,
    support_tickets_import,
)
from instances.labels import label_change_apply, label_change_request, refresh_delay
from instances.models import Instance, InstanceKind, LabelChange, PingSource, UsagePing
from instances.parsing import parse_ping
from instances.rules import labeling_rules_run
from instances.saas import parse_saas_row
from instances.services.inputs import PingInput
from instances.services.store import pings_store
from scoring.methodology import score_company
from scoring.models import ScoreSnapshot
from scoring.scorecard import CompanyInputs
from scoring.services import (
    active_scheme,
    companies_recompute_all,
    inputs_hash,
    load_inputs,
    monthly_inputs,
    scheme_version_sync,
    snapshot_columns,
)

from . import demo
from .demo import DEMO_PEOPLE, build_book, crm_account_id, iter_ping_kwargs, iter_saas_rows
from .payloads import build_payload
from .shapes import Book, InstanceSpec, given_labels

#: Pings per ``pings_store`` call.
BATCH = 500
#: The author of the demo's label history: demo data, not any login (LabelChange.author).
SEED_AUTHOR = "seed: demo data"
#: Closed months before this one that a new book gets a score for, as a worker would have
#: stored them, so that the Summary's trends have an earlier score to compare with.
HISTORY_MONTHS = 6
#: When, after a month's end, its history score counts as computed.
HISTORY_COMPUTED_AT = time(2, 0)


@dataclass(frozen=True)
class DemoSeedSummary:
    companies: int
    instances: int  # instances and namespaces
    stored: int  # new pings
    duplicates: int  # pings already present
    scored: int  # scorecards
    usernames: tuple[str, ...]
    end: date  # the date of the newest pings


def demo_book_seed(*, companies: int, weeks: int, password: str) -> DemoSeedSummary:
    """Create (or bring up to date) the demo book, its logins (all with ``password``) and scores."""
    users = _users(password)
    book = build_book(companies=companies, weeks=weeks, end=_book_end(companies))
    _crm_import(book)
    stored, duplicates = _pings(book)
    _labels(book)
    _rules()
    _sentiment(book, users)
    _scorecard_imports(book)
    # A book seeded by an older release: its scores were computed under older rules.
    scheme_version_sync()
    _score_history(book)
    scored = companies_recompute_all(reason="seed_demo")
    return DemoSeedSummary(
        companies=len(book.companies),
        instances=len(book.instances),
        stored=stored,
        duplicates=duplicates,
        scored=scored,
        usernames=tuple(p.username for p in DEMO_PEOPLE),
        end=book.end,
    )


def _book_end(companies: int) -> date:
    """The date of the book's newest pings: yesterday for a new book, whatever the hour of its
    pings (so none is later than now); for a book seeded before, the day it ended then, so that
    seeding again on a later day stores no second set of pings a few days apart from the first.
    """
    newest = UsagePing.objects.filter(
        instance__company__crm_account_id__in=[crm_account_id(i) for i in range(companies)]
    ).aggregate(at=Max("recorded_at"))["at"]
    return newest.date() if newest else timezone.now().date() - timedelta(days=1)


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
            CompanyRow(
                n,
                c.crm_account_id,
                c.name,
                c.segment,
                c.csm,
                c.customer_since,
                demo.prioritization(c),
            )
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
def _labels(book: Book) -> None:
    """The labels given before today, applied when they were; plus one edit still pending."""
    instances = {
        (i.uuid, i.hostname) if i.kind == InstanceKind.SELF_MANAGED else i.namespace_id: i
        for i in Instance.objects.all()
    }
    labeled = set(LabelChange.objects.values_list("instance_id", "field"))
    now = timezone.now()
    for spec in book.instances:
        key = (spec.uuid, spec.hostname) if spec.kind == "self-managed" else spec.namespace_id
        inst = instances.get(key)
        if inst is None:
            continue
        for field, value in _seeded_labels(spec):
            if (inst.id, field) in labeled:
                continue  # re-running never relabels what is already labeled
            change = label_change_request(
                instance=inst,
                field=field,
                value=value,
                author=SEED_AUTHOR,
                now=_labeled_at(inst, now),
                schedule=False,
            )
            if change is not None and change.is_pending:
                label_change_apply(
                    change_id=change.id,
                    via="seed",
                    now=min(change.effective_at, now),
                    force=True,
                    refresh=False,
                )
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
            instance=unknown, field="instance_type", value="non_production", author=SEED_AUTHOR
        )


def _seeded_labels(spec: InstanceSpec) -> list[tuple[str, str]]:
    """(field, value) of the labels ``spec`` was given before today."""
    if getattr(spec, "arrived_unknown", False):
        return [("instance_type", "unknown")]
    return given_labels(spec)


def _labeled_at(instance: Instance, now: datetime) -> datetime:
    """When an instance was labeled: some hours to three weeks after its first ping (the same
    for every run), and in time for the label to have been applied by ``now``."""
    after = timedelta(hours=2 + zlib.crc32(str(instance).encode()) % (24 * 21))
    latest = now - refresh_delay()
    return max(min(instance.first_ping_at + after, latest), instance.first_ping_at)


def _rules() -> None:
    """The daily labeling rules, as the worker runs them; their edits applied at once, as a day
    later they would have been, so that the book shows what each rule labeled."""
    requested = [instance_id for instance_id, _ in labeling_rules_run()]
    changes = LabelChange.objects.pending().filter(
        instance_id__in=requested, author__startswith="rule: "
    )
    for change_id in changes.values_list("id", flat=True):
        label_change_apply(change_id=change_id, via="seed", force=True, refresh=False)


def _sentiment(book: Book, users: dict) -> None:
    """The sentiment CSMs (or, on an account no CSM owns, Ops) recorded, where none is set yet.

    Recorded five to eleven weeks before the book's end (the same day on every run): fresh enough
    to count, and known to the history scores of the last month or two.
    """
    for n, spec in enumerate(book.companies):
        if not spec.sentiment:
            continue
        day = book.end - timedelta(days=35 + n * 17 % 45)
        Company.objects.filter(crm_account_id=spec.crm_account_id, sentiment="").update(
            sentiment=spec.sentiment,
            sentiment_note=spec.sentiment_note,
            sentiment_by=users.get(spec.csm) or users["ops"],
            sentiment_at=datetime.combine(day, time(15, 0), tzinfo=UTC),
        )


def _scorecard_imports(book: Book) -> None:
    """The rest of the health scorecard, as the CRM exports it: support tickets, meetings and,
    where the account has none yet (a CSM may have set it since), the success plan's ROI."""
    unset = set(Company.objects.filter(roi="").values_list("crm_account_id", flat=True))
    success_plans_import(
        rows=[
            SuccessPlanRow(n, crm, roi, note)
            for n, (crm, roi, note) in enumerate(demo.success_plans(book), start=2)
            if crm in unset
        ]
    )
    support_tickets_import(
        rows=[
            TicketRow(n, crm, month, tickets)
            for n, (crm, month, tickets) in enumerate(demo.support_tickets(book), start=2)
        ]
    )
    meetings_import(
        rows=[
            MeetingRow(n, crm, day, ", ".join(personas))
            for n, (crm, day, personas) in enumerate(demo.meetings(book), start=2)
        ]
    )


def _score_history(book: Book) -> int:
    """The scores a worker would have stored at the end of each of the last months, for the
    accounts that have no score yet; returns how many.

    Each is computed by the scoring engine from what the account's data said at that month's end:
    the month's last pings (the monthly history's inputs), and the sentiment, tickets and
    meetings known by then. Stored as past, not current, scores: today's is computed after.
    """
    fresh = list(Company.objects.filter(score_snapshots__isnull=True).values_list("id", flat=True))
    if not fresh:
        return 0
    scheme = active_scheme()
    now = timezone.now()
    this_month = (book.end + timedelta(days=1)).replace(day=1)
    first = _months_before(this_month, HISTORY_MONTHS)
    usage = monthly_inputs(fresh, since=first)
    snapshots = []
    for month in sorted({m for months in usage.values() for m in months if m < this_month}):
        last_day = _months_before(month, -1) - timedelta(days=1)
        day_after = last_day + timedelta(days=1)
        computed_at = min(datetime.combine(day_after, HISTORY_COMPUTED_AT, tzinfo=UTC), now)
        known = load_inputs([cid for cid in fresh if month in usage.get(cid, {})], as_of=last_day)
        for cid, company in known.items():
            inputs = _as_it_stood(company, usage[cid][month], last_day)
            snapshots.append(
                ScoreSnapshot(
                    company_id=cid,
                    computed_at=computed_at,
                    inputs_hash=inputs_hash(inputs, scheme),
                    is_current=False,
                    reason="seed_demo: history",
                    **snapshot_columns(score_company(inputs, scheme)),
                )
            )
    ScoreSnapshot.objects.bulk_create(snapshots, batch_size=500)
    return len(snapshots)


def _as_it_stood(company: CompanyInputs, month: CompanyInputs, last_day: date) -> CompanyInputs:
    """The account's inputs on ``last_day``: that month's pings, and the sentiment known then."""
    sentiment_known = company.sentiment_date is not None and company.sentiment_date <= last_day
    return dataclasses.replace(
        company,
        candidates=month.candidates,
        sentiment=company.sentiment if sentiment_known else None,
        sentiment_date=company.sentiment_date if sentiment_known else None,
    )


def _months_before(month: date, months: int) -> date:
    """The first day of the month ``months`` before ``month``'s (after it, when negative)."""
    n = month.year * 12 + month.month - 1 - months
    return date(n // 12, n % 12 + 1, 1)
