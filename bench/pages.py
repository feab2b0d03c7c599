"""Server time and query count of every page, in-process, against the benchmark database.

Each page is requested through Django's test ``Client`` (the full middleware stack, a real
session, persistent database connections as in production) ``warmups`` times, once more under
``CaptureQueriesContext`` to count its queries, then ``requests`` times with nothing but
``time.perf_counter`` around the call. The floor page (``bench/urls.py``) is measured the same
way in the same run, and every page's median is also given as a multiple of the floor's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .report import Figure, Results, percentile
from .targets import target

C360_SECTIONS = (
    ("Summary", "/accounts/{pk}/"),
    ("User Adoption", "/accounts/{pk}/adoption/"),
    ("Usage Trends", "/accounts/{pk}/trends/"),
    ("Instances", "/accounts/{pk}/instances/"),
    ("Scorecard", "/accounts/{pk}/scorecard/"),
)
#: Extra report toggles, measured on the largest account only.
C360_TOGGLES = (
    ("Usage Trends: License Utilization", "/accounts/{pk}/trends/?report=license"),
    ("Usage Trends: NOT Production", "/accounts/{pk}/trends/?report=not_production"),
    ("User Adoption: CI builds per user", "/accounts/{pk}/adoption/?report=ci_builds_per_user"),
)
DASHBOARD = (
    ("default, CSM (my accounts)", "/", "csm"),
    ("default, ops (all accounts)", "/", "ops"),
    ("sorted by health", "/?sort=overall_color", "ops"),
    ("sorted by health, descending", "/?sort=-overall_color", "ops"),
    ("filtered Red, sorted by health", "/?overall_color=Red&sort=overall_color", "ops"),
    (
        "filtered Strategic + Yellow CI, by LU",
        "/?segment=Strategic&ci_color=Yellow&sort=-license_utilization",
        "ops",
    ),
    ("has Unknown, by last ping", "/?has_unknown=on&sort=-last_ping_at", "ops"),
    ("no usage data", "/?no_usage_data=on", "ops"),
    ("sorted by Unknown count", "/?sort=-n_unknown", "ops"),
    ("sorted by product usage", "/?sort=-product_usage", "ops"),
    ("name search", "/?q=globex", "ops"),
    ("last page", "/?page={last}", "ops"),
)
REPORTS = (
    ("CSM Burn-Down (CSM default)", "/burndown/", "csm"),
    ("CSM Burn-Down (ops, all)", "/burndown/?csm=", "ops"),
    ("Versions report", "/reports/versions/", "ops"),
    ("Versions report, older than 3 minors", "/reports/versions/?older_than=3", "ops"),
    ("Data quality", "/data-quality/", "ops"),
    ("Metrics dictionary", "/metrics/", "ops"),
)
#: Page kinds with targets (``bench/targets.py``); reports and the floor are context.
TARGETED = ("c360", "c360_cold", "dashboard")
UNITS = {"median": "ms", "p95": "ms", "x floor": "x", "queries": "queries"}
FLOOR_URL = "/bench/floor/"


@dataclass
class Page:
    area: str
    subject: str
    url: str
    user: str  # "ops" | "csm"
    kind: str  # c360 | c360_cold | dashboard | report | floor
    company_id: int | None = None  # cold pages: the account whose data "changes" before each


@dataclass
class Timing:
    status: int
    queries: int | None = None
    samples: list[float] | None = None  # ms
    note: str = ""
    floor_samples: list[float] | None = None  # the floor, timed between this page's requests

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def floor_median(self) -> float | None:
        return statistics.median(self.floor_samples) if self.floor_samples else None

    @property
    def p95(self) -> float:
        return percentile(self.samples or [], 95)


def sample_accounts() -> list[tuple[str, int, int]]:
    """(label, company id, instances) for the accounts whose C360 pages are measured."""
    from django.db.models import Count, Q

    from accounts.models import Company

    base = Company.objects.annotate(
        n=Count("instances"),
        n_saas=Count("instances", filter=Q(instances__kind="saas")),
    ).order_by()
    picks = [
        ("largest", base.order_by("-n", "pk").first()),
        (
            "typical",
            base.filter(n=3, n_saas=0, segment="Strategic", csm__isnull=False)
            .order_by("pk")
            .first(),
        ),
        ("self-managed + SaaS", base.filter(n_saas=1, n__gte=4, n__lte=8).order_by("pk").first()),
        ("SaaS only", base.filter(n_saas=1, n=1).order_by("pk").first()),
        ("no usage data", base.filter(n=0).order_by("pk").first()),
    ]
    return [(label, c.pk, c.n) for label, c in picks if c is not None]


def kind_targets(kind: str) -> dict[str, str | None]:
    return {name: target(f"{kind}.{name}") if kind in TARGETED else None for name in UNITS}


def last_page() -> int:
    """The dashboard's last page for ops (every account), at the kit's page size."""
    from accounts.models import Company
    from usage_portal.web.kit.views import CsmDefaultFilterView

    per_page = CsmDefaultFilterView.table_pagination["per_page"]
    return max(1, -(-Company.objects.count() // per_page))


def page_list(accounts: list[tuple[str, int, int]]) -> list[Page]:
    pages = [Page("pages: floor", "floor (base.html, no view queries)", FLOOR_URL, "ops", "floor")]
    last = last_page()
    for subject, url, user in DASHBOARD:
        pages.append(Page("pages: dashboard", subject, url.format(last=last), user, "dashboard"))
    for label, pk, n in accounts:
        sections = C360_SECTIONS + (C360_TOGGLES if label == "largest" else ())
        for section, url in sections:
            subject = f"{section} · {label} ({n} instances)"
            pages.append(Page("pages: C360", subject, url.format(pk=pk), "ops", "c360"))
    for label, pk, n in accounts[:1]:  # the largest, first view after each change
        for section, url in C360_SECTIONS + C360_TOGGLES:
            subject = f"{section} · {label} ({n} instances), first view after a change"
            pages.append(
                Page("pages: C360 cold", subject, url.format(pk=pk), "ops", "c360_cold", pk)
            )
    for subject, url, user in REPORTS:
        pages.append(Page("pages: reports", subject, url, user, "report"))
    return pages


def _monthly_history(accounts, results: Results, log) -> None:
    """Monthly score history for the measured accounts, as workers keep it in production.

    The generated book carries current scores only (history for 5,000 accounts takes minutes);
    the C360 trend and adoption pages read an account's history, so the measured accounts get
    theirs here, with the same service the workers call.
    """
    from scoring.services import monthly_scores_rebuild

    t0 = time.perf_counter()
    rows = monthly_scores_rebuild(company_ids=[pk for _, pk, _ in accounts])
    seconds = time.perf_counter() - t0
    results.meta["monthly_history_for_sampled_accounts"] = {"rows": rows, "seconds": seconds}
    log(f"monthly score history for the {len(accounts)} measured accounts: {rows} rows")


def _client(username: str):
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def time_page(
    client, url: str, *, requests: int, warmups: int, floor_url: str | None, change=None
) -> Timing:
    """Median, p95 and queries of ``url``; the floor page is timed between its requests, so
    the ratio compares the two under the same load. ``change`` runs before each request,
    untimed (cold pages: the account's data just changed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    before = change or (lambda: None)
    try:
        for _ in range(warmups):
            before()
            response = client.get(url)
            if response.status_code != 200:
                return _refusal(response)
        before()
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        queries = len(captured.captured_queries)
        samples, floor = [], []
        for _ in range(requests):
            before()
            t0 = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                return _refusal(response)
            if floor_url:
                t0 = time.perf_counter()
                client.get(floor_url)
                floor.append((time.perf_counter() - t0) * 1000)
    except Exception as exc:  # a page under construction must not stop the run
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return Timing(500, note=f"raised {type(exc).__name__}: {first_line[:100]}")
    return Timing(200, queries, samples, floor_samples=floor or None)


def _touch(company_id: int):
    from accounts.models import Company

    return lambda: Company.objects.filter(pk=company_id).touch()


def _refusal(response) -> Timing:
    body = response.content[:2000].decode(errors="replace")
    if response.status_code == 404 and "not built yet" in body:
        return Timing(404, note="not built yet")
    if response.status_code in (301, 302):
        return Timing(response.status_code, note=f"redirected to {response.get('Location')}")
    return Timing(response.status_code, note=f"HTTP {response.status_code}")


def measure(results: Results, *, requests: int, warmups: int, profile_dir: Path | None, log):
    import logging

    from django.conf import settings
    from django.urls import clear_url_caches

    # A page that raises is recorded as such; its traceback would only bury the table.
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    settings.ROOT_URLCONF = "bench.urls"
    clear_url_caches()
    accounts = sample_accounts()
    results.meta["sample_accounts"] = [
        {"label": label, "company_id": pk, "instances": n} for label, pk, n in accounts
    ]
    _monthly_history(accounts, results, log)
    clients = {"ops": _client("ops"), "csm": _client("csm1")}
    pages = page_list(accounts)
    floor = None
    slow: list[tuple[Page, Timing]] = []
    for page in pages:
        t0 = time.perf_counter()
        timing = time_page(
            clients[page.user],
            page.url,
            requests=requests,
            warmups=warmups,
            floor_url=None if page.kind == "floor" else FLOOR_URL,
            change=_touch(page.company_id) if page.company_id else None,
        )
        if page.kind == "floor":
            floor = timing.median
        _record(results, page, timing, floor)
        log(
            f"{page.area[7:]:<10} {page.subject:<58} "
            + (
                f"median {timing.median:7.1f} ms  p95 {timing.p95:7.1f} ms  "
                f"{timing.queries:3d} queries"
                + (
                    f"  {timing.median / timing.floor_median:4.1f}x floor"
                    if timing.floor_median
                    else ""
                )
                if timing.samples
                else timing.note
            )
            + f"  [{time.perf_counter() - t0:.0f}s]"
        )
        targets = kind_targets(page.kind)
        missed = targets["median"] and not Figure(timing.median, "ms", targets["median"]).holds
        if timing.samples and missed:
            slow.append((page, timing))
    if profile_dir is not None:
        _profile(slow, clients, profile_dir, log)


def _record(results: Results, page: Page, timing: Timing, floor: float | None) -> None:
    targets = {name: (unit, kind_targets(page.kind)[name]) for name, unit in UNITS.items()}
    if not timing.samples:
        results.missing(page.area, page.subject, targets, timing.note or f"HTTP {timing.status}")
        return
    floor = timing.floor_median or floor  # the floor timed alongside this page, if it was
    values = {"median": timing.median, "p95": timing.p95}
    if page.kind != "floor":
        values["x floor"] = timing.median / floor if floor else float("nan")
    values["queries"] = timing.queries
    results.measured(page.area, page.subject, targets, values)


def _profile(slow, clients, profile_dir: Path, log) -> None:
    """pyinstrument over the pages that miss their target (when pyinstrument is installed)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        log("profiling skipped: pyinstrument is not installed (pip install pyinstrument)")
        return
    profile_dir.mkdir(parents=True, exist_ok=True)
    for page, _ in slow:
        client = clients[page.user]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(10):
            client.get(page.url)
        profiler.stop()
        name = "".join(c if c.isalnum() else "-" for c in f"{page.area}-{page.subject}")[:90]
        path = profile_dir / f"{name}.txt"
        path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        log(f"profile of {page.subject}: {path}")
