"""End to end with a real Celery worker (Redis broker, embedded beat): how long until a posted
ping shows in its company's score, and until a label change with no delay is applied; then the
worker's memory over thousands of real tasks.

Latencies are measured one sample at a time (nothing else queued), from just before the POST (or
the label change request) to the moment this process sees the new current snapshot (or the
applied change) in the database, polling every 10 ms.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import procs
from .ingest import Gunicorn, instance_rows, payloads, post_all
from .report import Figure, Results, percentile
from .targets import target

POLL = 0.01


class Worker(procs.Service):
    """A Celery worker pool on some queues (``beat``: with the beat scheduler embedded)."""

    def __init__(
        self,
        *,
        env: dict,
        log: Path,
        concurrency: int = 2,
        queues: str = "ingest,scoring,recompute",
        beat: bool = True,
        name: str = "celery worker",
    ) -> None:
        cmd = [
            procs.PYTHON,
            "-m",
            "celery",
            "-A",
            "usage_portal",
            "worker",
            *(["-B"] if beat else []),
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            f"{queues.split(',')[0]}@%h",
        ]
        env = {**env, "LABEL_SWEEP_SECONDS": "2", "CELERY_TASK_ALWAYS_EAGER": "0"}
        super().__init__(name, cmd, env=env, log=log)

    def succeeded(self) -> list[float]:
        """Run times (s) of every task the worker reports as succeeded so far."""
        text = self.log.read_text(errors="replace")
        return [float(s) for s in re.findall(r"succeeded in ([\d.]+)s", text)]


def pools(*, env: dict, work: Path) -> dict[str, Worker]:
    """The bench's worker pools, as a company past one machine would split them: ingest
    housekeeping (with beat) in one process, scoring and the recompute's chunks in two."""
    return {
        "ingest": Worker(
            env=env,
            log=work / "worker-ingest.log",
            concurrency=1,
            queues="ingest",
            beat=True,
            name="celery worker pool 'ingest' (1 process, beat)",
        ),
        "scoring": Worker(
            env=env,
            log=work / "worker-scoring.log",
            concurrency=2,
            queues="scoring,recompute",
            beat=False,
            name="celery worker pool 'scoring' (2 processes)",
        ),
    }


def _wait_for(check, timeout: float) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check():
            return time.perf_counter() - t0
        time.sleep(POLL)
    return None


def _latency_figures(results, subject, samples, timeouts, target_p95: str) -> None:
    area = "end to end"
    targets = {"p50": ("s", None), "p95": ("s", target_p95)}
    if not samples:
        results.missing(area, subject, targets, f"{timeouts} sample(s) timed out")
        return
    latencies = {"p50": statistics.median(samples), "p95": percentile(samples, 95)}
    results.measured(area, subject, targets, latencies)
    results.add(area, subject, "timed out", Figure(timeouts, "samples", "<= 0"))


def _scored_companies(samples: int, *, skip: int = 0) -> list[dict]:
    """One Production instance each of ``samples`` companies spread over the book."""
    rows, seen = [], set()
    for row in instance_rows(subscription__isnull=False, instance_type="production"):
        if row["company_id"] not in seen:
            seen.add(row["company_id"])
            rows.append(row)
    step = max(len(rows) // samples, 1)
    return rows[skip % step :: step][:samples]


def _ping_latencies(web: Gunicorn, token: str, chosen: list[dict], *, keep_going, log):
    """Post each chosen instance's next ping, one at a time, and time until its company's
    refresh has run: a new current snapshot, and no pending refresh left for the company (a
    recompute running meanwhile writes snapshots too, but settles no ping's refresh)."""
    from scoring.models import PendingRefresh, ScoreSnapshot

    base = datetime.now(UTC).replace(microsecond=0)
    latencies, timeouts = [], 0
    for inst, body in payloads(chosen, base=base, step=timedelta(milliseconds=-1)):
        if not keep_going():
            break
        company_id = inst["company_id"]

        def current(company_id=company_id):
            return (
                ScoreSnapshot.objects.filter(company_id=company_id, is_current=True)
                .values_list("id", flat=True)
                .first()
            )

        def refreshed(before, older, company_id=company_id, current=current):
            # The ping's own pending refresh settled (rows left by earlier phases may wait for
            # the sweep: they are not this ping's).
            return (
                current() != before
                and not PendingRefresh.objects.filter(company_id=company_id, id__gt=older).exists()
            )

        before = current()
        older = (
            PendingRefresh.objects.filter(company_id=company_id)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
            or 0
        )
        t0 = time.perf_counter()
        outcome, _ = post_all(f"{web.url}/usage_data", token, [body], clients=1)
        if outcome[0][0] not in (200, 201):
            log(f"ping for company {company_id} refused: HTTP {outcome[0][0]}")
            timeouts += 1
            continue
        if _wait_for(lambda before=before, older=older: refreshed(before, older), 20) is None:
            timeouts += 1
        else:
            latencies.append(time.perf_counter() - t0)
    return latencies, timeouts


def ping_to_score(results: Results, *, web: Gunicorn, token: str, samples: int, log) -> None:
    chosen = _scored_companies(samples)
    latencies, timeouts = _ping_latencies(web, token, chosen, keep_going=lambda: True, log=log)
    subject = f"ping posted -> company score updated ({len(chosen)} companies)"
    _latency_figures(results, subject, latencies, timeouts, target("e2e.ping to score p95"))
    if latencies:
        log(
            f"ping -> score: p50 {statistics.median(latencies):.2f}s, "
            f"p95 {percentile(latencies, 95):.2f}s, {timeouts} timed out"
        )


def fan_out(results: Results, *, env: dict, web: Gunicorn, token: str, samples: int, log) -> None:
    """``recompute_scores --all --fan-out`` with every company's inputs changed (one task per
    chunk, run by the scoring pool's two processes), pings posted and timed to their score
    meanwhile; then again with nothing changed."""
    from django.db import connection

    area, subject = "recompute", "recompute_scores --all --fan-out (scoring pool, 2 processes)"
    wanted = {"seconds": ("s", target("fan_out.seconds")), "companies/s": ("companies/s", None)}
    with connection.cursor() as cursor:
        cursor.execute("UPDATE scoring_scoresnapshot SET inputs_hash = '' WHERE is_current")
    done: dict = {}

    def run() -> None:
        command = ["recompute_scores", "--all", "--fan-out"]
        done["result"] = procs.manage(command, env=env, timeout=900)

    runner = threading.Thread(target=run)
    runner.start()
    # Many more companies than a run can sample: the pings keep coming until the run ends.
    chosen = _scored_companies(max(samples * 5, 100), skip=1)
    latencies, timeouts = _ping_latencies(web, token, chosen, keep_going=runner.is_alive, log=log)
    runner.join()
    result = done["result"]
    match = procs.RECOMPUTED.search(result.output)
    if not result.ok or not match:
        why = f"exit {result.returncode}: {result.output.strip()[-200:]}"
        results.missing(area, subject, wanted, why)
        return
    count, seconds = int(match[1]), float(match[2])
    log(f"fanned-out recompute: {count} companies in {seconds:.1f}s ({count / seconds:.0f}/s)")
    results.measured(area, subject, wanted, {"seconds": seconds, "companies/s": count / seconds})
    during = "ping posted -> company score updated, during the fanned-out recompute"
    _latency_figures(results, during, latencies, timeouts, target("fan_out.ping to score p95"))
    if latencies:
        log(
            f"ping -> score during the recompute: {len(latencies)} samples, p50 "
            f"{statistics.median(latencies):.2f}s, p95 {percentile(latencies, 95):.2f}s, "
            f"{timeouts} timed out"
        )
    again = procs.manage(["recompute_scores", "--all", "--fan-out"], env=env, timeout=900)
    match = procs.RECOMPUTED.search(again.output)
    unchanged = f"{subject}, nothing changed"
    if again.ok and match:
        results.add(
            area,
            unchanged,
            "seconds",
            Figure(float(match[2]), "s", target("fan_out.unchanged seconds")),
        )
    else:
        results.missing(
            area, unchanged, {"seconds": ("s", target("fan_out.unchanged seconds"))}, "failed"
        )


def label_to_applied(results: Results, *, samples: int, log) -> None:
    from django.contrib.auth import get_user_model

    from instances.labels import label_change_request
    from instances.models import Instance, LabelChange

    ops = get_user_model().objects.get(username="ops")
    candidates = (
        Instance.objects.filter(instance_type="unknown", company__isnull=False)
        .exclude(label_changes__status="pending")
        .order_by("id")
    )
    picked, seen = [], set()
    for inst in candidates[: samples * 20]:
        if inst.company_id not in seen:
            seen.add(inst.company_id)
            picked.append(inst)
        if len(picked) == samples:
            break
    latencies, timeouts = [], 0
    for inst in picked:
        t0 = time.perf_counter()
        change = label_change_request(
            instance=inst,
            field="instance_type",
            value="non_production",
            by=ops,
            delay=timedelta(0),
        )

        def applied(pk=change.pk):
            return LabelChange.objects.filter(pk=pk, status="applied").exists()

        if _wait_for(applied, 20) is None:
            timeouts += 1
        else:
            latencies.append(time.perf_counter() - t0)
    subject = f"label change, delay 0 -> applied ({len(picked)} instances)"
    _latency_figures(results, subject, latencies, timeouts, None)
    if latencies:
        log(
            f"label -> applied: p50 {statistics.median(latencies):.2f}s, "
            f"p95 {percentile(latencies, 95):.2f}s, {timeouts} timed out"
        )


def soak(
    results: Results, *, worker: Worker, total: int, checkpoint: int, timeout: float, log
) -> None:
    """``total`` real score refreshes (one company each) through the worker; its memory at
    ``checkpoint`` tasks and at the end."""
    from accounts.models import Company
    from scoring.tasks import refresh_companies

    ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    already = len(worker.succeeded())
    t0 = time.perf_counter()
    with refresh_companies.app.producer_or_acquire() as producer:  # one connection for all
        for n in range(total):
            refresh_companies.apply_async(([ids[n % len(ids)]], "bench soak"), producer=producer)
    log(f"queued {total:,} refresh tasks in {time.perf_counter() - t0:.1f}s")
    peaks: dict[int, float] = {}
    marks: dict[int, tuple[float, float, float]] = {}
    started = time.perf_counter()
    done = 0
    while time.perf_counter() - started < timeout:
        tree = worker.tree()
        for pid, mem in tree.items():
            peaks[pid] = max(peaks.get(pid, 0.0), mem["hwm_mb"])
        done = len(worker.succeeded()) - already
        total_rss = sum(m["rss_mb"] for m in tree.values())
        for mark in (checkpoint, total):
            if done >= mark and mark not in marks:
                marks[mark] = (max(peaks.values()), total_rss, time.perf_counter() - started)
                log(
                    f"after {mark:,} tasks: largest process peak {marks[mark][0]:.0f} MB, "
                    f"worker total RSS {total_rss:.0f} MB"
                )
        if done >= total:
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    subject = "celery worker pool 'scoring' (2 processes), score refresh tasks"
    for mark in (checkpoint, total):
        name = f"peak RSS of largest process, {mark:,} tasks"
        if mark in marks:
            results.add(
                "memory", subject, name, Figure(marks[mark][0], "MB", target("memory.peak RSS"))
            )
            results.add(
                "memory",
                subject,
                f"total RSS of worker processes, {mark:,} tasks",
                Figure(marks[mark][1], "MB"),
            )
        else:
            results.missing(
                "memory",
                subject,
                {name: ("MB", target("memory.peak RSS"))},
                f"only {done:,} tasks in {timeout}s",
            )
    if checkpoint in marks and total in marks:
        results.add(
            "memory",
            subject,
            f"growth {checkpoint:,} -> {total:,} tasks",
            Figure(marks[total][0] / marks[checkpoint][0], "x", target("memory.growth")),
        )
    runtimes = worker.succeeded()[already:]
    if runtimes:
        results.add(
            "end to end",
            "worker throughput (score refresh, 1 company per task)",
            "tasks/s",
            Figure(len(runtimes) / elapsed, "tasks/s"),
        )
        results.add(
            "end to end",
            "worker throughput (score refresh, 1 company per task)",
            "median task time",
            Figure(statistics.median(runtimes) * 1000, "ms"),
        )
