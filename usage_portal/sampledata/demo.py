"""A deterministic, realistic book of business: companies, subscriptions, instances and pings.

Pure data generation (no ORM): ``seed_demo`` feeds what this builds through the real CRM import
and ping ingest paths, and the load generator reuses it at scale.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from instances.metrics import METRIC_NAMES, SCAN_METRICS

SEGMENTS = ("Strategic", "Growth", "Scale", "Digital")
TRENDS = ("growing", "flat", "declining")
_NAMES = (
    "Acme Robotics",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Logistics",
    "Wayne Freight",
    "Cyberdyne Systems",
    "Soylent Foods",
    "Tyrell Bio",
    "Hooli",
    "Pied Piper",
    "Vandelay Imports",
    "Wonka Confectionery",
    "Gringotts Bank",
    "Oscorp",
    "Massive Dynamic",
    "Aperture Labs",
    "Black Mesa",
    "Nakatomi Trading",
    "Virtucon",
    "Monarch Solutions",
    "Dunder Paper",
    "Prestige Worldwide",
    "Blue Sun",
    "Weyland Aerospace",
    "Rekall",
    "Sirius Cybernetics",
    "Zorg Industries",
    "Ollivander Tools",
    "Bluth Development",
    "Sterling Cooper",
    "Los Pollos",
    "Kruger Industrial",
    "Octan Energy",
    "Duff Brewing",
    "Gekko Partners",
    "Buy n Large",
    "Nostromo Mining",
    "Spacely Sprockets",
    "Cogswell Cogs",
    "Krusty Foods",
    "Ghostbusters Inc",
    "Planet Express",
    "Mom Corp",
    "Lunar Industries",
    "Abstergo",
    "Encom",
    "Yoyodyne",
)


@dataclass
class CompanySpec:
    crm_account_id: str
    name: str
    segment: str
    csm: str
    customer_since: date
    trend: str
    sentiment: str = ""
    sentiment_note: str = ""


@dataclass
class SubscriptionSpec:
    name: str
    crm_account_id: str
    plan: str
    licensed_seats: int
    start_date: date
    end_date: date
    deployment: str
    arr: int


@dataclass
class InstanceSpec:
    """One self-managed instance or SaaS namespace and how it behaves over the weeks."""

    company: CompanySpec
    subscription: SubscriptionSpec
    kind: str  # "self-managed" | "saas"
    label: str  # the instance type a person gave it ("" = leave Unknown)
    uuid: str = ""
    hostname: str = ""
    namespace_id: int = 0
    namespace_path: str = ""
    versions: tuple[str, ...] = ("16.5.1-ee",)  # upgraded through over the weeks
    license_md5: str | None = None
    license_sha256: str | None = None
    sends_subscription_id: bool = True
    usage_share: float = 1.0  # share of the subscription's users on this instance
    first_week: int = 0  # weeks after the start of the period before it first pings
    stop_weeks_ago: int = 0  # it stopped pinging this many weeks ago (stale instances)
    opt_out: bool = False
    unmapped: bool = False
    engagement: dict = field(default_factory=dict)


SENTIMENT_NOTES = {
    "Green": "Exec sponsor engaged; expansion talks in Q3.",
    "Yellow": "Champion left; rebuilding relationships.",
    "Red": "Escalation open on runner performance.",
}
ARR_PER_SEAT = {"ultimate": 1188, "premium": 348}


def subscription_spec(
    rng: random.Random,
    *,
    name: str,
    company: CompanySpec,
    plan: str,
    seats: int,
    deployment: str,
    start: date,
    end: date,
) -> SubscriptionSpec:
    """A subscription of ``company`` running through the book's period and a while past it."""
    return SubscriptionSpec(
        name=name,
        crm_account_id=company.crm_account_id,
        plan=plan,
        licensed_seats=seats,
        start_date=max(company.customer_since, start - timedelta(days=30)),
        end_date=end + timedelta(days=rng.randint(60, 400)),
        deployment=deployment,
        arr=seats * ARR_PER_SEAT[plan],
    )


@dataclass
class Book:
    companies: list[CompanySpec]
    subscriptions: list[SubscriptionSpec]
    instances: list[InstanceSpec]
    weeks: int
    end: date  # the date of the newest ping

    def week_dates(self) -> list[date]:
        return [self.end - timedelta(weeks=self.weeks - 1 - w) for w in range(self.weeks)]


def _hex(*parts: object, length: int = 32) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:length]


def _uuid(*parts: object) -> str:
    h = _hex(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _versions(rng: random.Random, start_minor: int, major: int = 16) -> tuple[str, ...]:
    """A plausible upgrade path: a few minor releases over two years."""
    steps = rng.randint(2, 6)
    out = []
    m, minor = major, start_minor
    for _ in range(steps):
        out.append(f"{m}.{minor}.{rng.randint(0, 4)}-ee")
        minor += rng.randint(1, 3)
        if minor > 11:
            m, minor = m + 1, minor - 12
    return tuple(out)


def build_book(
    *,
    companies: int = 48,
    weeks: int = 104,
    end: date | None = None,
    seed: int = 7,
    csms: tuple[str, ...] = ("csm1", "csm2", "csm3"),
    name_prefix: str = "",
) -> Book:
    """A book whose shape covers every case the product must show (see ``seed_demo``)."""
    rng = random.Random(seed)
    end = end or date.today()
    start = end - timedelta(weeks=weeks - 1)
    comp_specs, sub_specs, inst_specs = [], [], []
    for i in range(companies):
        segment = SEGMENTS[i % 4]
        base = _NAMES[i % len(_NAMES)]
        name = f"{name_prefix}{base}" + (f" {i // len(_NAMES) + 1}" if i >= len(_NAMES) else "")
        csm = csms[(i // 4) % len(csms)] if segment in ("Strategic", "Growth") else ""
        # Most accounts are years old; every 13th is a new customer ("too early to score").
        new_customer = i % 13 == 12
        since = (
            end - timedelta(days=45)
            if new_customer
            else start - timedelta(days=rng.randint(30, 900))
        )
        trend = TRENDS[i % 3]
        company = CompanySpec(
            crm_account_id=f"0016100000{i:06d}",
            name=name,
            segment=segment,
            csm=csm,
            customer_since=since,
            trend=trend,
        )
        if csm and i % 5 == 0:
            company.sentiment = ("Green", "Yellow", "Red")[i % 3]
            company.sentiment_note = SENTIMENT_NOTES[company.sentiment]
        comp_specs.append(company)

        saas = i % 7 == 3
        plan = "ultimate" if i % 3 != 1 else "premium"
        seats = rng.choice((25, 50, 100, 200, 250, 500, 1000, 2500))
        sub = subscription_spec(
            rng,
            name=f"A-S{10000000 + i * 10:08d}",
            company=company,
            plan=plan,
            seats=seats,
            deployment="saas" if saas else "self-managed",
            start=start,
            end=end,
        )
        sub_specs.append(sub)
        inst_specs.extend(_instances_for(rng, i, company, sub, sub_specs, weeks))
    return Book(comp_specs, sub_specs, inst_specs, weeks, end)


def _instances_for(rng, i, company, sub, sub_specs, weeks) -> list[InstanceSpec]:
    slug = company.name.lower().replace(" ", "-")
    if sub.deployment == "saas":
        return [
            InstanceSpec(
                company=company,
                subscription=sub,
                kind="saas",
                label="production",
                namespace_id=9000000 + i,
                namespace_path=slug,
            )
        ]

    def sm(n: int, label: str, **kw) -> InstanceSpec:
        key = _hex(company.crm_account_id, "license")
        spec = InstanceSpec(
            company=company,
            subscription=sub,
            kind="self-managed",
            label=label,
            uuid=_uuid(company.crm_account_id, n),
            hostname=kw.pop("hostname", f"gitlab{'' if n == 0 else n}.{slug}.example.com"),
            versions=kw.pop("versions", _versions(rng, rng.randint(0, 8))),
            license_md5=key,
            license_sha256=_hex(key, length=64),
        )
        for name, value in kw.items():
            setattr(spec, name, value)
        return spec

    out = [sm(0, "production", usage_share=0.6 if i == 0 else 1.0)]
    if i % 4 == 0:
        out.append(
            sm(1, "non_production", hostname=f"staging.{slug}.example.com", usage_share=0.08)
        )
    if i % 6 == 1:
        out.append(
            sm(
                2,
                "",
                hostname=f"gitlab-dr.{slug}.example.com",
                usage_share=0.15,
                first_week=weeks - rng.randint(3, 30),
            )
        )  # Unknown: a CSM must label it
    if i % 9 == 2:
        out.append(
            sm(
                3,
                "obsolete",
                hostname=f"old-gitlab.{slug}.example.com",
                usage_share=0.3,
                stop_weeks_ago=rng.randint(12, 40),
                versions=("14.10.5-ee", "15.3.2-ee"),
            )
        )
    if i % 10 == 5:
        out.append(sm(4, "geo_secondary", hostname=f"geo.{slug}.example.com", usage_share=0.0))
    if i == 0:  # several Production instances on one account (needs the Opt-Out workflow)
        out.append(sm(5, "production", hostname=f"gitlab-eu.{slug}.example.com", usage_share=0.4))
        out.append(
            sm(
                6,
                "production",
                hostname=f"gitlab-apac.{slug}.example.com",
                usage_share=0.2,
                opt_out=True,
            )
        )
    if i == 2:  # a legacy instance that never upgraded past 13.x: no billable users
        out[0].versions = ("13.10.3-ee", "13.12.15-ee")
        out[0].sends_subscription_id = False  # mapped through the md5 mapping file
    if i == 4:  # 16.2+ sends no license_md5, only sha256 and the subscription id
        out[0].versions = ("16.3.1-ee", "16.8.2-ee")
    if i == 8:  # 17.5+: counts.ci_builds is gone
        out[0].versions = ("17.2.1-ee", "17.6.2-ee")
    if i == 6:  # a license nobody has mapped yet: kept, shown under Data quality
        out.append(
            sm(
                7,
                "",
                hostname=f"lab.{slug}.example.com",
                usage_share=0.1,
                sends_subscription_id=False,
                unmapped=True,
                license_md5=_hex(company.crm_account_id, "trial-license"),
                license_sha256=None,
                versions=("15.1.0-ee",),
            )
        )
    if i == 9:  # this account's only instance went quiet 10 weeks ago
        out[0].stop_weeks_ago = 10
    if i % 6 == 1 and i > 20:  # Unknown-only instance on a subscription (labeling rule 2)
        out[0].label = ""
    return out


def _profile(spec: InstanceSpec) -> dict[str, float]:
    """How this instance's users work: stable ratios, so weekly figures move smoothly."""
    return _profile_for(spec.uuid, spec.namespace_id)


@functools.lru_cache(maxsize=65536)
def _profile_for(uuid: str, namespace_id: int) -> dict[str, float]:
    rng = random.Random(f"profile|{uuid}|{namespace_id}")
    return {
        "git": rng.uniform(0.25, 0.85),
        "ci": rng.uniform(0.35, 0.8),
        "builds": rng.uniform(3, 70),
        "per_pipeline": rng.uniform(4, 9),
        "deploys": rng.uniform(0.5, 9),
        "failed": rng.uniform(0.02, 0.3),
        "deploy_users": rng.uniform(0.03, 0.4),
        "scanner_users": rng.uniform(0.02, 0.5),
        "scanners": rng.randint(0, len(SCAN_METRICS)),
        "scan_share": rng.uniform(0.05, 0.6),
    }


def weekly_metrics(
    spec: InstanceSpec, week: int, weeks: int, rng: random.Random
) -> dict[str, int | None]:
    """Plausible L28 and all-time figures for one instance in one week."""
    seats = spec.subscription.licensed_seats
    progress = week / max(weeks - 1, 1)
    trend = spec.company.trend
    util = {"growing": 0.25 + 0.7 * progress, "flat": 0.62, "declining": 0.85 - 0.6 * progress}[
        trend
    ]
    util *= 1 + rng.uniform(-0.04, 0.04)
    billable = max(1, round(seats * util * spec.usage_share)) if spec.usage_share else 1
    engagement = {
        "growing": 0.55 + 0.35 * progress,
        "flat": 0.7,
        "declining": 0.8 - 0.4 * progress,
    }[trend]
    # Adoption deepens on growing accounts and thins out on declining ones.
    depth = {"growing": 0.7 + 0.5 * progress, "flat": 1.0, "declining": 1.1 - 0.5 * progress}[trend]
    profile = _profile(spec)

    def noisy(value: float) -> int:
        return round(value * rng.uniform(0.93, 1.07))

    ultimate = spec.subscription.plan == "ultimate"
    umau = noisy(billable * engagement)
    ci_users = noisy(umau * min(profile["ci"] * depth, 1.0))
    builds = noisy(ci_users * profile["builds"] * depth)
    pipelines = max(0, round(builds / profile["per_pipeline"]))
    deployments = noisy(ci_users * profile["deploys"] * depth)
    failed = round(deployments * profile["failed"])
    metrics: dict[str, int | None] = dict.fromkeys(METRIC_NAMES)
    metrics.update(
        billable_users=billable,
        licensed_users=seats,
        active_users=billable + rng.randint(0, 5),
        historical_max_users=max(billable, round(seats * 0.9 * spec.usage_share)),
        umau=umau,
        git_operation_users=noisy(umau * min(profile["git"] * depth, 1.0)),
        pipeline_users=ci_users,
        ci_build_users=round(ci_users * 0.95),
        ci_builds_l28=builds,
        ci_internal_pipelines_l28=pipelines,
        deployments_l28=deployments,
        successful_deployments_l28=deployments - failed,
        failed_deployments_l28=failed,
        deployment_users=noisy(ci_users * profile["deploy_users"] * depth),
        secure_scanner_users=noisy(ci_users * profile["scanner_users"]) if ultimate else 0,
        merge_requests_all=round(billable * 40 * (1 + week)),
        ci_internal_pipelines_all=pipelines * (week + 1) * 4,
        ci_external_pipelines_all=0,
    )
    used_scanners = profile["scanners"] if ultimate else 0
    for n, name in enumerate(SCAN_METRICS):
        metrics[name] = noisy(pipelines * profile["scan_share"]) if n < used_scanners else 0
    return metrics


def version_at(spec: InstanceSpec, week: int, weeks: int) -> str:
    steps = len(spec.versions)
    return spec.versions[min(steps - 1, week * steps // max(weeks, 1))]


def iter_ping_kwargs(book: Book, spec: InstanceSpec, *, seed: int = 11) -> Iterator[dict]:
    """``build_payload`` keyword arguments for every weekly ping this instance sends."""
    rng = random.Random(f"{seed}|{spec.uuid}|{spec.namespace_id}")
    dates = book.week_dates()
    hour = rng.randint(0, 23)
    last = book.weeks - spec.stop_weeks_ago
    for week in range(spec.first_week, last):
        recorded_at = datetime.combine(dates[week], time(hour, rng.randint(0, 59)), tzinfo=UTC)
        version = version_at(spec, week, book.weeks)
        sub = spec.subscription
        yield {
            "uuid": spec.uuid,
            "hostname": spec.hostname,
            "version": version,
            "recorded_at": recorded_at,
            "license_md5": spec.license_md5,
            "license_sha256": spec.license_sha256,
            "license_subscription_id": sub.name if spec.sends_subscription_id else None,
            "license_plan": sub.plan,
            "licensed_users": sub.licensed_seats,
            "licensee_company": spec.company.name,
            "starts_at": sub.start_date,
            "expires_at": sub.end_date,
            "metrics": weekly_metrics(spec, week, book.weeks, rng),
        }


def iter_saas_rows(book: Book, spec: InstanceSpec, *, seed: int = 11) -> Iterator[dict]:
    """Rows of the weekly SaaS namespace export for one namespace."""
    rng = random.Random(f"{seed}|saas|{spec.namespace_id}")
    for week, day in enumerate(book.week_dates()):
        if week < spec.first_week:
            continue
        metrics = weekly_metrics(spec, week, book.weeks, rng)
        row = {
            "namespace_id": spec.namespace_id,
            "namespace_path": spec.namespace_path,
            "subscription_name": spec.subscription.name,
            "snapshot_date": day.isoformat(),
            "seats": metrics.pop("licensed_users"),
            "seats_in_use": metrics.pop("billable_users"),
        }
        row.update({k: v for k, v in metrics.items() if k not in ("active_users",)})
        yield row
