"""Does partitioning ``instances_usageping`` by ``recorded_at`` pay? Measured, not guessed.

    .venv/bin/python bench/partitioning.py --database usage_portal_bench_part

Works in a COPY of the large book (``--template``, made with ``CREATE DATABASE ... TEMPLATE``
when ``--database`` does not exist yet; the book itself is only read by that copy). In the copy
it builds, per scheme (``--schemes monthly,quarterly``), a partitioned twin of the ping table,
``PARTITION BY RANGE (recorded_at)``, in a schema of its own under the same table name, with the
same columns, checks, indexes and keys (the primary key becomes ``(id, recorded_at)``: a
partitioned table's unique keys must hold the partition key). ``search_path`` then picks the
table, so the very same SQL text runs against either. Measured, unpartitioned vs each twin:

1. build: ``INSERT ... SELECT`` of every ping, the indexes, the keys, ``VACUUM ANALYZE``;
2. size: heap + TOAST, each index, the B-tree depth of the ``(instance, recorded_at)`` key;
3. every query the app runs on the ping table, captured (``connection.execute_wrapper``) while
   the C360 pages, the reports, scoring, an ingest and the raw-payload purge run through the
   app's own code: median of ``--runs`` warm runs of EXPLAIN ANALYZE (planning, execution) and
   of the plain statement's wall time through psycopg (writes are rolled back); beside them,
   ``latest_of`` rewritten as the LATERAL join a partitioned table needs;
4. writes: ``pings_store`` of one ping and of 1,000, ``pings_insert`` (COPY) of 1,000, each
   rolled back, with deferred keys checked (``SET CONSTRAINTS ALL IMMEDIATE``);
5. retention, last (it destroys data): the twins' oldest partitions dropped (``DETACH ...
   CONCURRENTLY`` + ``DROP``, and a plain ``DROP``), then the same rows ``DELETE``d from the
   unpartitioned table, with the ``VACUUM`` that has to follow, their WAL and what is left.

One twin exists at a time (each is about the ping table's size): a pass builds it, times every
statement on the plain table and on it back to back, then drops it (kept with ``--keep`` or
``--skip-retention``). Heavy statements run one at a time, in one session, without parallel
workers (the machine is shared). The copy is migrated
to the checkout first, and its ``instances_monthlyusage.ping_id`` foreign key is dropped, for
both variants alike: it references ``instances_usageping(id)``, which a partitioned table cannot
offer (see ``bench/SCALE_OUT.md``, "Partitioning the ping table"). A retention run leaves the
copy changed: run again with ``--fresh`` (or ``--skip-retention`` to keep it reusable).
Figures go to ``var/bench/partitioning.json`` as well as to the printed tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TABLE = "instances_usageping"
SCHEMES = {"monthly": 1, "quarterly": 3}  # months per partition
#: Partitions created ahead of the newest ping, as a real setup keeps them (and the write
#: tests need: their pings are a week after each instance's newest).
MONTHS_AHEAD = 6
#: A query slower than this on its first warm run gets fewer timed runs (a report that scans
#: the whole table, measured 40 times over three variants, would hold the shared machine).
SLOW_SECONDS = 2.0
SLOW_RUNS = 5
KEEP_FREE_BYTES = 20 * 2**30


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def conninfo(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def connect(database: str, search_path: str = "public") -> psycopg.Connection:
    return psycopg.connect(
        conninfo(database), autocommit=True, options=f"-c search_path={search_path}"
    )


def variant_path(variant: str) -> str:
    return "public" if variant == "plain" else f"part_{variant},public"


def schema_of(variant: str) -> str:
    return "public" if variant == "plain" else f"part_{variant}"


# --------------------------------------------------------------------------------------------------
# The copy


def ensure_database(database: str, template: str, *, fresh: bool, attempts: int = 40) -> dict:
    """Create ``database`` as a file copy of ``template`` unless it exists (or ``fresh``)."""
    if "bench" not in database or database == template:
        raise SystemExit(f"refusing: {database!r} must be a bench copy, not {template!r} itself")
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database]
        ).fetchone()
        if exists and not fresh:
            return {"created": False}
        if exists:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        size = admin.execute("SELECT pg_database_size(%s)", [template]).fetchone()[0]
        free = shutil.disk_usage("/").free
        # The copy, and one partitioned twin of about the ping table's size at a time.
        if free - 2 * size < KEEP_FREE_BYTES:
            raise SystemExit(
                f"refusing: {free / 2**30:.0f} GB free, a copy and a twin need "
                f"~{2 * size / 2**30:.0f} GB and {KEEP_FREE_BYTES / 2**30:.0f} GB must stay free"
            )
        for attempt in range(1, attempts + 1):
            try:
                t0 = time.perf_counter()
                # FILE_COPY: a checkpoint and a copy of the files, no WAL for every page.
                admin.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                        sql.Identifier(database), sql.Identifier(template)
                    )
                )
                seconds = time.perf_counter() - t0
                log(f"copied {template} to {database} in {seconds:.0f}s")
                return {"created": True, "seconds": seconds, "template_bytes": size}
            except psycopg.errors.ObjectInUse:
                # Someone reads the template (a copy forbids open connections): wait, retry.
                log(f"{template} is in use; retrying in 30s ({attempt}/{attempts})")
                time.sleep(30)
    raise SystemExit(f"{template} stayed in use; no copy made")


def prepare(conn: psycopg.Connection) -> dict:
    """Make the copy comparable: no FK into the ping table, fresh statistics, extensions."""
    dropped = []
    for table, name in conn.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE confrelid = 'public.instances_usageping'::regclass"
    ).fetchall():
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
        dropped.append(f"{table}.{name}")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    conn.execute("SET max_parallel_maintenance_workers = 0")
    t0 = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) public.instances_usageping")
    return {"dropped_foreign_keys": dropped, "vacuum_seconds": time.perf_counter() - t0}


def wal_lsn(conn) -> str:
    return conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]


def wal_since(conn, lsn) -> int:
    return int(
        conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [lsn]).fetchone()[0]
    )


# --------------------------------------------------------------------------------------------------
# The partitioned twins


def month_floor(day: date, months: int) -> date:
    index = (day.year * 12 + day.month - 1) // months * months
    return date(index // 12, index % 12 + 1, 1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_bounds(first: datetime, last: datetime, months: int) -> list[tuple[date, date]]:
    start = month_floor(first.astimezone(UTC).date(), months)
    horizon = max(last, datetime.now(UTC)).astimezone(UTC).date()
    end = add_months(month_floor(horizon, months), months)
    end = add_months(month_floor(add_months(end, MONTHS_AHEAD - 1), months), months)
    bounds = []
    while start < end:
        bounds.append((start, add_months(start, months)))
        start = add_months(start, months)
    return bounds


def partition_name(lower: date, months: int) -> str:
    if months == 3:
        return f"{TABLE}_{lower.year}q{(lower.month - 1) // 3 + 1}"
    return f"{TABLE}_{lower.year}m{lower.month:02d}"


def twin_exists(conn, variant: str) -> dict | None:
    """The build record of a finished twin (kept as the schema's comment), or None."""
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
        [schema_of(variant)],
    ).fetchone()
    if not row or not row[0]:
        return None
    return json.loads(row[0])


def source_ddl(conn) -> dict:
    """The ping table's indexes, unique keys and foreign keys, as PostgreSQL prints them."""
    constraints = conn.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid), conindid FROM pg_constraint "
        "WHERE conrelid = 'public.instances_usageping'::regclass AND contype IN ('p', 'u', 'f') "
        "ORDER BY contype DESC, conname"
    ).fetchall()
    owned = {indid for _, _, _, indid in constraints if indid}
    indexes = conn.execute(
        "SELECT indexrelid, indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
        "FROM pg_index WHERE indrelid = 'public.instances_usageping'::regclass ORDER BY 2"
    ).fetchall()
    return {
        "constraints": [(name, kind, definition) for name, kind, definition, _ in constraints],
        "indexes": [(name, ddl) for oid, name, ddl in indexes if oid not in owned],
    }


def build_twin(conn, variant: str, months: int) -> dict:
    """The partitioned twin of the ping table in schema ``part_<variant>``; its build figures."""
    schema = schema_of(variant)
    ddl = source_ddl(conn)
    first, last, rows = conn.execute(
        "SELECT min(recorded_at), max(recorded_at), count(*) FROM public.instances_usageping"
    ).fetchone()
    bounds = partition_bounds(first, last, months)
    q = sql.Identifier
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(schema)))
    conn.execute("SET max_parallel_maintenance_workers = 0")
    conn.execute("SET maintenance_work_mem = '256MB'")
    parent = sql.SQL("{}.{}").format(q(schema), q(TABLE))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE public.instances_usageping INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMPRESSION) "
            "PARTITION BY RANGE (recorded_at)"
        ).format(parent)
    )
    for lower, upper in bounds:
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                q(schema),
                q(partition_name(lower, months)),
                parent,
                sql.Literal(f"{lower.isoformat()} 00:00:00+00"),
                sql.Literal(f"{upper.isoformat()} 00:00:00+00"),
            )
        )
    figures: dict = {"partitions": len(bounds), "rows": rows, "steps": {}}
    start_lsn = wal_lsn(conn)
    started = time.perf_counter()

    def step(name: str, statement) -> None:
        t0 = time.perf_counter()
        conn.execute(statement)
        figures["steps"][name] = time.perf_counter() - t0
        log(f"  {variant}: {name} in {figures['steps'][name]:.1f}s")

    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'public.instances_usageping'"
            "::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    ]
    column_list = sql.SQL(", ").join(q(c) for c in columns)
    # OVERRIDING SYSTEM VALUE is not needed (BY DEFAULT identity), the ids are kept as they are.
    step(
        "insert select",
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM public.instances_usageping").format(
            parent, column_list, column_list
        ),
    )
    for name, kind, definition in ddl["constraints"]:
        if kind == "p":
            # Unique keys of a partitioned table must hold the partition key.
            definition = "PRIMARY KEY (id, recorded_at)"
        step(
            f"{'key' if kind != 'f' else 'foreign key'} {name}",
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                parent, q(name), sql.SQL(definition)
            ),
        )
    for name, definition in ddl["indexes"]:
        rewritten = definition.replace(f"ON public.{TABLE} ", f'ON {schema}."{TABLE}" ').replace(
            f"INDEX {name} ON", f'INDEX "{name}" ON'
        )
        step(f"index {name}", sql.SQL(rewritten))
    step(
        "identity",
        sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
            sql.Literal(f"{schema}.{TABLE}"), parent
        ),
    )
    step("vacuum analyze", sql.SQL("VACUUM (ANALYZE) {}").format(parent))
    figures["seconds"] = time.perf_counter() - started
    figures["wal_bytes"] = wal_since(conn, start_lsn)
    figures["bounds"] = [[lo.isoformat(), hi.isoformat()] for lo, hi in bounds]
    conn.execute(
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            q(schema), sql.Literal(json.dumps(figures, default=str))
        )
    )
    return figures


def partitions_of(conn, variant: str) -> list[str]:
    if variant == "plain":
        return []
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_partition_tree(%s::regclass) t "
            "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1",
            [f"{schema_of(variant)}.{TABLE}"],
        ).fetchall()
    ]


def sizes(conn, variant: str) -> dict:
    """Bytes of heap (+ free space and visibility maps), TOAST and each index; B-tree depth."""
    table = f"{schema_of(variant)}.{TABLE}"
    leaves = (
        [table]
        if variant == "plain"
        else [
            r[0]
            for r in conn.execute(
                "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) WHERE isleaf",
                [table],
            ).fetchall()
        ]
    )
    heap = toast = 0
    for leaf in leaves:
        h, t = conn.execute(
            "SELECT pg_table_size(%s::regclass) - coalesce(pg_total_relation_size(reltoastrelid),"
            " 0), coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class "
            "WHERE oid = %s::regclass",
            [leaf, leaf],
        ).fetchone()
        heap, toast = heap + h, toast + t
    indexes = {}
    depth = {}
    for (name,) in conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        [table],
    ).fetchall():
        short = name.split(".")[-1].strip('"')
        parts = (
            [name]
            if variant == "plain"
            else [
                r[0]
                for r in conn.execute(
                    "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) "
                    "WHERE isleaf",
                    [name],
                ).fetchall()
            ]
        )
        indexes[short] = sum(
            conn.execute("SELECT pg_relation_size(%s::regclass)", [p]).fetchone()[0] for p in parts
        )
        if short == "ping_unique_instance_recorded_at":
            levels = [
                conn.execute("SELECT level FROM bt_metap(%s)", [p]).fetchone()[0] for p in parts
            ]
            # bt_metap's level counts from the leaves (0): the height is one more. Empty
            # (future) partitions are a lone leaf; the fullest partition is what lookups meet.
            depth = {"height": max(levels) + 1}
    return {
        "heap": heap,
        "toast": toast,
        "indexes": indexes,
        "index_total": sum(indexes.values()),
        "total": heap + toast + sum(indexes.values()),
        "unique_key_btree_levels": depth,
    }


# --------------------------------------------------------------------------------------------------
# The app's queries, captured while its own code runs


@dataclass
class Query:
    action: str
    site: str
    sql: str

    @property
    def writes(self) -> bool:
        return self.sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")


def django_setup(database: str) -> None:
    os.environ.update(
        {
            "DATABASE_URL": conninfo(database).replace("postgresql://", "postgres://"),
            "SECRET_KEY": "bench-only-not-a-secret-" + "Zq8w" * 10,
            "DEBUG": "0",
            "SECURE_COOKIES": "0",
            "STATIC_MANIFEST": "0",
            "ALLOWED_HOSTS": "testserver",
            # No cache: every page reads the database as on its first view after a change.
            "C360_CACHE_SECONDS": "0",
            "DJANGO_SETTINGS_MODULE": "usage_portal.settings",
        }
    )
    for name in ("REDIS_URL", "CACHE_URL", "SCORING_SCHEME"):
        os.environ.pop(name, None)
    import django

    django.setup()


class _Rollback(Exception):
    pass


def rolled_back(work: Callable[[], object]) -> float:
    """Seconds ``work`` took inside a transaction that is then rolled back (keys checked)."""
    from django.db import connection, transaction

    seconds = 0.0
    try:
        with transaction.atomic():
            connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
            t0 = time.perf_counter()
            work()
            seconds = time.perf_counter() - t0
            raise _Rollback
    except _Rollback:
        pass
    return seconds


def _call_site() -> str:
    """The innermost frame of the app's own code (not Django's, not this script's)."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if (
            ROOT in path.parents
            and ".venv" not in path.parts
            and path.name not in ("partitioning.py", "dbmetrics.py")  # this script, a wrapper
        ):
            return f"{path.relative_to(ROOT)}:{frame.lineno} {frame.name}"
    return "bench/partitioning.py: the change proposed"


def write_inputs(count: int) -> list:
    """``count`` pings a week after their instance's newest, as an instance would send them."""
    from instances.metrics import METRIC_NAMES
    from instances.models import Instance, InstanceKind, UsagePing
    from instances.services.inputs import PingInput

    instances = list(
        Instance.objects.filter(
            kind=InstanceKind.SELF_MANAGED, last_ping_at__isnull=False, company__isnull=False
        ).order_by("id")[:count]
    )
    latest = UsagePing.objects.latest_of(
        [i.id for i in instances],
        "version",
        "edition",
        "license_md5",
        "license_sha256",
        "license_subscription_id",
        "license_plan",
        "license_trial",
        *METRIC_NAMES,
    )
    # A full-size ping's raw payload is ~20 KB compressed; random bytes stay that size.
    blob = os.urandom(20_000)
    inputs = []
    for inst in instances:
        ping = latest[inst.id]
        inputs.append(
            PingInput(
                kind=InstanceKind.SELF_MANAGED,
                uuid=inst.uuid,
                hostname=inst.hostname,
                recorded_at=inst.last_ping_at + timedelta(days=7),
                metrics={name: ping[name] for name in METRIC_NAMES},
                version=ping["version"],
                edition=ping["edition"],
                license_md5=ping["license_md5"],
                license_sha256=ping["license_sha256"],
                license_subscription_id=ping["license_subscription_id"],
                license_plan=ping["license_plan"],
                license_trial=ping["license_trial"],
                raw_compressed=blob,
                label=f"instance {inst.id}",
            )
        )
    return inputs


def new_pings(inputs: list) -> list:
    """``UsagePing`` rows for ``pings_insert`` (the COPY half of the store), fresh each call."""
    from django.utils import timezone

    from instances.metrics import METRIC_NAMES
    from instances.models import Instance, PingSource, UsagePing

    ids = {
        (i.uuid, i.hostname): i.id
        for i in Instance.objects.filter(uuid__in=[x.uuid for x in inputs]).only(
            "id", "uuid", "hostname"
        )
    }
    now = timezone.now()
    return [
        UsagePing(
            instance_id=ids[(x.uuid, x.hostname)],
            recorded_at=x.recorded_at,
            received_at=now,
            source=PingSource.HTTP,
            version=x.version,
            edition=x.edition,
            license_md5=x.license_md5,
            license_sha256=x.license_sha256,
            license_subscription_id=x.license_subscription_id,
            license_plan=x.license_plan,
            license_trial=x.license_trial,
            raw_payload=x.raw_compressed,
            **{name: x.metrics.get(name) for name in METRIC_NAMES},
        )
        for x in inputs
    ]


def capture(batch: list, one: list) -> tuple[list[Query], dict]:
    """Run the app's reads and writes of pings; every distinct statement on the ping table."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from accounts.models import Company, Subscription
    from bench.pages import C360_SECTIONS, sample_accounts
    from instances.metrics import FAILED_FIELD, METRIC_NAMES
    from instances.models import Instance, PingSource
    from instances.retention import raw_payloads_purge
    from instances.services.licenses import subscriptions_attach_waiting
    from instances.services.store import pings_store
    from scoring.services import load_inputs, monthly_scores_rebuild
    from usage_portal.web.ops.selectors import pings_stored_recently

    def latest_lateral(company_ids):
        """``UsagePing.objects.latest_of`` as a partitioned table needs it: each instance's
        newest ping found by (instance, recorded_at), the partition key, in a LATERAL join
        (pruned to one partition per instance as it runs), not by ping id (every partition)."""
        ids = list(
            Instance.objects.filter(
                company_id__in=company_ids, last_ping_at__isnull=False
            ).values_list("id", flat=True)
        )
        columns = ", ".join(
            f"p.{connection.ops.quote_name(c)}"
            for c in ("instance_id", "id", "recorded_at", "version", *METRIC_NAMES, FAILED_FIELD)
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM instances_instance i CROSS JOIN LATERAL "
                "(SELECT * FROM instances_usageping u WHERE u.instance_id = i.id "
                "AND u.recorded_at = i.last_ping_at LIMIT 1) p WHERE i.id = ANY(%s)",
                [ids],
            )
            return cursor.fetchall()

    queries: list[Query] = []
    seen: set[tuple[str, str]] = set()
    action = ["?"]

    def wrapper(execute, statement, params, many, context):
        result = execute(statement, params, many, context)
        if not many and TABLE in statement and "nextval(" not in statement:
            text = connection.ops.last_executed_query(context["cursor"], statement, params)
            key = (action[0], text)
            if key not in seen:
                seen.add(key)
                queries.append(Query(action[0], _call_site(), text))
        return result

    accounts = sample_accounts()[:2]  # the largest account and a typical one
    largest = accounts[0][1]
    monthly_scores_rebuild(company_ids=[pk for _, pk, _ in accounts])
    users = get_user_model().objects
    ops, csm = Client(), Client()
    ops.force_login(users.get(username="ops"))
    csm.force_login(users.get(username="csm1"))
    instance = Instance.objects.filter(company_id=largest).order_by("id").first()
    waiting = (
        Subscription.objects.annotate(n=Count("instances")).filter(n__gt=0).order_by("id").first()
    )
    chunk = list(Company.objects.order_by("id").values_list("id", flat=True)[:1000])
    today = timezone.now().date()
    actions: list[tuple[str, Callable[[], object]]] = []
    for label, pk, n in accounts:
        for section, url in C360_SECTIONS:
            path = url.format(pk=pk)
            actions.append((f"C360 {section}, {label} ({n} inst.)", lambda u=path: ops.get(u)))
    actions += [
        (
            "C360 instance edit (mapping history)",
            lambda: ops.get(f"/accounts/{largest}/instances/{instance.id}/edit/"),
        ),
        ("CSM Burn-Down (csm1)", lambda: csm.get("/burndown/")),
        ("CSM Burn-Down (ops, all)", lambda: ops.get("/burndown/?csm=")),
        ("Versions report", lambda: ops.get("/reports/versions/")),
        ("Data quality", lambda: ops.get("/data-quality/")),
        ("ops metrics scrape", pings_stored_recently),
        ("scoring: load_inputs, largest account", lambda: load_inputs([largest], as_of=today)),
        ("scoring: load_inputs, 1,000 accounts", lambda: load_inputs(chunk, as_of=today)),
        ("proposed latest_of, LATERAL, largest account", lambda: latest_lateral([largest])),
        ("proposed latest_of, LATERAL, 1,000 accounts", lambda: latest_lateral(chunk)),
        (
            "ingest: pings_store, 1 ping",
            lambda: rolled_back(lambda: pings_store(inputs=one, source=PingSource.HTTP)),
        ),
        (
            "ingest: pings_store, 1,000 pings",
            lambda: rolled_back(
                lambda: pings_store(inputs=batch, source=PingSource.BULK, refresh=False)
            ),
        ),
        (
            "subscription import: attach waiting pings",
            lambda: rolled_back(lambda: subscriptions_attach_waiting(subscriptions=[waiting])),
        ),
        ("retention: raw payloads (730 days)", lambda: rolled_back(raw_payloads_purge)),
    ]

    def purge_365():
        with override_settings(RAW_PAYLOAD_RETENTION_DAYS=365):
            return raw_payloads_purge()

    actions.append(("retention: raw payloads (365 days)", lambda: rolled_back(purge_365)))
    statuses = {}
    with connection.execute_wrapper(wrapper):
        for name, run in actions:
            action[0] = name
            result = run()
            status = getattr(result, "status_code", None)
            if status is not None:
                statuses[name] = status
                if status != 200:
                    log(f"  {name}: HTTP {status}")
    return queries, {"accounts": accounts, "statuses": statuses}


# --------------------------------------------------------------------------------------------------
# Timing


def _plan_walk(node: dict, out: list) -> None:
    out.append(node)
    for child in node.get("Plans", ()):
        _plan_walk(child, out)


@dataclass
class Timing:
    wall_ms: float
    planning_ms: float
    execution_ms: float
    buffers: int  # shared blocks hit + read, one run
    partitions_scanned: int  # partitions whose scan node ran at least once
    runs: int
    rows: int = 0
    wall_samples: list[float] = field(default_factory=list)


def time_query(conn, query: Query, partitions: set[str], *, runs: int, warmups: int) -> Timing:
    def once(text: str):
        if query.writes:
            conn.execute("BEGIN")
        try:
            t0 = time.perf_counter()
            cur = conn.execute(text)
            rows = cur.fetchall() if cur.description else []
            seconds = time.perf_counter() - t0
        finally:
            if query.writes:
                conn.execute("ROLLBACK")
        return seconds, rows

    first, _ = once(query.sql)
    if first > SLOW_SECONDS:
        runs, warmups = min(runs, SLOW_RUNS), 0
    for _ in range(warmups):
        once(query.sql)
    wall, planning, execution, buffers = [], [], [], []
    rows = 0
    scanned = 0
    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.sql
    for _ in range(runs):
        seconds, result = once(query.sql)
        wall.append(seconds * 1000)
        rows = len(result)
        _, plan_rows = once(explain)
        plan = plan_rows[0][0][0]
        planning.append(plan["Planning Time"])
        execution.append(plan["Execution Time"])
        nodes: list[dict] = []
        _plan_walk(plan["Plan"], nodes)
        top = plan["Plan"]
        buffers.append(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0))
        scanned = len(
            {
                n["Relation Name"]
                for n in nodes
                if n.get("Actual Loops", 0) > 0 and n.get("Relation Name") in partitions
            }
        )
    return Timing(
        wall_ms=statistics.median(wall),
        planning_ms=statistics.median(planning),
        execution_ms=statistics.median(execution),
        buffers=int(statistics.median(buffers)),
        partitions_scanned=scanned,
        runs=runs,
        rows=rows,
        wall_samples=[round(w, 3) for w in wall],
    )


def time_writes(pair: list[tuple[str, str]], batch: list, one: list, *, runs: int) -> dict:
    """``pings_store`` of 1 and 1,000 pings, ``pings_insert`` of 1,000, each rolled back: the
    variants take turns run by run (the machine's load drifts across all alike); medians."""
    from django.db import connection

    from instances.models import PingSource
    from instances.services.bulk_sql import pings_insert
    from instances.services.store import pings_store

    cases = {
        "pings_store, 1 ping": lambda: rolled_back(
            lambda: pings_store(inputs=one, source=PingSource.HTTP, refresh=False)
        ),
        "pings_store, 1,000 pings": lambda: rolled_back(
            lambda: pings_store(inputs=batch, source=PingSource.BULK, refresh=False)
        ),
        "pings_insert (COPY), 1,000 pings": lambda: _insert_only(pings_insert, batch),
    }

    def on(variant: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SET search_path TO {variant_path(variant)}")

    out: dict = {label: {} for label, _ in pair}
    try:
        for name, case in cases.items():
            samples: dict[str, list[float]] = {label: [] for label, _ in pair}
            for _, v in pair:  # warm
                on(v)
                case()
            for _ in range(runs):
                for label, v in pair:
                    on(v)
                    samples[label].append(case() * 1000)
            for label, _ in pair:
                median = statistics.median(samples[label])
                out[label][name] = {"median_ms": median, "runs": runs}
                log(f"  {name:<34} {label:<22} {median:8.1f} ms")
    finally:
        on("plain")
    return out


def _insert_only(pings_insert, batch) -> float:
    rows = new_pings(batch)  # built outside the timing
    return rolled_back(lambda: pings_insert(rows))


# --------------------------------------------------------------------------------------------------
# Retention


def retention_cutoffs(conn, schemes: list[str]) -> dict[str, date]:
    """Per scheme, the end of the oldest whole partition: what one retention step removes."""
    first = conn.execute("SELECT min(recorded_at) FROM public.instances_usageping").fetchone()[0]
    return {scheme: retention_cutoff(first, SCHEMES[scheme]) for scheme in schemes}


def retention_cutoff(first: datetime, months: int) -> date:
    """The end of the first whole partition after the ping at ``first``: one retention step
    removes it and the partly filled partition before it, if any."""
    day = first.astimezone(UTC).date()
    start = month_floor(day, months)
    if start < day:
        start = add_months(start, months)
    return add_months(start, months)


def partitions_before(conn, variant: str, cutoff: date) -> list[tuple[str, int]]:
    """(partition, rows) of the twin's partitions whose upper bound is ``cutoff`` or earlier."""
    schema = schema_of(variant)
    months = SCHEMES[variant]
    out = []
    for bare in partitions_of(conn, variant):
        lower = _partition_lower(bare)
        if add_months(lower, months) <= cutoff:
            rows = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(bare)
                )
            ).fetchone()[0]
            out.append((bare, rows))
    return out


def _partition_lower(bare: str) -> date:
    tail = bare.rsplit("_", 1)[-1]
    year = int(tail[:4])
    if tail[4] == "q":
        return date(year, (int(tail[5:]) - 1) * 3 + 1, 1)
    return date(year, int(tail[5:]), 1)


def retention_drop(conn, variant: str, cutoff: date) -> dict:
    """The twin's retention step: the oldest partition ``DETACH ... CONCURRENTLY`` then
    ``DROP``ped, any other one before ``cutoff`` ``DROP``ped directly (brief ACCESS EXCLUSIVE)."""
    schema = schema_of(variant)
    q = sql.Identifier
    parent = sql.SQL("{}.{}").format(q(schema), q(TABLE))
    steps = []
    total_rows = 0
    t_all = time.perf_counter()
    lsn_all = wal_lsn(conn)
    for n, (bare, rows) in enumerate(partitions_before(conn, variant, cutoff)):
        part = sql.SQL("{}.{}").format(q(schema), q(bare))
        size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", [f"{schema}.{bare}"])
        size = size.fetchone()[0]
        lsn = wal_lsn(conn)
        t0 = time.perf_counter()
        if n == 0:
            conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(parent, part)
            )
            detached = time.perf_counter() - t0
            conn.execute(sql.SQL("DROP TABLE {}").format(part))
            how = "DETACH CONCURRENTLY + DROP"
        else:
            detached = None
            conn.execute(sql.SQL("DROP TABLE {}").format(part))
            how = "DROP TABLE"
        steps.append(
            {
                "partition": bare,
                "rows": rows,
                "bytes_freed": size,
                "how": how,
                "seconds": time.perf_counter() - t0,
                "detach_seconds": detached,
                "wal_bytes": wal_since(conn, lsn),
            }
        )
        total_rows += rows
    return {
        "cutoff": cutoff.isoformat(),
        "rows": total_rows,
        "seconds": time.perf_counter() - t_all,
        "wal_bytes": wal_since(conn, lsn_all),
        "vacuum_needed": False,
        "steps": steps,
    }


def retention_delete(conn, cutoff: date, label: str) -> dict:
    """Retention on the plain table: ``DELETE`` older rows, then the ``VACUUM`` it needs."""
    before = sizes(conn, "plain")
    lsn = wal_lsn(conn)
    t0 = time.perf_counter()
    cur = conn.execute(
        "DELETE FROM public.instances_usageping WHERE recorded_at < %s",
        [datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)],
    )
    rows = cur.rowcount
    delete_s = time.perf_counter() - t0
    delete_wal = wal_since(conn, lsn)
    conn.execute("SET max_parallel_maintenance_workers = 0")
    lsn = wal_lsn(conn)
    t0 = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) public.instances_usageping")
    vacuum_s = time.perf_counter() - t0
    vacuum_wal = wal_since(conn, lsn)
    after = sizes(conn, "plain")
    free = conn.execute(
        "SELECT approx_free_space, approx_free_percent FROM "
        "pgstattuple_approx('public.instances_usageping'::regclass)"
    ).fetchone()
    return {
        "label": label,
        "cutoff": cutoff.isoformat(),
        "rows": rows,
        "delete_seconds": delete_s,
        "delete_wal_bytes": delete_wal,
        "vacuum_seconds": vacuum_s,
        "vacuum_wal_bytes": vacuum_wal,
        "total_bytes_before": before["total"],
        "total_bytes_after": after["total"],
        "heap_free_bytes_after": int(free[0]),
        "heap_free_percent_after": float(free[1]),
    }


# --------------------------------------------------------------------------------------------------
# Printing


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def print_tables(results: dict) -> None:
    variants = results["variants"]
    print("\n== Build and size ==")
    print(f"{'':<34}" + "".join(f"{v:>16}" for v in variants))
    rows = [
        ("partitions", lambda v: str(results["size"][v].get("partitions", 1))),
        ("build (INSERT SELECT + keys)", lambda v: _build(results, v)),
        ("heap", lambda v: mb(results["size"][v]["heap"])),
        ("indexes", lambda v: mb(results["size"][v]["index_total"])),
        ("total", lambda v: mb(results["size"][v]["total"])),
        (
            "(instance, recorded_at) B-tree height",
            lambda v: str(results["size"][v]["unique_key_btree_levels"].get("height", "?")),
        ),
    ]
    for label, value in rows:
        print(f"{label:<34}" + "".join(f"{value(v):>16}" for v in variants))

    columns = results["columns"]
    kinds = results["column_variant"]
    print("\n== Queries on the ping table: median ms, EXPLAIN ANALYZE plan + exec | wall ==")
    print(f"{'#':>3} {'where it runs':<44}" + "".join(f"{c[:25]:>27}" for c in columns))
    for n, q in enumerate(results["queries"], start=1):
        cells = []
        for c in columns:
            t = q["timings"].get(c)
            if t is None:
                cells.append(f"{'—':>27}")
                continue
            parts = f"p{t['partitions_scanned']}" if kinds[c] != "plain" else ""
            timing = f"{t['planning_ms']:>6.2f}+{t['execution_ms']:>8.2f} |{t['wall_ms']:>7.2f}"
            cells.append(f"{timing}{parts:>4}")
        print(f"{n:>3} {q['action'][:44]:<44}" + "".join(cells))
    print("    pN: partitions whose scan ran. Call sites:")
    for n, q in enumerate(results["queries"], start=1):
        print(f"{n:>6}  {q['site']}")

    print("\n== Writes (rolled back, keys checked): median ms ==")
    print(f"{'':<34}" + "".join(f"{c[:25]:>27}" for c in columns))
    for name in next(iter(results["writes"].values())):
        print(
            f"{name:<34}"
            + "".join(f"{results['writes'][c][name]['median_ms']:>27.1f}" for c in columns)
        )

    retention = results.get("retention")
    if retention:
        print("\n== Retention: one step (the oldest whole partition and what precedes it) ==")
        for r in retention.get("delete", []):
            print(
                f"plain, DELETE < {r['cutoff']}: {r['rows']:,} rows,"
                f" DELETE {r['delete_seconds']:.1f}s"
                f" ({mb(r['delete_wal_bytes'])} WAL), VACUUM {r['vacuum_seconds']:.1f}s"
                f" ({mb(r['vacuum_wal_bytes'])} WAL); size {mb(r['total_bytes_before'])} →"
                f" {mb(r['total_bytes_after'])}, {r['heap_free_percent_after']:.1f}% of the heap"
                " free for reuse"
            )
        for v, r in retention.get("drop", {}).items():
            steps = "; ".join(
                f"{s['partition']} ({s['rows']:,} rows, {mb(s['bytes_freed'])}): {s['how']} "
                f"{s['seconds'] * 1000:.0f} ms, {s['wal_bytes'] / 1024:.0f} kB WAL"
                for s in r["steps"]
            )
            print(f"{v}, drop < {r['cutoff']}: {r['rows']:,} rows — {steps}")


def _build(results: dict, v: str) -> str:
    build = results["build"].get(v)
    return "—" if not build else f"{build['seconds']:.0f} s"


# --------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database", default="usage_portal_bench_part", help="the copy to work in")
    p.add_argument(
        "--template", default="usage_portal_bench_large", help="the book copied (read only)"
    )
    p.add_argument("--fresh", action="store_true", help="make a new copy even if one exists")
    p.add_argument("--schemes", default="monthly,quarterly", help="monthly and/or quarterly")
    p.add_argument("--runs", type=int, default=20, help="timed runs per query")
    p.add_argument("--warmups", type=int, default=3)
    p.add_argument("--write-runs", type=int, default=20)
    p.add_argument("--rebuild", action="store_true", help="rebuild twins that exist already")
    p.add_argument("--keep", action="store_true", help="keep the twins (no retention on them)")
    p.add_argument("--skip-retention", action="store_true", help="leave the copy reusable")
    p.add_argument("--drop-database", action="store_true", help="drop the copy at the end")
    p.add_argument("--output", type=Path, default=ROOT / "var" / "bench" / "partitioning.json")
    p.add_argument("--print", action="store_true", help="print the tables of --output, no run")
    args = p.parse_args(argv)
    args.schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = set(args.schemes) - set(SCHEMES)
    if unknown:
        p.error(f"unknown scheme(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.print:
        print_tables(json.loads(args.output.read_text()))
        return 0
    results: dict = {
        "database": args.database,
        "template": args.template,
        "started_at": datetime.now(UTC).isoformat(),
        "variants": ["plain", *args.schemes],
        "build": {},
        "size": {},
        "queries": [],
        "writes": {},
        "columns": [],
        "column_variant": {},
    }
    results["copy"] = ensure_database(args.database, args.template, fresh=args.fresh)
    django_setup(args.database)
    # The checkout may be a migration ahead of the book (as bench/dataset.py, migrate the copy).
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    admin = connect(args.database)
    results["prepare"] = prepare(admin)
    results["rows"] = admin.execute("SELECT count(*) FROM public.instances_usageping").fetchone()[0]
    # Before any (rolled-back) write leaves dead rows behind.
    results["size"]["plain"] = sizes(admin, "plain")
    log(f"{results['rows']:,} pings in {args.database}")

    batch = write_inputs(1000)
    one = batch[:1]
    log("capturing the app's queries on the ping table")
    queries, meta = capture(batch, one)
    results["capture"] = meta
    results["queries"] = [{**asdict(q), "timings": {}} for q in queries]
    log(f"{len(queries)} distinct statements on {TABLE}")

    # One twin at a time (a twin is about the ping table's size; the disk is shared): each pass
    # measures the plain table and one twin, each query on both back to back and the writes
    # taking turns, so that the shared machine's load drifts between queries, not variants.
    cutoffs = retention_cutoffs(admin, args.schemes)
    results["retention"] = {"drop": {}, "delete": []}
    for pass_no, scheme in enumerate(args.schemes):
        built = None if args.rebuild else twin_exists(admin, scheme)
        if built is None:
            need = results["size"]["plain"]["total"]
            free = shutil.disk_usage("/").free
            if free - need < KEEP_FREE_BYTES:
                raise SystemExit(
                    f"refusing to build the {scheme} twin: {free / 2**30:.0f} GB free, it needs "
                    f"~{need / 2**30:.0f} GB and {KEEP_FREE_BYTES / 2**30:.0f} GB must stay free"
                )
            log(f"building the {scheme} twin")
            built = build_twin(admin, scheme, SCHEMES[scheme])
        else:
            log(f"reusing the {scheme} twin built earlier")
        results["build"][scheme] = built
        results["size"][scheme] = {**sizes(admin, scheme), "partitions": built["partitions"]}
        baseline = "plain" if pass_no == 0 else f"plain ({scheme} pass)"
        pair = [(baseline, "plain"), (scheme, scheme)]
        results["columns"] += [label for label, _ in pair]
        results["column_variant"].update(dict(pair))
        _save(args.output, results)
        measure_pass(args, admin, queries, pair, results)
        log("writes, the two tables in turn")
        for label, timing in time_writes(pair, batch, one, runs=args.write_runs).items():
            results["writes"][label] = timing
        _save(args.output, results)
        if not (args.skip_retention or args.keep):
            log(f"retention on the {scheme} twin: drop partitions before {cutoffs[scheme]}")
            results["retention"]["drop"][scheme] = retention_drop(admin, scheme, cutoffs[scheme])
            admin.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema_of(scheme)))
            )
            _save(args.output, results)

    if not args.skip_retention:
        # The write tests' rolled-back rows are cleared first: the figures below are the DELETE's.
        admin.execute("VACUUM public.instances_usageping")
        previous = None
        for scheme in sorted(args.schemes, key=lambda s: cutoffs[s]):
            log(f"retention on the plain table: DELETE before {cutoffs[scheme]} + VACUUM")
            label = f"one {scheme} step" + (f" (after < {previous})" if previous else "")
            results["retention"]["delete"].append(retention_delete(admin, cutoffs[scheme], label))
            previous = cutoffs[scheme]
            _save(args.output, results)
    admin.close()
    results["finished_at"] = datetime.now(UTC).isoformat()
    _save(args.output, results)
    print_tables(results)
    print(f"\nfigures: {args.output}")
    if args.drop_database:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(conninfo("postgres"), autocommit=True) as pg:
            pg.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(args.database))
            )
        log(f"dropped {args.database}")
    return 0


def measure_pass(args, admin, queries: list[Query], pair: list[tuple[str, str]], results) -> None:
    """Every captured query on the plain table and on one twin, back to back."""
    conns = {label: connect(args.database, variant_path(v)) for label, v in pair}
    partitions = {label: set(partitions_of(admin, v)) for label, v in pair}
    try:
        for n, query in enumerate(queries):
            for label, _ in pair:
                t = time_query(
                    conns[label], query, partitions[label], runs=args.runs, warmups=args.warmups
                )
                results["queries"][n]["timings"][label] = asdict(t)
                log(
                    f"  #{n + 1:<2} {label:<22} {query.action[:40]:<40} plan {t.planning_ms:7.2f}"
                    f" exec {t.execution_ms:8.2f} wall {t.wall_ms:8.2f} ms"
                    + (f"  p{t.partitions_scanned}" if partitions[label] else "")
                )
            _save(args.output, results)
    finally:
        for conn in conns.values():
            conn.close()


def _save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
