"""A large book of business for benchmarks: the demo's shape and variety, at any size.

Pure data (no database): ``build_load_book`` lays out companies, subscriptions, licenses,
instances and namespaces; ``PingRows`` turns that book into the rows of ``UsagePing`` (week by
week, all instances of a week together, the order in which a real book accumulates) and, on the
way, the rows of ``MonthlyUsage`` (the last ping of each calendar month per instance).
``bulk_load`` writes both with COPY.

The variety is the demo's (``demo``), built from the same ``shapes``: four segments with CSMs on
Strategic and Growth, Premium and Ultimate plans, growing, flat and declining usage, every instance
type, SaaS namespaces beside self-managed instances, GitLab 13 to 17 with upgrades over the weeks
(no billable users before 14.0, md5 only before 15.2, sha256 only from 16.2), licenses mapped from
the ping's subscription id or from GitLab's md5 mapping file, a few unmapped licenses, stale
instances, accounts with no usage data, and a few very large accounts. Metric values come from
the shared ``weekly_metrics``, so the scoring engine sees the same distributions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from accounts.models import CSM_OWNED_SEGMENTS
from instances.metrics import METRIC_NAMES, METRICS
from instances.versions import parse_version, sort_key

from .payloads import EDITIONS, key_path_available
from .shapes import (
    TRENDS,
    Book,
    CompanySpec,
    InstanceSpec,
    PersonSpec,
    SubscriptionSpec,
    company_spec,
    customer_since,
    license_md5_for,
    license_sha256_for,
    logins,
    namespace_spec,
    ping_rng,
    plan_for,
    self_managed_spec,
    unmapped_trial,
    upgrade_path,
    version_at,
    weekly_metrics,
)

#: How many self-managed instances an ordinary account runs (weights); very large accounts and
#: SaaS-only accounts come on top, and the mean over the whole book lands near 3.
_INSTANCE_COUNTS = (1, 2, 3, 4, 5, 6, 8)
_INSTANCE_COUNT_WEIGHTS = (13, 19, 26, 21, 10, 7, 4)
#: What the extra instances of an account are.
_EXTRA_KINDS = ("non_production", "unknown", "obsolete", "geo_secondary", "production")
_EXTRA_WEIGHTS = (42, 22, 13, 8, 15)
#: The GitLab major release an instance started the period on (13 is too old for billable users).
_MAJORS = (13, 14, 15, 16, 17)
_MAJOR_WEIGHTS = (3, 7, 20, 50, 20)
#: Every this-many companies, one runs a very large fleet (company 0 the largest of all).
GIANT_EVERY = 1000
LARGEST_INSTANCES = 80

PING_COLUMNS: tuple[str, ...] = (
    "id",
    "instance_id",
    "recorded_at",
    "received_at",
    "source",
    "version",
    "edition",
    "license_id",
    "subscription_id",
    "license_md5",
    "license_sha256",
    "license_subscription_id",
    "license_plan",
    "license_trial",
    *METRIC_NAMES,
)
MONTHLY_COLUMNS: tuple[str, ...] = (
    "id",
    "instance_id",
    "company_id",
    "month",
    "ping_id",
    "recorded_at",
    "version",
    *METRIC_NAMES,
)
_METRICS_AT = len(PING_COLUMNS) - len(METRIC_NAMES)


@dataclass
class LoadInstance(InstanceSpec):
    """An instance or namespace of the load book, with what the demo leaves to ``seed_demo``."""

    index: int = 0
    hour: int = 0
    minute: int = 0
    license_key: str = ""  # the License it reports (LoadBook.licenses), "" for namespaces
    pending: str = ""  # a label edit still waiting for the refresh delay
    rule_labeled: bool = False  # labeled by a labeling rule rather than a person


@dataclass
class LicenseSpec:
    key: str
    md5: str | None
    sha256: str | None
    subscription: SubscriptionSpec | None  # None: nobody has mapped it (Data quality)
    mapped_via: str  # "ping" | "import" | ""
    plan: str


@dataclass
class LoadBook(Book):
    """A ``Book`` with its licenses, its CSMs and when each instance pings."""

    instances: list[LoadInstance]
    licenses: dict[str, LicenseSpec] = field(default_factory=dict)
    csms: tuple[str, ...] = ()
    ping_count: int = 0

    def people(self) -> tuple[PersonSpec, ...]:
        """The logins, in the order they are created: ops, csm1..csmN, viewer."""
        return logins(
            *(PersonSpec(name, "Casey", f"Morgan {name[3:]}", "CSM") for name in self.csms)
        )

    def ping_time(self, spec: LoadInstance, week: int) -> datetime:
        day = self.week_dates()[week]
        if spec.kind == "saas":  # the SaaS export is dated, not timed
            return datetime.combine(day, time(0, 0), tzinfo=UTC)
        return datetime.combine(day, time(spec.hour, (spec.minute + 7 * week) % 60), tzinfo=UTC)

    def first_and_last(self, spec: LoadInstance) -> tuple[datetime, datetime] | None:
        weeks = self.weeks_of(spec)
        if not weeks:
            return None
        return self.ping_time(spec, weeks[0]), self.ping_time(spec, weeks[-1])

    def last_version(self, spec: LoadInstance) -> str:
        """The version of the instance's newest ping ("" for a namespace)."""
        weeks = self.weeks_of(spec)
        if spec.kind == "saas" or not weeks:
            return ""
        return version_at(spec, weeks[-1], self.weeks)


class BookEndRefused(ValueError):
    """A book would end today or later: some of its pings would be dated later than now."""


def edition_of(spec: LoadInstance) -> str:
    """The edition a self-managed instance reports ("" for a namespace)."""
    return "" if spec.kind == "saas" else EDITIONS.get(spec.subscription.plan, "")


def build_load_book(
    *,
    companies: int = 5000,
    weeks: int = 104,
    namespaces: int | None = None,
    csms: int = 25,
    end: date | None = None,
    seed: int = 7,
) -> LoadBook:
    """The layout of a large book (deterministic for a given seed and end date).

    ``namespaces`` defaults to 40% of ``companies`` (2,000 for 5,000); one namespace owner in ten
    runs on SaaS only, the others also run self-managed instances. About 3 self-managed instances
    per company on average, with a very large account every ``GIANT_EVERY`` companies.

    ``end`` (the date of the newest pings) defaults to yesterday, the latest it may be: a ping
    at any hour of today could be later than now. Raises ``BookEndRefused`` for a later one.
    """
    rng = random.Random(seed)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    end = end or yesterday
    if end > yesterday:
        raise BookEndRefused(
            f"a book ending on {end} would have pings later than now; "
            f"the latest end is yesterday, {yesterday}"
        )
    namespaces = round(companies * 0.4) if namespaces is None else namespaces
    csm_names = tuple(f"csm{n}" for n in range(1, max(csms, 1) + 1))
    owners: dict[int, int] = {}  # company index -> how many namespaces it owns
    for j in range(namespaces if companies else 0):
        owner = (j * companies) // namespaces
        owners[owner] = owners.get(owner, 0) + 1
    owner_rank = {owner: rank for rank, owner in enumerate(sorted(owners))}

    book = LoadBook([], [], [], weeks, end, csms=csm_names)
    next_namespace = 0
    for i in range(companies):
        new_customer = i % 50 == 49
        since = customer_since(rng, new=new_customer, start=book.start, end=end, max_days=1500)
        company = company_spec(
            i,
            crm_account_id=f"0017{i:011d}",
            csms=csm_names,
            since=since,
            trend=TRENDS[(i // 4) % 3],
            sentiment_turn=i // 5,
        )
        book.companies.append(company)

        n_namespaces = owners.get(i, 0)
        saas_only = n_namespaces > 0 and owner_rank[i] % 10 == 3
        no_instances = i % 200 == 199  # a subscription, but not one ping yet
        seats = rng.choice((25, 50, 100, 200, 250, 500, 1000, 2500, 5000))
        if i % GIANT_EVERY == 0:
            seats = 20000
        plan = plan_for(i)
        # A new customer's instances start 3 to 7 weeks before the end, never before the book.
        first_week = max(0, weeks - rng.randint(3, 7)) if new_customer else 0
        number = 20000000 + i * 10  # of the self-managed subscription; its namespaces' follow

        if not saas_only:
            sub = book.add_subscription(rng, company, number, plan, seats, "self-managed")
            if not no_instances:
                book.instances.extend(_self_managed(rng, i, company, sub, book, first_week))
        for k in range(n_namespaces):
            ns_seats = seats if saas_only else rng.choice((10, 25, 50, 100, 200))
            sub = book.add_subscription(rng, company, number + 1 + k, plan, ns_seats, "saas")
            late = rng.choice((0, 0, 0, rng.randint(0, weeks // 2)))
            book.instances.append(
                namespace_spec(
                    LoadInstance,
                    company,
                    sub,
                    next_namespace,
                    k,
                    versions=("",),
                    first_week=max(first_week, late),
                    index=len(book.instances),
                )
            )
            next_namespace += 1

    for spec in book.instances:  # every instance exists because it pinged at least once
        spec.first_week = min(spec.first_week, weeks - 1)
        spec.stop_weeks_ago = min(spec.stop_weeks_ago, weeks - spec.first_week - 1)
    _pending_edits(book, rng)
    book.ping_count = sum(len(book.weeks_of(s)) for s in book.instances)
    return book


def _self_managed(
    rng: random.Random,
    i: int,
    company: CompanySpec,
    sub: SubscriptionSpec,
    book: LoadBook,
    first_week: int,
) -> list[LoadInstance]:
    key = license_md5_for(company.crm_account_id)
    sends_subscription_id = i % 10 != 7  # else mapped through GitLab's md5 mapping file
    book.licenses[key] = LicenseSpec(
        key=key,
        md5=key,
        sha256=license_sha256_for(key),
        subscription=sub,
        mapped_via="ping" if sends_subscription_id else "import",
        plan=sub.plan,
    )
    if i % GIANT_EVERY == 0:
        count = LARGEST_INSTANCES if i == 0 else rng.randint(30, 60)
    else:
        count = rng.choices(_INSTANCE_COUNTS, _INSTANCE_COUNT_WEIGHTS)[0]
    major = rng.choices(_MAJORS, _MAJOR_WEIGHTS)[0]
    out: list[LoadInstance] = []

    def add(n: int, label: str, host: str, **fields) -> LoadInstance:
        spec_major = fields.pop("major", major)
        start_minor = rng.randint(0, 6 if spec_major == 17 else 9)
        versions = fields.pop("versions", None) or upgrade_path(rng, start_minor, spec_major)
        fields = {
            "license_key": key,
            "sends_subscription_id": sends_subscription_id,
            "first_week": first_week,
            "index": len(book.instances) + len(out),
            "hour": rng.randint(0, 23),
            "minute": rng.randint(0, 59),
            **fields,
        }
        spec = self_managed_spec(LoadInstance, company, sub, n, label, host, versions, **fields)
        out.append(spec)
        return spec

    prod = add(0, "production", "gitlab", usage_share=1.0)
    if company.segment not in CSM_OWNED_SEGMENTS:
        if i % 6 == 1:
            prod.label = ""  # Unknown: labeling rule 2 (the only instance on its subscription)
        elif i % 6 == 3:
            prod.rule_labeled = True  # a labeling rule made it Production earlier
    if i % 50 == 10:
        prod.stop_weeks_ago = 10  # the account's main instance went quiet: stale
    productions = 1
    for n in range(1, count):
        kind = rng.choices(_EXTRA_KINDS, _EXTRA_WEIGHTS)[0]
        if kind == "non_production":
            add(
                n,
                "non_production",
                f"{('staging', 'dev', 'test', 'qa')[n % 4]}{n}",
                usage_share=round(rng.uniform(0.02, 0.12), 3),
            )
        elif kind == "unknown":
            add(
                n,
                "",
                f"gitlab-{n}",
                usage_share=round(rng.uniform(0.05, 0.4), 3),
                first_week=max(first_week, book.weeks - rng.randint(3, 30)),
            )
        elif kind == "obsolete":
            add(
                n,
                "obsolete",
                f"old-gitlab{n}",
                usage_share=0.3,
                stop_weeks_ago=rng.randint(12, 40),
                major=max(13, major - 2),
            )
        elif kind == "geo_secondary":
            add(n, "geo_secondary", f"geo{n}", usage_share=0.0)
        else:
            productions += 1
            add(
                n,
                "production",
                f"gitlab-{('eu', 'apac', 'us', 'latam')[n % 4]}{n}",
                usage_share=round(rng.uniform(0.1, 0.5), 3),
                opt_out=productions == 2 and rng.random() < 0.5,
            )
    if i % 97 == 6:  # a trial license nobody mapped: its pings wait under Data quality
        trial = unmapped_trial(company)
        trial_key = trial["license_md5"]
        book.licenses[trial_key] = LicenseSpec(trial_key, trial_key, None, None, "", "ultimate")
        add(90, "", "lab", license_key=trial_key, **trial)
    return out


def _pending_edits(book: LoadBook, rng: random.Random) -> None:
    """A few label edits waiting for the refresh delay: about one per CSM, plus an opt-out."""
    wanted = dict.fromkeys(book.csms, 1)
    for spec in book.instances:
        csm = spec.company.csm
        if spec.kind == "self-managed" and not spec.label and wanted.get(csm):
            spec.pending = "non_production" if rng.random() < 0.5 else "production"
            wanted[csm] -= 1


# --------------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What a ping of one GitLab version carries: its sort key and which metrics it cannot send."""

    version: str
    sort_key: int | None
    has_md5: bool
    has_sha256: bool
    missing: tuple[int, ...]  # positions in METRIC_NAMES that the version does not send


def version_facts(version: str) -> VersionFacts:
    parsed = parse_version(version)
    if parsed is None:
        return VersionFacts(version, None, False, False, ())
    missing = tuple(
        n
        for n, metric in enumerate(METRICS)
        if not any(key_path_available(p, parsed) for p in metric.key_paths)
    )
    return VersionFacts(
        version,
        sort_key(parsed),
        key_path_available("license_md5", parsed),
        key_path_available("license_sha256", parsed),
        missing,
    )


@dataclass(slots=True)
class BookIds:
    """Database ids of the book's rows, by spec (filled in by whoever stored them)."""

    instance: list[int]  # by LoadInstance.index
    subscription: dict[str, int]  # by subscription name
    license: dict[str, int]  # by license key
    company: dict[str, int]  # by CRM account id


@dataclass(frozen=True)
class PingPart:
    """A contiguous run of the book's instances and the ids its rows take: parts of one book
    can be generated side by side (one process each) and their rows never share an id."""

    start: int  # index into book.instances
    stop: int
    first_ping_id: int
    first_monthly_id: int
    pings: int


def ping_parts(book: LoadBook, parts: int) -> list[PingPart]:
    """Split the book into ``parts`` runs of instances with about as many pings each.

    Each instance pings in consecutive weeks (``weeks_of`` is a range), so its ping count is the
    range's length and its monthly rows are the calendar months from its first ping to its last
    (every month between two weekly pings holds one): ids are known before any row is made.
    """
    dates = book.week_dates()

    def months(spec) -> int:
        weeks = book.weeks_of(spec)
        if not weeks:
            return 0
        first, last = dates[weeks[0]], dates[weeks[-1]]
        return (last.year - first.year) * 12 + last.month - first.month + 1

    share = max(book.ping_count // max(parts, 1), 1)
    out: list[PingPart] = []
    start, ping_id, monthly_id, pings, monthly = 0, 1, 1, 0, 0
    for n, spec in enumerate(book.instances):
        pings += len(book.weeks_of(spec))
        monthly += months(spec)
        last = n == len(book.instances) - 1
        if last or (pings >= share and len(out) < parts - 1):
            out.append(PingPart(start, n + 1, ping_id, monthly_id, pings))
            start, ping_id, monthly_id = n + 1, ping_id + pings, monthly_id + monthly
            pings = monthly = 0
    return out


class PingRows:
    """Every ping of the book (or of one ``PingPart``) as a ``PING_COLUMNS`` tuple, week by
    week, with its monthly rows.

    ``monthly`` receives each ``MONTHLY_COLUMNS`` tuple as soon as its month is closed (and the
    open months at the end). Ids are assigned from 1 (or the part's first ids): the rows go into
    emptied tables.
    """

    def __init__(
        self,
        book: LoadBook,
        ids: BookIds,
        *,
        monthly: Callable[[tuple], None],
        part: PingPart | None = None,
    ) -> None:
        self.book = book
        self.ids = ids
        self.monthly = monthly
        self.instances = book.instances[part.start : part.stop] if part else book.instances
        self.next_ping_id = part.first_ping_id if part else 1
        self.next_monthly_id = part.first_monthly_id if part else 1
        self.facts: dict[str, VersionFacts] = {}

    def facts_for(self, version: str) -> VersionFacts:
        facts = self.facts.get(version)
        if facts is None:
            facts = self.facts[version] = version_facts(version)
        return facts

    def __iter__(self) -> Iterator[tuple]:
        book, ids = self.book, self.ids
        weeks = book.weeks
        dates = book.week_dates()
        delay = timedelta(minutes=2)
        state = []
        for spec in self.instances:
            sub = spec.subscription
            saas = spec.kind == "saas"
            state.append(
                (
                    spec,
                    ping_rng(spec),
                    ids.instance[spec.index],
                    ids.license.get(spec.license_key),
                    None if spec.unmapped else ids.subscription[sub.name],
                    None if spec.unmapped else ids.company[spec.company.crm_account_id],
                    edition_of(spec),
                    "saas" if saas else "bulk",
                    sub.name if spec.sends_subscription_id and not saas else "",
                    "" if saas else sub.plan,
                    None if saas else False,
                    book.weeks_of(spec),
                )
            )
        open_month: dict[int, tuple] = {}  # instance index -> (month, ping row)
        for week in range(weeks):
            month = dates[week].replace(day=1)
            for (
                spec,
                rng,
                instance_id,
                license_id,
                subscription_id,
                company_id,
                edition,
                source,
                license_sub,
                plan,
                trial,
                pinging,
            ) in state:
                if week not in pinging:
                    continue
                metrics = weekly_metrics(spec, week, weeks, rng)
                recorded = book.ping_time(spec, week)
                if source == "saas":
                    version = ""
                    md5 = sha = ""
                    metrics["active_users"] = None  # the SaaS export has no such column
                    values = list(metrics.values())
                else:
                    version = version_at(spec, week, weeks)
                    facts = self.facts_for(version)
                    md5 = spec.license_md5 if facts.has_md5 and spec.license_md5 else ""
                    sha = spec.license_sha256 if facts.has_sha256 and spec.license_sha256 else ""
                    values = list(metrics.values())
                    for n in facts.missing:
                        values[n] = None
                row = (
                    self.next_ping_id,
                    instance_id,
                    recorded,
                    recorded + delay,
                    source,
                    version,
                    edition,
                    license_id,
                    subscription_id,
                    md5,
                    sha,
                    license_sub,
                    plan,
                    trial,
                    *values,
                )
                self.next_ping_id += 1
                previous = open_month.get(instance_id)
                if previous is not None and previous[0] != month:
                    self._close(*previous, company_id)
                open_month[instance_id] = (month, row)
                yield row
        companies = {
            ids.instance[s.index]: None if s.unmapped else ids.company[s.company.crm_account_id]
            for s in self.instances
        }
        for instance_id, (month, row) in open_month.items():
            self._close(month, row, companies[instance_id])

    def _close(self, month: date, row: tuple, company_id: int | None) -> None:
        self.monthly(
            (
                self.next_monthly_id,
                row[1],
                company_id,
                month,
                row[0],
                row[2],
                row[5],
                *row[_METRICS_AT:],
            )
        )
        self.next_monthly_id += 1
