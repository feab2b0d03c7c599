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
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import procs
from .ingest import Gunicorn, instance_rows, payloads, post_all
from .report import Figure, Results, percentile

POLL = 0.01


class Worker(procs.Service):
    def __init__(self, *, env: dict, log: Path, concurrency: int = 2) -> None:
        cmd = [
            procs.PYTHON,
            "-m",
            "celery",
            "-A",
            "usage_portal",
            "worker",
            "-B",
            "--queues",
            "ingest,scoring",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        env = {**env, "LABEL_SWEEP_SECONDS": "2", "CELERY_TASK_ALWAYS_EAGER": "0"}
        super().__init__("celery worker", cmd, env=env, log=log)

    def succeeded(self) -> list[float]:
        """Run times (s) of every task the worker reports as succeeded so far."""
        text = self.log.read_text(errors="replace")
        return [float(s) for s in re.findall(r"succeeded in ([\d.]+)s", text)]


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


def ping_to_score(results: Results, *, web: Gunicorn, token: str, samples: int, log) -> None:
    from scoring.models import ScoreSnapshot

    rows, seen = [], set()
    for row in instance_rows(subscription__isnull=False, instance_type="production"):
        if row["company_id"] not in seen:
            seen.add(row["company_id"])
            rows.append(row)
    step = max(len(rows) // samples, 1)
    chosen = rows[::step][:samples]
    base = datetime.now(UTC).replace(microsecond=0)
    bodies = list(payloads(chosen, base=base, step=timedelta(milliseconds=-1)))
    latencies, timeouts = [], 0
    for inst, body in bodies:
        company_id = inst["company_id"]

        def current(company_id=company_id):
            return (
                ScoreSnapshot.objects.filter(company_id=company_id, is_current=True)
                .values_list("id", flat=True)
                .first()
            )

        before = current()
        t0 = time.perf_counter()
        outcome, _ = post_all(f"{web.url}/usage_data", token, [body], clients=1)
        if outcome[0][0] not in (200, 201):
            log(f"ping for company {company_id} refused: HTTP {outcome[0][0]}")
            timeouts += 1
            continue
        waited = _wait_for(lambda before=before, current=current: current() != before, 20)
        if waited is None:
            timeouts += 1
        else:
            latencies.append(time.perf_counter() - t0)
    subject = f"ping posted -> company score updated ({len(bodies)} companies)"
    _latency_figures(results, subject, latencies, timeouts, "<= 2")
    if latencies:
        log(
            f"ping -> score: p50 {statistics.median(latencies):.2f}s, "
            f"p95 {percentile(latencies, 95):.2f}s, {timeouts} timed out"
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
    subject = "celery worker (concurrency 2), score refresh tasks"
    for mark in (checkpoint, total):
        name = f"peak RSS of largest process, {mark:,} tasks"
        if mark in marks:
            results.add("memory", subject, name, Figure(marks[mark][0], "MB", "<= 300"))
            results.add(
                "memory",
                subject,
                f"total RSS of worker processes, {mark:,} tasks",
                Figure(marks[mark][1], "MB"),
            )
        else:
            results.missing(
                "memory", subject, {name: ("MB", "<= 300")}, f"only {done:,} tasks in {timeout}s"
            )
    if checkpoint in marks and total in marks:
        results.add(
            "memory",
            subject,
            f"growth {checkpoint:,} -> {total:,} tasks",
            Figure(marks[total][0] / marks[checkpoint][0], "x", "<= 1.25"),
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
