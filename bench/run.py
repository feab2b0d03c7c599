"""``make bench`` / ``make bench-large``: build (or reuse) a book, measure everything, write
bench/results.json (5,000 accounts) or bench/results-large.json (50,000 accounts, ``--large``).

One run, in this order, all on 127.0.0.1 and all bounded in count and time:

1. dataset   — ``generate_load_data`` into the bench database, or a file copy of the pristine
               template a previous run left (``bench/dataset.py``); refused up front when the
               PostgreSQL data disk lacks room for the book;
2. pages     — every page in-process: median and p95 server time, query count, multiple of the
               floor page (``bench/pages.py``);
3. recompute — ``recompute_scores --all`` in one process, every company's inputs changed;
4. ingest    — ``ingest_pings`` over full-size payload files (``bench/ingest.py``);
5. exports   — every row's CSV and XLSX through gunicorn, streamed (``bench/exports.py``);
6. http      — ``POST /usage_data`` through gunicorn (the Procfile's ``web``) from concurrent
               clients, and the server's CPU per ping against the bulk path's;
7. e2e       — two Celery worker pools on Redis in separate processes (``ingest`` with beat;
               ``scoring`` + ``recompute``, two processes): ping -> score and label -> applied,
               the recompute fanned out to the scoring pool with pings timed meanwhile, then the
               pool's memory over thousands of tasks (``bench/e2e.py``).

Every figure is written as {"value", "unit", "target", "holds"} and printed as a table; the
targets of each book are in ``bench/targets.py``.
Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/usage_portal_bench,
``_large`` or ``_<companies>`` appended for other books), BENCH_REDIS_URL (default
redis://127.0.0.1:6379/13; the run empties that Redis database).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import dataset, procs, targets  # noqa: E402
from bench.report import Figure, Results  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/usage_portal_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
PHASES = ("pages", "recompute", "exports", "ingest", "http", "e2e", "fan_out", "soak")


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def bench_env(db_url: str, redis_url: str) -> dict:
    """The environment of every process of the run: production-like settings on the bench DB."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-only-not-a-secret-" + "Zq8w" * 10),
        "DEBUG": "0",
        "SECURE_COOKIES": "0",
        "STATIC_MANIFEST": "0",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "VAR_DIR": str(dataset.var_dir()),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DJANGO_SETTINGS_MODULE": "usage_portal.settings",
        "PYTHONUNBUFFERED": "1",
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }
    env.setdefault("DEMO_PASSWORD", "demo")
    env.pop("SCORING_SCHEME", None)
    return env


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--large",
        action="store_true",
        help="make bench-large: 50,000 accounts, 16 clients, its targets, results-large.json",
    )
    p.add_argument("--companies", type=int, default=None, help="default 5,000 (50,000 --large)")
    p.add_argument("--weeks", type=int, default=104)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--regenerate", action="store_true", help="build the dataset even if present")
    p.add_argument("--max-age-days", type=int, default=7, help="regenerate an older dataset")
    p.add_argument("--requests", type=int, default=30, help="timed requests per page")
    p.add_argument("--warmups", type=int, default=3)
    p.add_argument("--ingest-files", type=int, nargs=2, default=(2000, 10000), metavar=("N", "M"))
    p.add_argument("--http-pings", type=int, default=1000)
    p.add_argument("--http-clients", type=int, default=16)
    p.add_argument("--e2e-samples", type=int, default=20)
    p.add_argument("--soak-tasks", type=int, nargs=2, default=(2000, 10000), metavar=("N", "M"))
    p.add_argument("--skip", default="", help=f"comma-separated phases to skip: {PHASES}")
    p.add_argument("--profile-pages", action="store_true", help="pyinstrument the pages that miss")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke test of the bench")
    p.add_argument("--output", type=Path, default=None, help="default bench/results*.json")
    args = p.parse_args(argv)
    if args.companies is None:
        args.companies = 50_000 if args.large else 5000
    args.profile = "large" if args.large else "standard"
    if args.output is None:
        suffix = "-large" if args.large else "" if args.companies == 5000 else f"-{args.companies}"
        args.output = ROOT / "bench" / f"results{suffix}.json"
    if args.large:
        args.http_pings = max(args.http_pings, 3000)
    if args.quick:
        args.requests, args.warmups = 5, 1
        args.ingest_files, args.http_pings, args.e2e_samples = (200, 1000), 100, 5
        args.soak_tasks = (200, 1000)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s) to skip: {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    targets.use(args.profile)
    suffix = "" if args.companies == 5000 else "_large" if args.large else f"_{args.companies}"
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB + suffix)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    if "bench" not in dataset.db_name(db_url):
        # The dataset step replaces everything in this database: never point it at real data.
        print(
            f"refusing: {dataset.db_name(db_url)!r} does not look like a bench database "
            "(its name must contain 'bench')",
            file=sys.stderr,
        )
        return 2
    env = bench_env(db_url, redis_url)
    work = dataset.var_dir()
    results = Results()
    results.meta = _meta(args, db_url, redis_url)
    timings: dict[str, float] = {}

    def phase(name: str):
        log(f"── {name} " + "─" * (60 - len(name)))
        return time.perf_counter()

    t = phase("dataset")
    params = {"companies": args.companies, "weeks": args.weeks, "seed": args.seed}
    try:
        info = dataset.ensure(
            url=db_url,
            params=params,
            env=env,
            regenerate=args.regenerate,
            max_age_days=args.max_age_days,
            log=log,
        )
    except dataset.NoRoom as refused:
        print(str(refused), file=sys.stderr)
        return 2
    results.meta["dataset"] = info
    _dataset_figures(results, info)
    timings["dataset"] = time.perf_counter() - t

    os.environ.update(env)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    _flush_redis(redis_url)

    services: list[procs.Service] = []
    try:
        if "pages" not in args.skip:
            from bench import pages

            t = phase("pages")
            pages.measure(
                results,
                requests=args.requests,
                warmups=args.warmups,
                profile_dir=work / "profiles" if args.profile_pages else None,
                log=log,
            )
            timings["pages"] = time.perf_counter() - t
        if "recompute" not in args.skip:
            t = phase("recompute")
            recompute(results, env=env)
            timings["recompute"] = time.perf_counter() - t
        bulk_cpu = None
        if "ingest" not in args.skip:
            from bench import ingest

            t = phase("ingest (bulk)")
            folder = work / "payloads"
            shutil.rmtree(folder, ignore_errors=True)
            try:
                bulk_cpu = ingest.bulk(
                    results, env=env, work=folder, counts=tuple(args.ingest_files), log=log
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            timings["ingest"] = time.perf_counter() - t
        web = token = None
        if not {"exports", "http", "e2e", "fan_out"} <= args.skip:
            from bench import ingest

            web = ingest.Gunicorn(env={**env, "LOG_LEVEL": "WARNING"}, log=work / "gunicorn.log")
            services.append(web)
            web.start_and_wait()
            token = ingest.ingest_token()
        if "exports" not in args.skip:
            from bench import exports

            t = phase("exports (streamed, through gunicorn)")
            exports.measure(results, web=web, log=log)
            timings["exports"] = time.perf_counter() - t
        if "http" not in args.skip:
            t = phase("ingest (HTTP)")
            ingest.http(
                results,
                web=web,
                token=token,
                count=args.http_pings,
                clients=args.http_clients,
                offset=sum(args.ingest_files),
                bulk_cpu_ms=bulk_cpu,
                log=log,
            )
            timings["http"] = time.perf_counter() - t
        if not {"e2e", "fan_out", "soak"} <= args.skip:
            from bench import e2e

            t = phase("end to end (worker pools)")
            _flush_redis(redis_url)  # the ingest phases queued refreshes no worker ran
            pools = e2e.pools(env={**env, "LOG_LEVEL": "INFO"}, work=work)
            services.extend(pools.values())
            for pool in pools.values():
                pool.start(ready="ready.", timeout=120)
            time.sleep(2)
            if "e2e" not in args.skip:
                e2e.ping_to_score(results, web=web, token=token, samples=args.e2e_samples, log=log)
                e2e.label_to_applied(results, samples=args.e2e_samples, log=log)
            if "fan_out" not in args.skip:
                e2e.fan_out(
                    results, env=env, web=web, token=token, samples=args.e2e_samples, log=log
                )
            if "soak" not in args.skip:
                small, large = args.soak_tasks
                # Bounded: whatever is left of the run's budget (at least a minute).
                budget = _budget_seconds()
                left = budget - (time.perf_counter() - started) - 30
                e2e.soak(
                    results,
                    worker=pools["scoring"],
                    total=large,
                    checkpoint=small,
                    timeout=max(60.0, min(600.0, left)),
                    log=log,
                )
            timings["e2e"] = time.perf_counter() - t
        _service_memory(results, services)
    finally:
        for service in reversed(services):
            service.stop()
        from django.db import connections

        connections.close_all()

    total = time.perf_counter() - started
    timings["total"] = total
    results.meta["phase_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    results.meta["finished_at"] = datetime.now(UTC).isoformat()
    results.meta["machine"]["load_average_at_end"] = os.getloadavg()
    results.meta["machine"]["python_loop_ms_at_end"] = python_loop_ms()
    note = "dataset reused" if info.get("reused") else "dataset generated in this run"
    results.add(
        "memory",
        "bench process (pages in-process)",
        "peak RSS",
        Figure(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB"),
    )
    command = "make bench-large" if args.large else "make bench"
    results.add(
        "run", command, "wall time", Figure(total, "s", targets.target("run.seconds"), note=note)
    )
    args.output.write_text("")  # fail early on an unwritable path, before the table
    results.write(args.output)
    table = results.table()
    (work / f"{args.output.stem}.txt").write_text(table + "\n")
    print(table)
    log(f"results written to {args.output} in {total / 60:.1f} min")
    return 0


def _budget_seconds() -> float:
    return float(targets.target("run.seconds").split()[-1])


def _service_memory(results: Results, services: list) -> None:
    """Peak RSS of every process of every long-running service of the run (``VmHWM``)."""
    for service in services:
        tree = service.tree()
        if not tree:
            continue
        biggest = max(mem["hwm_mb"] for mem in tree.values())
        results.add(
            "memory",
            service.name,
            f"peak RSS of largest process ({len(tree)} processes)",
            Figure(biggest, "MB", targets.target("memory.peak RSS")),
        )


# --------------------------------------------------------------------------------------------------


def recompute(results: Results, *, env: dict) -> None:
    """``recompute_scores --all`` with every company's inputs changed (each one rescored and a
    snapshot written: the daily case), then with nothing changed; and a 1,000-company run to
    show memory does not grow with the book."""
    from django.db import connection

    from accounts.models import Company

    area, subject = "recompute", "recompute_scores --all"
    wanted = {
        "seconds": ("s", targets.target("recompute.seconds")),
        "companies/s": ("companies/s", targets.target("recompute.companies/s")),
    }
    with connection.cursor() as cursor:
        cursor.execute("UPDATE scoring_scoresnapshot SET inputs_hash = '' WHERE is_current")
    done = procs.manage(["recompute_scores", "--all"], env=env, timeout=900)
    match = procs.RECOMPUTED.search(done.output)
    if not done.ok or not match:
        why = f"exit {done.returncode}: {done.output.strip()[-200:]}"
        results.missing(area, subject, wanted, why)
        return
    count, seconds = int(match[1]), float(match[2])
    log(f"recompute_scores --all: {count} companies in {seconds:.1f}s ({count / seconds:.0f}/s)")
    results.measured(area, subject, wanted, {"seconds": seconds, "companies/s": count / seconds})
    results.add(area, subject, "companies", Figure(count, "companies"))
    results.add(
        "memory",
        "recompute_scores",
        f"peak RSS, --all ({count:,})",
        Figure(done.max_rss_mb, "MB", targets.target("memory.peak RSS")),
    )
    again = procs.manage(["recompute_scores", "--all"], env=env, timeout=900)
    match = procs.RECOMPUTED.search(again.output)
    if again.ok and match:
        results.add(
            area,
            "recompute_scores --all, nothing changed",
            "seconds",
            Figure(float(match[2]), "s"),
        )
    ids = list(Company.objects.order_by("id").values_list("id", flat=True)[:1000])
    small = procs.manage(
        ["recompute_scores", *[a for i in ids for a in ("--company", str(i))]],
        env=env,
        timeout=600,
    )
    if small.ok:
        results.add(
            "memory",
            "recompute_scores",
            f"peak RSS, --company x {len(ids):,}",
            Figure(small.max_rss_mb, "MB", targets.target("memory.peak RSS")),
        )
        results.add(
            "memory",
            "recompute_scores",
            f"growth {len(ids):,} -> {count:,} companies",
            Figure(done.max_rss_mb / small.max_rss_mb, "x", targets.target("memory.growth")),
        )


def _dataset_figures(results: Results, info: dict) -> None:
    area = "dataset"
    counts = info.get("counts", {})
    for key in ("companies", "instances", "namespaces", "pings", "monthly_usage"):
        if key in counts:
            results.add(area, "size", key, Figure(counts[key], key.replace("_", " ")))
    if "database_mb" in counts:
        results.add(area, "size", "database", Figure(counts["database_mb"], "MB"))
    subject = "generate_load_data" + (" (earlier run, reused)" if info.get("reused") else "")
    results.add(
        area, subject, "total", Figure(info.get("seconds"), "s", targets.target("dataset.seconds"))
    )
    for name, seconds in info.get("phases", {}).items():
        results.add(area, subject, name, Figure(seconds, "s"))
    if info.get("max_rss_mb"):
        results.add(area, subject, "peak RSS", Figure(info["max_rss_mb"], "MB"))
    if info.get("reused"):
        results.add(
            area, "restore from pristine copy", "seconds", Figure(info["restore_seconds"], "s")
        )


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def python_loop_ms() -> float:
    """The machine's speed at one fixed pure-Python task (ms, the best of five), at the start
    and the end of a run: two machines of the same kind gave every absolute figure about three
    times apart (the 2026-12-07 one took 200-340 ms here, varying from minute to minute), and
    a figure is read against the speed it was taken at."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        sum(range(10_000_000))
        best = min(best, (time.perf_counter() - t0) * 1000)
    return round(best, 1)


def _meta(args, db_url: str, redis_url: str) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "started_at": datetime.now(UTC).isoformat(),
        "git": git("rev-parse", "--short", "HEAD")
        + (" (dirty)" if git("status", "--porcelain") else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
            "python_loop_ms_at_start": python_loop_ms(),
        },
        "database": dataset.db_name(db_url),
        "redis": redis_url,
        "args": {
            k: (sorted(v) if isinstance(v, set) else v)
            for k, v in vars(args).items()
            if k != "output"
        },
        "notes": [
            "server time measured in-process (Django test Client, full middleware stack)",
            "targets are the issue's; figures without a target are context (holds: null)",
            "x floor: a page's median over the floor page's median, the floor timed between "
            "that page's own requests (same load, same moment)",
            "C360 pages are timed as CSMs load them (after 3 warm-up views, so the account's "
            "cached parts are there); 'C360 cold' pages are the first view after the account's "
            "data changed (its version moved before every request)",
            "machine shared with other work: see load_average_at_start",
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
