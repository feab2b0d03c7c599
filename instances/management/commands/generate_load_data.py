"""Generate a large, realistic book of business for benchmarks, at COPY speed.

The layout and metric values come from ``instances.loadgen`` (the demo's shape and variety at
scale). Small tables go in with ``bulk_create``; pings and monthly usage with PostgreSQL ``COPY``
in one transaction, their secondary indexes and foreign keys dropped for the load and rebuilt (and
so re-checked) at the end. On SQLite (tests) everything goes through ``bulk_create``.

Generated history carries no raw payload (``raw_payload`` is NULL): it never came over the wire.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.core.management.color import no_style
from django.db import connection, transaction

from accounts.models import Company, Subscription
from instances.models import (
    Instance,
    LabelChange,
    LabelChangeStatus,
    License,
    MonthlyUsage,
    UsagePing,
)
from usage_portal.sampledata.demo import version_at
from usage_portal.sampledata.loadgen import (
    MONTHLY_COLUMNS,
    PING_COLUMNS,
    BookIds,
    LoadBook,
    PingRows,
    build_load_book,
    version_facts,
)

APPS = ("accounts", "instances", "scoring")
SQLITE_BATCH = 2000
UTILIZATION_RULE = "Set Instance Type - Programmatically by License Utilization"


def _sentiment_time(book: LoadBook) -> datetime:
    return datetime.combine(book.end, datetime.min.time(), tzinfo=UTC) - timedelta(days=9)


class Command(BaseCommand):
    help = (
        "Generate a large benchmark book (default 5,000 companies, ~3 self-managed instances each "
        "plus 2,000 SaaS namespaces, 104 weekly pings each) with COPY-speed inserts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--companies", type=int, default=5000)
        parser.add_argument("--weeks", type=int, default=104)
        parser.add_argument(
            "--namespaces",
            type=int,
            default=None,
            help="SaaS namespaces (default: 40%% of companies)",
        )
        parser.add_argument("--csms", type=int, default=25, help="CSM users csm1..csmN")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--end", type=date.fromisoformat, default=None, help="date of the newest ping"
        )
        parser.add_argument(
            "--reset", action="store_true", help="replace whatever the database holds"
        )
        parser.add_argument(
            "--history", action="store_true", help="also build the monthly score history"
        )
        parser.add_argument("--no-scores", action="store_true", help="skip the score recompute")

    def handle(self, *args, **opts):
        self.timings: dict[str, float] = {}
        started = time.perf_counter()
        if opts["companies"] < 1 or opts["weeks"] < 1:
            raise CommandError("--companies and --weeks must be at least 1")
        if Company.objects.exists() and not opts["reset"]:
            raise CommandError(
                "the database already holds companies; pass --reset to replace everything in it"
            )
        with self.phase("layout"):
            book = build_load_book(
                companies=opts["companies"],
                weeks=opts["weeks"],
                namespaces=opts["namespaces"],
                csms=opts["csms"],
                end=opts["end"],
                seed=opts["seed"],
            )
        self.note(
            f"{len(book.companies):,} companies, {len(book.subscriptions):,} subscriptions, "
            f"{sum(s.kind == 'self-managed' for s in book.instances):,} self-managed instances, "
            f"{sum(s.kind == 'saas' for s in book.instances):,} SaaS namespaces, "
            f"{book.ping_count:,} pings over {book.weeks} weeks to {book.end}"
        )
        postgres = connection.vendor == "postgresql"
        # Inside a caller's transaction (a test) FREEZE and VACUUM are not possible.
        standalone = not connection.in_atomic_block
        with transaction.atomic():
            with self.phase("reset"):
                self._flush()
            with self.phase("reference rows"):
                users = self._users(book)
                ids = self._reference(book, users)
                changes = self._label_changes(book, ids, users)
            with self.phase("pings + monthly usage"):
                if postgres:
                    pings, months = self._copy_pings(book, ids, freeze=standalone)
                else:
                    pings, months = self._bulk_pings(book, ids)
                self._reset_sequences()
        if postgres:
            with self.phase("vacuum analyze"), connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE)" if standalone else "ANALYZE")
        rate = pings / max(self.timings["pings + monthly usage"], 1e-9)
        self.note(
            f"stored {pings:,} pings ({rate:,.0f}/s), {months:,} monthly usage rows, "
            f"{changes:,} label changes; raw_payload is left NULL for generated history"
        )
        if not opts["no_scores"]:
            from scoring.services import companies_recompute_all

            with self.phase("score recompute"):
                scored = companies_recompute_all(reason="generate_load_data", history=False)
            rate = scored / max(self.timings["score recompute"], 1e-9)
            self.note(f"scored {scored:,} companies ({rate:,.0f} companies/s)")
        if opts["history"]:
            from scoring.services import CHUNK, monthly_scores_rebuild

            with self.phase("monthly score history"):
                company_ids = list(Company.objects.order_by("id").values_list("id", flat=True))
                for start in range(0, len(company_ids), CHUNK):
                    monthly_scores_rebuild(company_ids=company_ids[start : start + CHUNK])
        total = time.perf_counter() - started
        self.timings["total"] = total
        self.stdout.write(
            self.style.SUCCESS(
                f"Load data ready in {total:.1f}s: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items() if k != "total")
            )
        )
        self.note(
            "Logins (password from DEMO_PASSWORD, default 'demo'): ops, "
            f"csm1..csm{len(book.csms)}, viewer"
        )

    # ----------------------------------------------------------------------------------------------

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.stdout.write(f"  {name} …")
        self.stdout.flush()
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        self.stdout.write(f"  {name}: {self.timings[name]:.1f}s")
        self.stdout.flush()

    def note(self, text: str) -> None:
        self.stdout.write(f"  {text}")
        self.stdout.flush()

    def _flush(self) -> None:
        models = [m for m in apps.get_models() if m._meta.app_label in APPS]
        tables = [m._meta.db_table for m in models] + [get_user_model()._meta.db_table]
        statements = connection.ops.sql_flush(
            no_style(), tables, reset_sequences=True, allow_cascade=True
        )
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)

    def _reset_sequences(self) -> None:
        models = [m for m in apps.get_models() if m._meta.app_label in APPS]
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), models):
                cursor.execute(sql)

    def _users(self, book: LoadBook) -> dict:
        """ops, csm1..csmN and viewer, password DEMO_PASSWORD (hashed once: hashing is slow)."""
        User = get_user_model()
        password = make_password(os.environ.get("DEMO_PASSWORD", "demo"))
        people = [("ops", "Olivia", "Ops", "Ops", True)]
        people += [(name, "Casey", f"Morgan {name[3:]}", "CSM", False) for name in book.csms]
        people.append(("viewer", "Vic", "Sales", "Viewer", False))
        created = User.objects.bulk_create(
            [
                User(
                    username=username,
                    first_name=first,
                    last_name=last,
                    email=f"{username}@example.com",
                    is_staff=staff,
                    password=password,
                )
                for username, first, last, _, staff in people
            ]
        )
        groups = {g.name: g for g in Group.objects.filter(name__in={"Ops", "CSM", "Viewer"})}
        if len(groups) < 3:
            raise CommandError("role groups are missing: run migrate first")
        User.groups.through.objects.bulk_create(
            [
                User.groups.through(user_id=user.pk, group_id=groups[role].pk)
                for user, (_, _, _, role, _) in zip(created, people, strict=True)
            ]
        )
        return {u.username: u for u in created}

    def _reference(self, book: LoadBook, users: dict) -> BookIds:
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
                        lic.subscription.name
                        if lic.subscription and lic.mapped_via == "ping"
                        else ""
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
            version = ""
            if spec.kind == "self-managed" and span:
                version = version_at(spec, book.weeks - spec.stop_weeks_ago - 1, book.weeks)
            facts = version_facts(version)
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
                    version_sort=facts.sort_key,
                    edition=(
                        {"ultimate": "EEU", "premium": "EEP"}.get(spec.subscription.plan, "")
                        if spec.kind == "self-managed"
                        else ""
                    ),
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

    def _label_changes(self, book: LoadBook, ids: BookIds, users: dict) -> int:
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
            wanted = []
            if spec.kind == "self-managed" and spec.label:
                wanted.append(("instance_type", "unknown", spec.label))
            if spec.opt_out:
                wanted.append(("health_inclusion", "", "opt_out"))
            for field, old, new in wanted:
                start = span[0] if span else now - timedelta(days=30)
                requested = min(start + timedelta(hours=rng.randint(2, 24 * 20)), now)
                by_rule = field == "instance_type" and spec.rule_labeled
                change = LabelChange(
                    instance_id=instance_id,
                    field=field,
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
                if field == "instance_type" and not by_rule and rng.random() < 0.05:
                    first_try = requested - timedelta(hours=rng.randint(1, 20))
                    earlier.append(
                        (
                            len(applied) - 1,
                            LabelChange(
                                instance_id=instance_id,
                                field=field,
                                old_value=old,
                                new_value="non_production"
                                if new != "non_production"
                                else "obsolete",
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
                        old_value="unknown",
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

    # ----------------------------------------------------------------------------------------------
    # Pings and monthly usage

    def _copy_pings(self, book: LoadBook, ids: BookIds, *, freeze: bool) -> tuple[int, int]:
        ping_table = UsagePing._meta.db_table
        monthly_table = MonthlyUsage._meta.db_table
        pings = months = 0
        report_every = max(book.ping_count // 10, 1)
        # FREEZE: rows are written visible to all, so no later pass rewrites every page.
        with_freeze = " WITH (FREEZE)" if freeze else ""
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # Check the reference rows now: a table with deferred checks pending cannot be altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with (
            tempfile.TemporaryFile(mode="w+", encoding="utf-8") as spool,
            connection.cursor() as cursor,
            _without_secondary_indexes(cursor, [monthly_table, ping_table]),
        ):

            def monthly(row: tuple) -> None:
                # Plain COPY text: ints, dates, versions; None is NULL.
                spool.write("\t".join(map(str, row)).replace("None", "\\N") + "\n")

            rows = PingRows(book, ids, monthly=monthly)
            t0 = time.perf_counter()
            with cursor.copy(
                f"COPY {ping_table} ({', '.join(PING_COLUMNS)}) FROM STDIN{with_freeze}"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
                    pings += 1
                    if pings % report_every == 0:
                        elapsed = time.perf_counter() - t0
                        self.note(
                            f"    {pings:,}/{book.ping_count:,} pings ({pings / elapsed:,.0f}/s)"
                        )
            months = rows.next_monthly_id - 1
            spool.seek(0)
            with cursor.copy(
                f"COPY {monthly_table} ({', '.join(MONTHLY_COLUMNS)}) FROM STDIN{with_freeze}"
            ) as copy:
                while chunk := spool.read(1 << 20):
                    copy.write(chunk)
            self.note(f"    copied in {time.perf_counter() - t0:.1f}s; rebuilding indexes and keys")
        return pings, months

    def _bulk_pings(self, book: LoadBook, ids: BookIds) -> tuple[int, int]:
        """The same rows through bulk_create (SQLite, small books)."""
        monthly_rows: list[tuple] = []
        batch: list[UsagePing] = []
        pings = 0
        for row in PingRows(book, ids, monthly=monthly_rows.append):
            values = dict(zip(PING_COLUMNS, row, strict=True))
            batch.append(UsagePing(**values))
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
