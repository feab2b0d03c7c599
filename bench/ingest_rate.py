"""Measure bulk ingest speed: full-size Service Ping files through ``manage.py ingest_pings``.

Writes N payload files built on GitLab's whole key tree (``build_payload(full_size=True)``:
~1,800 leaves, numbers in every leaf, ~79 kB of JSON) to a temporary folder, then times the real
command on them, and a second time on the same files (every ping a duplicate). Prints the
payload size in bytes, pings per second (best and median of --repeat runs: the bench's rows are
deleted between runs) and the CPU time per ping of the loader plus the database server, which,
unlike a wall-clock rate, does not depend on what else the machine is running.

    .venv/bin/python bench/ingest_rate.py --files 3000                     # SQLite (temp file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/up_ing_bench \\
        .venv/bin/python bench/ingest_rate.py --files 3000                 # PostgreSQL

The database is migrated first. Pings get fresh instance uuids on every invocation, and only
the bench's own rows are deleted. Score refreshes are queued (not run) as in production.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Shapes of every era: md5 only, md5 + sha256, sha256 only, and 17.5+ without counts.ci_builds.
VERSIONS = ("13.12.4-ee", "15.1.2-ee", "15.8.0-ee", "16.1.3-ee", "16.9.1-ee", "17.6.2-ee")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--pings-per-instance",
        type=int,
        default=10,
        help="weekly pings per instance (1 = every file a new instance, license and month)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs on the same files (the bench's rows are deleted in between); best and "
        "median are reported, as a shared machine makes single runs noisy",
    )
    parser.add_argument(
        "--threads-only",
        action="store_true",
        help="read files in threads instead of worker processes (for comparison)",
    )
    parser.add_argument("--gzip", action="store_true", help="write .json.gz files")
    parser.add_argument("--keep", action="store_true", help="keep the payload folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ingest_rate_"))
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret-" + "Zq8w" * 10)
    os.environ.setdefault("DEBUG", "0")  # DEBUG would record every query and slow everything
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_portal.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    _subscriptions()
    if args.threads_only:
        from instances.services import files as services

        services.PROCESS_POOL_FROM = sys.maxsize

    folder = workdir / "pings"
    run = uuidlib.uuid4().hex[:8]
    sizes = _write_payloads(
        folder, run=run, count=args.files, per_instance=args.pings_per_instance, gzip=args.gzip
    )
    print(
        f"database: {connection.vendor}; {args.files} files "
        f"({args.pings_per_instance} per instance), payload "
        f"{statistics.mean(sizes['json']):,.0f} bytes of JSON on average "
        f"(min {min(sizes['json']):,}, max {max(sizes['json']):,})"
        + (f", {statistics.mean(sizes['file']):,.0f} bytes gzipped" if args.gzip else "")
        + f"; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    options = ["--no-progress", "--batch-size", str(args.batch_size)]
    if args.workers:
        options += ["--workers", str(args.workers)]

    rates: dict[str, list[float]] = {"new pings": [], "duplicates": []}
    cpu: dict[str, list[float]] = {"new pings": [], "duplicates": []}
    for attempt in range(1, args.repeat + 1):
        if attempt > 1:
            _forget(run)
        for label in rates:
            cpu_before = _cpu_seconds()
            elapsed, summary = _timed_ingest(folder, options)
            used = _cpu_seconds() - cpu_before
            rates[label].append(args.files / elapsed)
            cpu[label].append(used * 1000 / args.files)
            print(
                f"run {attempt}, {label}: {args.files / elapsed:,.0f} pings/s, "
                f"{used * 1000 / args.files:.2f} ms CPU per ping — {summary}"
            )
    for label, values in rates.items():
        print(
            f"{label}: best {max(values):,.0f} pings/s, median {statistics.median(values):,.0f} "
            f"pings/s over {len(values)} run(s); CPU per ping (loader + database server) "
            f"median {statistics.median(cpu[label]):.2f} ms"
        )
    _forget(run)

    if args.keep:
        print(f"payloads kept in {folder}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU time of this process, its finished worker processes and its database backend.

    On a shared machine wall-clock rates depend on what else runs; CPU per ping does not.
    """
    import resource

    from django.db import connection

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    if connection.vendor == "postgresql":  # the server process doing this connection's work
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:  # a server on another machine: its CPU is not counted
            pass
    return total


def _timed_ingest(folder: Path, options: list[str]) -> tuple[float, str]:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    started = time.perf_counter()
    try:
        call_command("ingest_pings", str(folder), *options, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        print(f"ingest_pings failed: {exc}\n{out.getvalue()}")
        raise SystemExit(1) from exc
    return time.perf_counter() - started, out.getvalue().splitlines()[0]


def _forget(run: str) -> None:
    """Delete what this bench run stored (its instances are *.bench.example.com, its license
    hashes start with the run id), so the same files are new pings again."""
    from django.db.models import Q

    from instances.models import Instance, License

    Instance.objects.filter(hostname__endswith=f".{run}.bench.example.com").delete()
    License.objects.filter(Q(md5__startswith=run) | Q(sha256__startswith=run)).delete()


def _subscriptions() -> None:
    """A few accounts, so most pings map (instances, companies and monthly rows all move)."""
    from accounts.models import Company, Subscription

    for n in range(10):
        company, _ = Company.objects.get_or_create(
            crm_account_id=f"BENCH{n:04d}", defaults={"name": f"Bench {n}", "segment": "Growth"}
        )
        Subscription.objects.get_or_create(
            name=f"A-S9{n:07d}",
            defaults={
                "company": company,
                "plan": "ultimate",
                "licensed_seats": 500,
                "deployment": "self-managed",
            },
        )


def _write_payloads(
    folder: Path, *, run: str, count: int, per_instance: int, gzip: bool
) -> dict[str, list[int]]:
    import gzip as gz

    import orjson

    from instances.metrics import METRIC_NAMES
    from usage_portal.sampledata.payloads import build_payload

    folder.mkdir(parents=True)
    start = datetime.now(UTC) - timedelta(weeks=per_instance + 1)
    sizes: dict[str, list[int]] = {"json": [], "file": []}
    for n in range(count):
        instance, week = divmod(n, per_instance)
        version = VERSIONS[instance % len(VERSIONS)]
        md5 = f"{run}{instance:024d}"  # the run id first: _forget finds the bench's rows
        payload = build_payload(
            uuid=str(uuidlib.UUID(hex=md5)),
            hostname=f"gitlab-{instance}.{run}.bench.example.com",
            version=version,
            recorded_at=start + timedelta(weeks=week, minutes=instance % 600),
            license_md5=md5,
            license_sha256=f"{run}{instance:056d}",
            # Two in three send their subscription id; the rest stay unmapped.
            license_subscription_id=f"A-S9{instance % 10:07d}" if instance % 3 else None,
            licensed_users=500,
            licensee_company=f"Bench {instance % 10}",
            starts_at=date(2024, 1, 1),
            expires_at=date(2026, 1, 1),
            metrics={
                name: (instance * 7 + week * 3 + i) % 400
                for i, name in enumerate(name for name in METRIC_NAMES if name != "licensed_users")
            },
            full_size=True,
        )
        data = orjson.dumps(payload)
        sizes["json"].append(len(data))
        if gzip:
            data = gz.compress(data, 6)
        sizes["file"].append(len(data))
        path = folder / f"{instance // 100:04d}" / f"ping-{n:06d}.json{'.gz' if gzip else ''}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    return sizes


if __name__ == "__main__":
    main()
