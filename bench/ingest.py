"""Ingest throughput: full-size payload files through ``ingest_pings``, and ``POST /usage_data``.

Payloads are each book instance's next weekly ping (its latest metrics, recorded "now"), built by
``instances.payloads.build_payload(full_size=True)``: GitLab's whole ~1,800-leaf key tree, about
80 KB of JSON. Every payload of a run names a distinct (instance, recorded_at), so nothing is a
duplicate. The HTTP phase runs the Procfile's ``web`` command (gunicorn) on 127.0.0.1 and posts
from a bounded number of client threads.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from . import procs
from .report import Figure, Results, percentile
from .targets import target


def instance_rows(**filters) -> list[dict]:
    """Self-managed book instances that have pinged, with what a payload of theirs needs."""
    from instances.models import Instance

    return list(
        Instance.objects.filter(kind="self-managed", last_ping_at__isnull=False, **filters)
        .exclude(version="")
        .order_by("id")
        .values(
            "id",
            "company_id",
            "uuid",
            "hostname",
            "version",
            "last_ping_at",
            "license__md5",
            "license__sha256",
            "subscription__plan",
            "company__name",
        )
    )


def payloads(chosen: list[dict], *, base: datetime, step: timedelta = timedelta(seconds=-1)):
    """(instance row, full-size payload bytes) for each instance: its next ping, recorded at
    ``base + n * step`` with the metrics of its latest ping."""
    from instances.metrics import METRIC_NAMES
    from instances.models import UsagePing
    from usage_portal.sampledata.payloads import build_payload

    latest = {
        row["instance_id"]: row
        for row in UsagePing.objects.filter(
            instance_id__in={i["id"] for i in chosen},
            recorded_at__in={i["last_ping_at"] for i in chosen},
        ).values("instance_id", "recorded_at", "license_subscription_id", *METRIC_NAMES)
    }
    for n, inst in enumerate(chosen):
        ping = latest.get(inst["id"], {})
        metrics = {name: ping.get(name) for name in METRIC_NAMES if name != "licensed_users"}
        body = build_payload(
            uuid=inst["uuid"],
            hostname=inst["hostname"],
            version=inst["version"],
            recorded_at=base + n * step,
            license_md5=inst["license__md5"],
            license_sha256=inst["license__sha256"],
            license_subscription_id=ping.get("license_subscription_id") or None,
            license_plan=inst["subscription__plan"] or "ultimate",
            licensed_users=ping.get("licensed_users"),
            licensee_company=inst["company__name"],
            starts_at=None,
            expires_at=None,
            metrics=metrics,
            full_size=True,
        )
        yield inst, orjson.dumps(body)


def book_payloads(count: int, *, offset: int, base: datetime):
    """``count`` payloads for book instances ``offset``.. (wrapping around), each distinct."""
    rows = instance_rows()
    chosen = [rows[(offset + n) % len(rows)] for n in range(count)]
    return payloads(chosen, base=base - timedelta(seconds=offset))


def write_files(folder: Path, count: int, *, offset: int, base: datetime) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for n, (_, body) in enumerate(book_payloads(count, offset=offset, base=base)):
        (folder / f"ping-{n:06d}.json").write_bytes(body)
        size += len(body)
    return size


_SUMMARY = re.compile(r"(\d+) file\(s\) in ([\d.]+)s .*?: (\d+) accepted")


def bulk(results: Results, *, env: dict, work: Path, counts: tuple[int, int], log) -> float | None:
    """ingest_pings over ``counts[0]`` files (throughput, peak RSS), then ``counts[1]`` (RSS).

    Returns the bulk path's CPU time per ping (ms), what the HTTP path is compared with: the
    second run's CPU less the first's over the pings between them, so the command's start-up
    (importing Django, its process pool) is not spread over the pings."""
    area = "ingest"
    targets = {"pings/s": ("pings/s", target("bulk.pings/s"))}
    cpu: dict[int, tuple[float, int]] = {}
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    peaks = {}
    for n, count in enumerate(counts):
        folder = work / f"files-{count}"
        t0 = time.perf_counter()
        size = write_files(folder, count, offset=sum(counts[:n]), base=base)
        log(
            f"wrote {count:,} full-size payload files ({size / count / 1024:.0f} KB each) "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        done = procs.manage(["ingest_pings", str(folder), "--no-progress"], env=env, timeout=900)
        subject = f"ingest_pings, {count:,} full-size files"
        if "Unknown command" in done.output:
            results.missing(area, subject, targets, "not built yet")
            return None
        match = _SUMMARY.search(done.output)
        if not done.ok or not match:
            why = f"exit {done.returncode}: {done.output.strip().splitlines()[-1:]}"
            results.missing(area, subject, targets, why)
            log(done.output[-2000:])
            continue
        files, seconds, accepted = int(match[1]), float(match[2]), int(match[3])
        log(done.output.strip().splitlines()[0])
        if n == 0:
            results.measured(area, subject, targets, {"pings/s": accepted / seconds})
            results.add(
                area,
                subject,
                "pings/s incl. process start",
                Figure(accepted / done.seconds, "pings/s"),
            )
            results.add(area, subject, "accepted", Figure(accepted, "pings"))
        cpu[count] = (done.cpu_seconds, accepted)
        peaks[count] = done.max_rss_mb
        results.add(
            "memory",
            "ingest_pings",
            f"peak RSS, {count:,} files",
            Figure(done.max_rss_mb, "MB", target("memory.peak RSS")),
        )
        if files != accepted:
            log(f"note: {files - accepted} of {files} files were not accepted")
    if len(peaks) == 2:
        small, large = (peaks[c] for c in counts)
        results.add(
            "memory",
            "ingest_pings",
            f"growth {counts[0]:,} -> {counts[1]:,} files",
            Figure(
                large / small,
                "x",
                target("memory.growth"),
                note="flat: peak RSS barely grows with input",
            ),
        )
    if len(cpu) < 2:
        return None
    (cpu_small, small), (cpu_large, large) = (cpu[c] for c in counts)
    if large <= small:
        return None
    cpu_ms = (cpu_large - cpu_small) / (large - small) * 1000
    results.add(
        area,
        f"ingest_pings, {counts[0]:,} full-size files",
        "CPU per ping (marginal)",
        Figure(cpu_ms, "ms", note=f"CPU of {counts[1]:,} files less {counts[0]:,}'s"),
    )
    return cpu_ms


class Gunicorn(procs.Service):
    """The Procfile's ``web`` command, on a free loopback port."""

    def __init__(self, *, env: dict, log: Path) -> None:
        self.port = procs.free_port()
        web = _procfile_command("web")
        env = {**env, "BIND": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "2"}
        super().__init__("gunicorn", ["bash", "-c", f"exec {web}"], env=env, log=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self) -> None:
        self.start(ready="Listening at", timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.log.read_text(errors="replace").count("Booting worker") >= 2:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # workers import the app lazily on their first request; let them settle


def _procfile_command(name: str) -> str:
    for line in (procs.ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise RuntimeError(f"no {name!r} process in the Procfile")


def post_all(url: str, token: str, bodies: list[bytes], *, clients: int) -> tuple[list, float]:
    """POST every body with ``clients`` threads; ((status, seconds) per request, wall time)."""
    import requests

    lock = threading.Lock()
    queue = list(reversed(bodies))
    out: list[tuple[int, float]] = []

    def client() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            t0 = time.perf_counter()
            try:
                status = session.post(url, data=body, headers=headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            elapsed = time.perf_counter() - t0
            with lock:
                out.append((status, elapsed))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, time.perf_counter() - t0


def ingest_token() -> str:
    from instances.services.tokens import ingest_token_create

    _, secret = ingest_token_create(name="bench")
    return secret


def http(
    results: Results,
    *,
    web: Gunicorn,
    token: str,
    count: int,
    clients: int,
    offset,
    bulk_cpu_ms: float | None,
    log,
):
    """``count`` pings from ``clients`` threads: throughput, latency, and the server's CPU time
    per ping (every gunicorn process, workers restarted on the way included) against the bulk
    path's."""
    area, subject = "ingest", f"POST /usage_data via gunicorn, {clients} clients"
    targets = {"pings/s": ("pings/s", target("http.pings/s")), "p95": ("ms", target("http.p95"))}
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    bodies = [body for _, body in book_payloads(count + 2 * clients, offset=offset, base=base)]
    warm, bodies = bodies[: 2 * clients], bodies[2 * clients :]
    post_all(f"{web.url}/usage_data", token, warm, clients=clients)
    cpu_before = web.cpu_seconds()
    outcomes, wall = post_all(f"{web.url}/usage_data", token, bodies, clients=clients)
    server_cpu = web.cpu_seconds() - cpu_before
    ok = [s for status, s in outcomes if status in (200, 201)]
    failed = len(outcomes) - len(ok)
    if failed == len(outcomes):
        statuses = sorted({status for status, _ in outcomes})
        results.missing(area, subject, targets, f"every request failed (HTTP {statuses})")
        return
    latencies = [s * 1000 for s in ok]
    figures = {"pings/s": len(ok) / wall, "p95": percentile(latencies, 95)}
    results.measured(area, subject, targets, figures)
    results.add(area, subject, "median", Figure(percentile(latencies, 50), "ms"))
    results.add(area, subject, "failed requests", Figure(failed, "requests", target("http.failed")))
    per_ping = server_cpu / len(ok) * 1000
    results.add(area, subject, "server CPU per ping", Figure(per_ping, "ms"))
    if bulk_cpu_ms:
        results.add(
            area,
            subject,
            "server CPU per ping x bulk path's",
            Figure(per_ping / bulk_cpu_ms, "x", target("http.x bulk")),
        )
    log(
        f"{len(ok)} pings over HTTP in {wall:.1f}s ({len(ok) / wall:.0f}/s), "
        f"p95 {percentile(latencies, 95):.0f} ms, {failed} failed"
    )
