"""The benchmark's database: create it, fill it once, and give every run the same pristine copy.

``generate_load_data`` fills ``<db>`` and the result is kept as a template database,
``<db>_pristine``, with a marker table naming what was generated. A later run with the same
parameters (and the same generator code, and a book no older than ``max_age_days``) recreates
``<db>`` from the template with a file copy in seconds instead of generating again: so every run
measures the same data, whatever the previous run's ingest and end-to-end phases added.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from . import procs

MARKER_TABLE = "bench_dataset"
GENERATOR_FILES = (
    "usage_portal/sampledata/shapes.py",
    "usage_portal/sampledata/loadgen.py",
    # Which keys (so which metrics) a version's pings carry.
    "usage_portal/sampledata/payloads.py",
    "usage_portal/sampledata/bulk_load.py",
    "instances/management/commands/generate_load_data.py",
    # How scores and monthly history are written (the dataset stores them).
    "scoring/services.py",
    "scoring/methodology.py",
)


def generator_version() -> str:
    digest = hashlib.sha256()
    for name in GENERATOR_FILES:
        digest.update((procs.ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(_with_db(url, "postgres"), autocommit=True)


def _exists(conn: psycopg.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
    )


def read_marker(url: str) -> dict | None:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                f"SELECT params, info FROM {MARKER_TABLE} ORDER BY generated_at DESC LIMIT 1"
            ).fetchone()
    except psycopg.Error:
        return None
    return {"params": row[0], "info": row[1]} if row else None


def _write_marker(url: str, params: dict, info: dict) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} "
            "(generated_at timestamptz NOT NULL DEFAULT now(), params jsonb, info jsonb)"
        )
        conn.execute(f"DELETE FROM {MARKER_TABLE}")
        conn.execute(
            f"INSERT INTO {MARKER_TABLE} (params, info) VALUES (%s, %s)",
            [json.dumps(params), json.dumps(info)],
        )


def _copy_database(admin: psycopg.Connection, source: str, target: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
    # FILE_COPY: a checkpoint and a copy of the files, far faster than WAL-logging every page.
    admin.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(target), sql.Identifier(source)
        )
    )


def _drop_connections(admin: psycopg.Connection, name: str) -> None:
    """Connections of this run's own processes that outlived them (a killed child's pool)."""
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        [name],
    )


def _migrate(env: dict, log) -> bool:
    done = procs.manage(["migrate", "--noinput"], env=env, timeout=900)
    if not done.ok:
        raise RuntimeError(f"migrate failed:\n{done.output[-3000:]}")
    return "Applying" in done.output


#: Database size per account of a generated book at 104 weeks (50,000 accounts: 10,001 MB).
MB_PER_COMPANY = 0.21
#: While generating: the book, its pristine copy, and room for index builds and the WAL.
GENERATE_FACTOR = 2.5
SPARE_MB = 2048


class NoRoom(Exception):
    """The PostgreSQL data disk cannot hold the book this run would build."""


def _size_mb(admin: psycopg.Connection, name: str) -> float:
    if not _exists(admin, name):
        return 0.0
    return admin.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0] / 2**20


def room_check(admin: psycopg.Connection, *, name: str, params: dict, generate: bool) -> str:
    """Refuse (``NoRoom``) a run the data disk cannot hold; else say what was checked.

    What the run replaces counts as room: generating empties ``name`` and drops the pristine
    copy; restoring drops ``name`` and copies the pristine one back.
    """
    pristine = f"{name}_pristine"
    book_mb = MB_PER_COMPANY * params["companies"] * params["weeks"] / 104
    if generate:
        needed = GENERATE_FACTOR * book_mb + SPARE_MB
        needed -= _size_mb(admin, name) + _size_mb(admin, pristine)
    else:
        needed = book_mb + SPARE_MB - _size_mb(admin, name)
    try:
        directory = admin.execute("SHOW data_directory").fetchone()[0]
    except psycopg.Error:
        return "free disk not checked (data_directory not readable)"
    if not Path(directory).exists():
        return f"free disk not checked (PostgreSQL's {directory} is on another machine)"
    free = shutil.disk_usage(directory).free / 2**20
    what = "generate" if generate else "restore"
    if free < needed:
        raise NoRoom(
            f"refusing: to {what} the {params['companies']:,}-account book PostgreSQL needs "
            f"about {needed / 1024:.1f} GB free on the disk of {directory}, and it has "
            f"{free / 1024:.1f} GB; free some space or run a smaller book (--companies)"
        )
    return f"{free / 1024:.1f} GB free on {directory}, {max(needed, 0) / 1024:.1f} GB needed"


_PHASE = re.compile(r"^\s+([a-z][a-z +]+): ([\d.]+)s$")


def ensure(*, url: str, params: dict, env: dict, regenerate: bool, max_age_days: int, log) -> dict:
    """Make ``url`` hold the book ``params`` describes; returns what was done and how long."""
    name = db_name(url)
    pristine = f"{name}_pristine"
    pristine_url = _with_db(url, pristine)
    wanted = {**params, "generator": generator_version()}
    with _admin(url) as admin:
        marker = read_marker(pristine_url) if _exists(admin, pristine) else None
        fresh = False
        if marker and marker["params"] == wanted:
            generated = datetime.fromisoformat(marker["info"]["generated_at"])
            fresh = datetime.now(UTC) - generated <= timedelta(days=max_age_days)
        reuse = bool(marker and fresh and not regenerate)
        log(room_check(admin, name=name, params=params, generate=not reuse))
        if reuse:
            log(f"reusing the dataset generated {marker['info']['generated_at']} ({pristine})")
            started = datetime.now(UTC)
            if _exists(admin, name):
                _drop_connections(admin, name)
            _copy_database(admin, pristine, name)
            restored = (datetime.now(UTC) - started).total_seconds()
            log(f"restored {name} from {pristine} in {restored:.1f}s")
            if _migrate(env, log):
                log("new migrations applied; refreshing the pristine copy")
                _drop_connections(admin, name)
                _copy_database(admin, name, pristine)
            settled = settle(url, log)
            return {
                **marker["info"],
                "reused": True,
                "restore_seconds": restored,
                "vacuum_seconds": settled,
            }

        why = (
            "forced (--regenerate)"
            if regenerate
            else "none yet"
            if not marker
            else "different parameters or generator"
            if marker["params"] != wanted
            else f"older than {max_age_days} days"
        )
        log(f"generating the dataset: {why}")
        if not _exists(admin, name):
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _migrate(env, log)
        args = ["generate_load_data", "--reset"]
        args += ["--companies", str(params["companies"]), "--weeks", str(params["weeks"])]
        args += ["--seed", str(params["seed"])]
        if params.get("history"):
            args.append("--history")
        done = procs.manage(args, env=env, timeout=1800, echo=True)
        if not done.ok:
            raise RuntimeError(f"generate_load_data failed:\n{done.output[-3000:]}")
        phases = {}
        for line in done.output.splitlines():
            match = _PHASE.match(line)
            if match:
                phases[match.group(1)] = float(match.group(2))
        counts = _counts(url)
        info = {
            "generated_at": datetime.now(UTC).isoformat(),
            "seconds": done.seconds,
            "phases": phases,
            "max_rss_mb": done.max_rss_mb,
            "counts": counts,
        }
        _write_marker(url, wanted, info)
        info["vacuum_seconds"] = settle(url, log)
        _drop_connections(admin, name)
        _copy_database(admin, name, pristine)
        log(f"kept a pristine copy as {pristine}")
        return {**info, "reused": False}


def settle(url: str, log) -> float:
    """``VACUUM (ANALYZE)`` the book: the state autovacuum leaves it in a minute after the load.

    The load's last step rescored every account, rewriting each account's row (its stored sort
    keys) and snapshot: until a vacuum has run, the dashboard's index-only scans visit the
    table for every row. The ping table was loaded frozen, so the vacuum skips it.
    """
    started = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    seconds = (datetime.now(UTC) - started).total_seconds()
    log(f"vacuum analyze of the book: {seconds:.1f}s")
    return seconds


def _counts(url: str) -> dict:
    tables = {
        "companies": "accounts_company",
        "subscriptions": "accounts_subscription",
        "instances": "instances_instance",
        "pings": "instances_usageping",
        "monthly_usage": "instances_monthlyusage",
        "label_changes": "instances_labelchange",
    }
    with psycopg.connect(url) as conn:
        out = {
            key: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]
            for key, t in tables.items()
        }
        out["namespaces"] = conn.execute(
            "SELECT count(*) FROM instances_instance WHERE kind = 'saas'"
        ).fetchone()[0]
        out["database_mb"] = round(
            conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
        )
    return out


def var_dir() -> Path:
    path = procs.ROOT / "var" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path
