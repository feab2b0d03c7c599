"""Write a large load book (``loadgen``) into an empty database at COPY speed.

``load_book_generate`` is what ``manage.py generate_load_data`` (and so ``make bench``, through
``bench/dataset.py``) runs. Small tables go in with ``bulk_create``; pings and monthly usage with
PostgreSQL ``COPY`` in one transaction, their secondary indexes and foreign keys dropped for the
load and rebuilt (and so re-checked) at the end. On SQLite (tests) everything goes through
``bulk_create``. Then the scores, through the scoring services like any other book.

Generated history carries no raw payload (``raw_payload`` is NULL): it never came over the wire.
Unlike the demo seeder this bypasses the ingest path on purpose, so it must write what ingest
would have written: each instance's first and last ping, version and license, and the label
audit trail.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.color import no_style
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Company, Subscription
from instances.models import (
    Instance,
    LabelChange,
    LabelChangeStatus,
    License,
    MonthlyUsage,
    UsagePing,
)
from instances.rules import UTILIZATION_RULE
from scoring.services import (
    CHUNK,
    companies_recompute_all,
    monthly_scores_rebuild,
    recompute_chunk,
)

from .loadgen import (
    MONTHLY_COLUMNS,
    PING_COLUMNS,
    BookEndRefused,
    BookIds,
    LoadBook,
    PingRows,
    build_load_book,
    edition_of,
    ping_parts,
    version_facts,
)
from .shapes import given_labels

#: The apps whose tables a load replaces (with the users).
APPS = ("accounts", "instances", "scoring")
SQLITE_BATCH = 2000
#: The value a label field has before anyone sets it.
_UNLABELED = {"instance_type": "unknown", "health_inclusion": ""}


class LoadRefused(Exception):
    """The database is not ready for a load: it holds a book already, or lacks the role groups."""


class Phases:
    """Named, timed steps, reported as they start and end, and notes in between.

    ``report`` receives one line at a time. ``bench/dataset.py`` reads the phase timings back from
    the "<name>: <seconds>s" lines.
    """

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.report(f"{name} …")
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        self.report(f"{name}: {self.timings[name]:.1f}s")


@dataclass
class LoadSummary:
    book: LoadBook
    timings: dict[str, float] = field(default_factory=dict)  # seconds by phase, in order


def load_book_generate(
    *,
    layout: Mapping[str, Any],
    password: str,
    reset: bool = False,
    scores: bool = True,
    history: bool = False,
    report: Callable[[str], None],
) -> LoadSummary:
    """Lay out a load book (``build_load_book(**layout)``) and store it, with its logins (all
    with ``password``) and scores.

    Raises ``LoadRefused`` when the database already holds companies and ``reset`` is False (with
    ``reset`` everything of the portal's apps, and every user, is replaced), when the role groups
    are missing (``migrate`` has not run), or when the book would end later than yesterday.
    """
    if Company.objects.exists() and not reset:
        raise LoadRefused(
            "the database already holds companies; pass --reset to replace everything in it"
        )
    phase = Phases(report)
    with phase("layout"):
        try:
            book = build_load_book(**layout)
        except BookEndRefused as refused:
            raise LoadRefused(str(refused)) from refused
    report(
        f"{len(book.companies):,} companies, {len(book.subscriptions):,} subscriptions, "
        f"{sum(s.kind == 'self-managed' for s in book.instances):,} self-managed instances, "
        f"{sum(s.kind == 'saas' for s in book.instances):,} SaaS namespaces, "
        f"{book.ping_count:,} pings over {book.weeks} weeks to {book.end}"
    )
    postgres = connection.vendor == "postgresql"
    # Inside a caller's transaction (a test) FREEZE and VACUUM are not possible.
    standalone = not connection.in_atomic_block
    with transaction.atomic():
        with phase("reset"):
            _flush()
        with phase("reference rows"):
            users = _users(book, password)
            ids = _reference(book, users)
            changes = _label_changes(book, ids, users)
        with phase("pings + monthly usage"):
            if postgres:
                pings, months = _copy_pings(book, ids, freeze=standalone, report=report)
            else:
                pings, months = _bulk_pings(book, ids)
            _reset_sequences()
    if postgres:
        with phase("vacuum analyze"), connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)" if standalone else "ANALYZE")
    rate = pings / max(phase.timings["pings + monthly usage"], 1e-9)
    report(
        f"stored {pings:,} pings ({rate:,.0f}/s), {months:,} monthly usage rows, "
        f"{changes:,} label changes; raw_payload is left NULL for generated history"
    )
    if scores:
        with phase("score recompute"):
            if postgres and standalone:
                scored = _scores_in_processes(_generator_processes())
            else:
                scored = companies_recompute_all(reason="generate_load_data", history=False)
        rate = scored / max(phase.timings["score recompute"], 1e-9)
        report(f"scored {scored:,} companies ({rate:,.0f} companies/s)")
    if history:
        with phase("monthly score history"):
            company_ids = list(Company.objects.order_by("id").values_list("id", flat=True))
            for start in range(0, len(company_ids), CHUNK):
                monthly_scores_rebuild(company_ids=company_ids[start : start + CHUNK])
    return LoadSummary(book=book, timings=phase.timings)


def _scores_in_processes(processes: int) -> int:
    """Every company scored by ``processes`` forked processes, each over its share of the
    chunks with its own database connection (the load is committed by then); what
    ``recompute_scores --all --fan-out`` does with workers, without needing any."""
    if processes <= 1:
        return companies_recompute_all(reason="generate_load_data", history=False)
    ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    chunks = [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]
    # The parent's connection must not be shared with the children: each opens its own.
    connection.close()
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_score_chunks, args=(chunks[n::processes],), daemon=True)
        for n in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    failed = [child.exitcode for child in children if child.exitcode != 0]
    if failed:
        raise RuntimeError(f"a scoring process exited with code {failed[0]}")
    return len(ids)


def _score_chunks(chunks: list[list[int]]) -> None:
    # The parent closed its connection before forking: this process opens its own.
    as_of = timezone.now().date()
    for chunk in chunks:
        recompute_chunk(chunk, reason="generate_load_data", history=False, as_of=as_of)
    connection.close()


# --------------------------------------------------------------------------------------------------
# Reference rows


def _app_models() -> list:
    return [m for m in apps.get_models() if m._meta.app_label in APPS]


def _flush() -> None:
    tables = [m._meta.db_table for m in _app_models()] + [get_user_model()._meta.db_table]
    statements = connection.ops.sql_flush(
        no_style(), tables, reset_sequences=True, allow_cascade=True
    )
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _reset_sequences() -> None:
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), _app_models()):
            cursor.execute(sql)


def _users(book: LoadBook, password: str) -> dict:
    """ops, csm1..csmN and viewer, all with ``password`` (hashed once: hashing is slow)."""
    User = get_user_model()
    hashed = make_password(password)
    people = book.people()
    created = User.objects.bulk_create(
        [User(username=p.username, password=hashed, **p.user_fields()) for p in people]
    )
    groups = {g.name: g for g in Group.objects.filter(name__in={"Ops", "CSM", "Viewer"})}
    if len(groups) < 3:
        raise LoadRefused("role groups are missing: run migrate first")
    User.groups.through.objects.bulk_create(
        [
            User.groups.through(user_id=user.pk, group_id=groups[p.role].pk)
            for user, p in zip(created, people, strict=True)
        ]
    )
    return {u.username: u for u in created}


def _sentiment_time(book: LoadBook) -> datetime:
    return datetime.combine(book.end, datetime.min.time(), tzinfo=UTC) - timedelta(days=9)


def _reference(book: LoadBook, users: dict) -> BookIds:
    now = datetime.now(UTC)
    sentiment_at = _sentiment_time(book)
    companies = Company.objects.bulk_create(
        [
            Company(
                name=c.name,
                crm_account_id=c.crm_account_id,
                csm=users.get(c.csm) if c.csm else None,
                segment=c.segment,
                customer_since=c.customer_since,
                sentiment=c.sentiment,
                sentiment_note=c.sentiment_note,
                sentiment_by=users.get(c.csm) if c.sentiment else None,
                sentiment_at=sentiment_at if c.sentiment else None,
            )
            for c in book.companies
        ],
        batch_size=1000,
    )
    company_ids = {c.crm_account_id: c.pk for c in companies}
    subscriptions = Subscription.objects.bulk_create(
        [
            Subscription(
                name=s.name,
                company_id=company_ids[s.crm_account_id],
                plan=s.plan,
                licensed_seats=s.licensed_seats,
                start_date=s.start_date,
                end_date=s.end_date,
                status="active",
                deployment=s.deployment,
                arr=s.arr,
            )
            for s in book.subscriptions
        ],
        batch_size=1000,
    )
    sub_ids = {s.name: s.pk for s in subscriptions}

    seen: dict[str, list[datetime]] = {}
    for spec in book.instances:
        span = book.first_and_last(spec)
        if spec.license_key and span:
            seen.setdefault(spec.license_key, []).extend(span)
    licenses = License.objects.bulk_create(
        [
            License(
                md5=lic.md5,
                sha256=lic.sha256,
                subscription_name=(
                    lic.subscription.name if lic.subscription and lic.mapped_via == "ping" else ""
                ),
                plan=lic.plan,
                subscription_id=sub_ids[lic.subscription.name] if lic.subscription else None,
                mapped_via=lic.mapped_via,
                mapped_by=users["ops"] if lic.mapped_via == "import" else None,
                mapped_at=min(seen[key]) if lic.subscription and key in seen else None,
                first_seen_at=min(seen[key]) if key in seen else None,
                last_seen_at=max(seen[key]) if key in seen else None,
            )
            for key, lic in book.licenses.items()
        ],
        batch_size=1000,
    )
    license_ids = {key: lic.pk for key, lic in zip(book.licenses, licenses, strict=True)}

    rows = []
    for spec in book.instances:
        span = book.first_and_last(spec)
        first, last = span if span else (None, None)
        version = book.last_version(spec)
        mapped = not spec.unmapped
        instance_type = "production" if spec.kind == "saas" else spec.label or "unknown"
        rows.append(
            Instance(
                kind=spec.kind,
                uuid=spec.uuid or None,
                hostname=spec.hostname,
                namespace_id=spec.namespace_id or None,
                namespace_path=spec.namespace_path,
                company_id=company_ids[spec.company.crm_account_id] if mapped else None,
                subscription_id=sub_ids[spec.subscription.name] if mapped else None,
                license_id=license_ids.get(spec.license_key),
                version=version,
                version_sort=version_facts(version).sort_key,
                edition=edition_of(spec),
                first_ping_at=first,
                last_ping_at=last,
                instance_type=instance_type,
                health_inclusion="opt_out" if spec.opt_out else "",
                labeled_by_person=bool(
                    spec.kind == "self-managed" and spec.label and not spec.rule_labeled
                ),
                created_at=first or now,
            )
        )
    instances = Instance.objects.bulk_create(rows, batch_size=1000)
    return BookIds(
        instance=[i.pk for i in instances],
        subscription=sub_ids,
        license=license_ids,
        company=company_ids,
    )


def _label_changes(book: LoadBook, ids: BookIds, users: dict) -> int:
    """Applied edits for every labeled instance (the audit trail), a few superseded ones, and
    the pending edits still waiting for the refresh delay."""
    rng = random.Random(f"labels|{book.end}")
    now = datetime.now(UTC)
    applied: list[LabelChange] = []
    earlier: list[tuple[int, LabelChange]] = []  # (index in applied, superseded change)
    pending: list[LabelChange] = []
    for spec in book.instances:
        instance_id = ids.instance[spec.index]
        span = book.first_and_last(spec)
        person = users.get(spec.company.csm) or users["ops"]
        for field_name, new in given_labels(spec):
            old = _UNLABELED[field_name]
            start = span[0] if span else now - timedelta(days=30)
            requested = min(start + timedelta(hours=rng.randint(2, 24 * 20)), now)
            by_rule = field_name == "instance_type" and spec.rule_labeled
            change = LabelChange(
                instance_id=instance_id,
                field=field_name,
                old_value=old,
                new_value=new,
                requested_by=None if by_rule else person,
                author=f"rule: {UTILIZATION_RULE}" if by_rule else person.username,
                requested_at=requested,
                effective_at=requested + timedelta(hours=24),
                status=LabelChangeStatus.APPLIED,
                applied_at=requested + timedelta(hours=24, seconds=rng.randint(1, 90)),
                applied_via="schedule" if rng.random() < 0.9 else "sweep",
            )
            applied.append(change)
            if field_name == "instance_type" and not by_rule and rng.random() < 0.05:
                first_try = requested - timedelta(hours=rng.randint(1, 20))
                earlier.append(
                    (
                        len(applied) - 1,
                        LabelChange(
                            instance_id=instance_id,
                            field=field_name,
                            old_value=old,
                            new_value="non_production" if new != "non_production" else "obsolete",
                            requested_by=person,
                            author=person.username,
                            requested_at=first_try,
                            effective_at=first_try + timedelta(hours=24),
                            status=LabelChangeStatus.SUPERSEDED,
                            closed_at=requested,
                        ),
                    )
                )
        if spec.pending:
            requested = now - timedelta(hours=rng.randint(1, 20))
            pending.append(
                LabelChange(
                    instance_id=instance_id,
                    field="instance_type",
                    old_value=_UNLABELED["instance_type"],
                    new_value=spec.pending,
                    requested_by=person,
                    author=person.username,
                    requested_at=requested,
                    effective_at=requested + timedelta(hours=24),
                    status=LabelChangeStatus.PENDING,
                )
            )
    LabelChange.objects.bulk_create(applied, batch_size=1000)
    for index, change in earlier:
        change.superseded_by_id = applied[index].pk
    LabelChange.objects.bulk_create([c for _, c in earlier] + pending, batch_size=1000)
    return len(applied) + len(earlier) + len(pending)


# --------------------------------------------------------------------------------------------------
# Pings and monthly usage


def _copy_pings(
    book: LoadBook, ids: BookIds, *, freeze: bool, report: Callable[[str], None]
) -> tuple[int, int]:
    ping_table = UsagePing._meta.db_table
    monthly_table = MonthlyUsage._meta.db_table
    pings = months = 0
    report_every = max(book.ping_count // 10, 1)
    # FREEZE: rows are written visible to all, so no later pass rewrites every page.
    with_freeze = " WITH (FREEZE)" if freeze else ""
    parts = ping_parts(book, _generator_processes())
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Check the reference rows now: a table with deferred checks pending cannot be altered.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with (
        tempfile.TemporaryFile(mode="w+b") as spool,
        connection.cursor() as cursor,
        _without_secondary_indexes(cursor, [monthly_table, ping_table]),
    ):
        t0 = time.perf_counter()
        next_report = report_every
        with cursor.copy(
            f"COPY {ping_table} ({', '.join(PING_COLUMNS)}) FROM STDIN{with_freeze}"
        ) as copy:
            for kind, chunk in _generated_rows(book, ids, parts):
                if kind == "monthly":
                    spool.write(chunk)
                    months += chunk.count(b"\n")
                    continue
                copy.write(chunk)
                pings += chunk.count(b"\n")
                if pings >= next_report:
                    next_report += report_every
                    elapsed = time.perf_counter() - t0
                    report(f"    {pings:,}/{book.ping_count:,} pings ({pings / elapsed:,.0f}/s)")
        spool.seek(0)
        with cursor.copy(
            f"COPY {monthly_table} ({', '.join(MONTHLY_COLUMNS)}) FROM STDIN{with_freeze}"
        ) as copy:
            while chunk := spool.read(1 << 20):
                copy.write(chunk)
        report(f"    copied in {time.perf_counter() - t0:.1f}s; rebuilding indexes and keys")
    return pings, months


def _generator_processes() -> int:
    """One generating process per core: making the rows, not COPY, is the load's bottleneck
    (one process made ~40,000 pings/s while PostgreSQL took them at a fifth of a core)."""
    return max(1, min(os.cpu_count() or 1, 4))


# Rows go to the parent in chunks of about this many bytes (one pipe message each).
_CHUNK_BYTES = 1 << 20


def _generated_rows(book: LoadBook, ids: BookIds, parts: list) -> Iterator[tuple[str, bytes]]:
    """("pings" | "monthly", COPY text) chunks of every part, made in one forked process per
    part and read in whatever order they come; a part that fails fails the load."""
    if len(parts) == 1 or multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        yield from _part_chunks(book, ids, parts[0] if len(parts) == 1 else None)
        return
    context = multiprocessing.get_context("fork")
    readers, children = [], []
    for part in parts:
        reader, writer = context.Pipe(duplex=False)
        # Forked: the child inherits the book and the ids (nothing is pickled) and never touches
        # the parent's database connection.
        child = context.Process(target=_part_send, args=(book, ids, part, writer), daemon=True)
        child.start()
        writer.close()
        readers.append(reader)
        children.append(child)
    try:
        open_readers = list(readers)
        while open_readers:
            for reader in multiprocessing.connection.wait(open_readers):
                try:
                    message = reader.recv_bytes()
                except EOFError:
                    open_readers.remove(reader)
                    continue
                kind, body = message[:1], message[1:]
                if kind == b"!":
                    raise RuntimeError(f"a ping generator failed: {body.decode(errors='replace')}")
                yield ("pings" if kind == b"p" else "monthly"), body
        for child in children:
            child.join(timeout=60)
            if child.exitcode != 0:
                raise RuntimeError(f"a ping generator exited with code {child.exitcode}")
    finally:
        for child in children:
            if child.is_alive():
                child.kill()


def _part_send(book: LoadBook, ids: BookIds, part, writer) -> None:
    try:
        for kind, chunk in _part_chunks(book, ids, part):
            writer.send_bytes((b"p" if kind == "pings" else b"m") + chunk)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the load
        writer.send_bytes(b"!" + f"{type(exc).__name__}: {exc}".encode())
        raise
    finally:
        writer.close()


def _part_chunks(book: LoadBook, ids: BookIds, part) -> Iterator[tuple[str, bytes]]:
    monthly: list[str] = []
    pending: list[str] = []
    size = 0

    def month(row: tuple) -> None:
        monthly.append(_copy_line(row))

    for row in PingRows(book, ids, monthly=month, part=part):
        line = _copy_line(row)
        pending.append(line)
        size += len(line)
        if size >= _CHUNK_BYTES:
            yield "pings", "".join(pending).encode()
            pending, size = [], 0
            if monthly:
                yield "monthly", "".join(monthly).encode()
                monthly.clear()
    if pending:
        yield "pings", "".join(pending).encode()
    if monthly:
        yield "monthly", "".join(monthly).encode()


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_line(row: tuple) -> str:
    """One row in COPY text format. Generated values only: ints, dates, booleans and short
    names and versions made here, none holding a tab, a newline or a backslash."""
    return "\t".join(map(_copy_value, row)) + "\n"


def _bulk_pings(book: LoadBook, ids: BookIds) -> tuple[int, int]:
    """The same rows through bulk_create (SQLite, small books)."""
    monthly_rows: list[tuple] = []
    batch: list[UsagePing] = []
    pings = 0
    for row in PingRows(book, ids, monthly=monthly_rows.append):
        batch.append(UsagePing(**dict(zip(PING_COLUMNS, row, strict=True))))
        pings += 1
        if len(batch) >= SQLITE_BATCH:
            UsagePing.objects.bulk_create(batch)
            batch = []
    UsagePing.objects.bulk_create(batch)
    MonthlyUsage.objects.bulk_create(
        [MonthlyUsage(**dict(zip(MONTHLY_COLUMNS, r, strict=True))) for r in monthly_rows],
        batch_size=SQLITE_BATCH,
    )
    return pings, len(monthly_rows)


@contextmanager
def _without_secondary_indexes(cursor, tables: list[str]) -> Iterator[None]:
    """Drop the tables' secondary indexes, unique and foreign-key constraints; rebuild them after.

    A bulk load is several times faster into a bare heap, and adding the constraints back checks
    every row in one pass. All inside the caller's transaction: a failure rolls the drop back too.
    """
    constraints: list[tuple[str, str, str]] = []
    indexes: list[str] = []
    for table in tables:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')",
            [table],
        )
        constraints += [(table, name, sql) for name, sql, _ in cursor.fetchall()]
        cursor.execute(
            "SELECT indexdef FROM pg_indexes i WHERE tablename = %s AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname "
            "AND c.conrelid = %s::regclass)",
            [table, table],
        )
        indexes += [row[0] for row in cursor.fetchall()]
    for table, name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    cursor.execute(
        "SELECT indexname FROM pg_indexes i WHERE tablename = ANY(%s) AND NOT EXISTS ("
        "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [tables],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    for sql in indexes:
        cursor.execute(sql)
    # Unique constraints first: the foreign keys of later tables may lean on them.
    for table, name, sql in sorted(constraints, key=lambda c: not c[2].startswith("UNIQUE")):
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {sql}')
