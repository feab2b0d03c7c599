"""What the demo book and the load book share: the shapes of their rows, the rules that fill them.

Pure data (no database): the company, subscription and instance specs, the people who log in,
the naming and identity rules (names, CSMs, plans, license hashes, uuids, slugs, hostnames), the
subscription, instance and namespace builders, the version timeline an instance upgrades through,
and the usage profile that turns an instance's week into plausible L28 and all-time figures.
``demo`` lays out the 48-account demo book with these and ``loadgen`` a benchmark book of any
size, so both show the same variety and the scoring engine sees the same distributions in either.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

from accounts.models import CSM_OWNED_SEGMENTS
from instances.metrics import METRIC_NAMES, SCAN_METRICS

#: The order segments take, company after company.
SEGMENTS = ("Strategic", "Growth", "Scale", "Digital")
TRENDS = ("growing", "flat", "declining")
NAMES = (
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
SENTIMENTS = ("Green", "Yellow", "Red")
SENTIMENT_NOTES = {
    "Green": "Exec sponsor engaged; expansion talks in Q3.",
    "Yellow": "Champion left; rebuilding relationships.",
    "Red": "Escalation open on runner performance.",
}
ARR_PER_SEAT = {"ultimate": 1188, "premium": 348}
#: SaaS namespace ids start here, so they never look like a real gitlab.com namespace.
NAMESPACE_ID_BASE = 9_000_000
#: Seeds the weekly noise of every instance's pings (with its uuid and namespace id).
PING_SEED = 11


@dataclass(frozen=True)
class PersonSpec:
    """A login of a generated book, in one of the role groups."""

    username: str
    first_name: str
    last_name: str
    role: str  # "Ops" | "CSM" | "Viewer"
    is_staff: bool = False

    @property
    def email(self) -> str:
        return f"{self.username}@example.com"

    def user_fields(self) -> dict[str, object]:
        """The fields of its user besides ``username`` and the password."""
        return {
            name: getattr(self, name) for name in ("first_name", "last_name", "email", "is_staff")
        }


OPS = PersonSpec("ops", "Olivia", "Ops", "Ops", is_staff=True)
VIEWER = PersonSpec("viewer", "Vic", "Sales", "Viewer")


def logins(*csms: PersonSpec) -> tuple[PersonSpec, ...]:
    """A book's logins, in the order they are created: ops, the CSMs, viewer."""
    return (OPS, *csms, VIEWER)


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


@dataclass
class Book:
    """Companies, subscriptions and instances, with weekly pings over ``weeks`` up to ``end``."""

    companies: list[CompanySpec]
    subscriptions: list[SubscriptionSpec]
    instances: list[InstanceSpec]
    weeks: int
    end: date  # the date of the newest ping
    _dates: list[date] = field(default_factory=list, repr=False)

    def week_dates(self) -> list[date]:
        if not self._dates:
            self._dates = [
                self.end - timedelta(weeks=self.weeks - 1 - w) for w in range(self.weeks)
            ]
        return self._dates

    @property
    def start(self) -> date:
        """The date of the oldest ping."""
        return self.end - timedelta(weeks=self.weeks - 1)

    def weeks_of(self, spec: InstanceSpec) -> range:
        """The weeks in which ``spec`` pings."""
        return range(spec.first_week, self.weeks - spec.stop_weeks_ago)

    def add_subscription(
        self,
        rng: random.Random,
        company: CompanySpec,
        number: int,
        plan: str,
        seats: int,
        deployment: str,
    ) -> SubscriptionSpec:
        """Subscription ``A-S<number>`` of ``company``, through the book's period and a while past
        it (drawn from ``rng``)."""
        sub = SubscriptionSpec(
            name=f"A-S{number:08d}",
            crm_account_id=company.crm_account_id,
            plan=plan,
            licensed_seats=seats,
            start_date=max(company.customer_since, self.start - timedelta(days=30)),
            end_date=self.end + timedelta(days=rng.randint(60, 400)),
            deployment=deployment,
            arr=seats * ARR_PER_SEAT[plan],
        )
        self.subscriptions.append(sub)
        return sub


# --------------------------------------------------------------------------------------------------
# Companies and subscriptions


def company_name(i: int) -> str:
    """The ``i``-th company's name: the list of names, numbered from its second round on."""
    base = NAMES[i % len(NAMES)]
    return f"{base} {i // len(NAMES) + 1}" if i >= len(NAMES) else base


def customer_since(rng: random.Random, *, new: bool, start: date, end: date, max_days: int) -> date:
    """A new customer signed 45 days before ``end``; the others 30 to ``max_days`` days before
    ``start``."""
    return end - timedelta(days=45) if new else start - timedelta(days=rng.randint(30, max_days))


def company_spec(
    i: int,
    *,
    crm_account_id: str,
    csms: tuple[str, ...],
    since: date,
    trend: str,
    sentiment_turn: int,
) -> CompanySpec:
    """The ``i``-th company: segments in turn, a CSM (in turn) on the CSM-owned segments.

    Every fifth company with a CSM has a sentiment, ``sentiment_turn`` picking its colour.
    """
    segment = SEGMENTS[i % len(SEGMENTS)]
    csm = csms[(i // 4) % len(csms)] if segment in CSM_OWNED_SEGMENTS else ""
    company = CompanySpec(
        crm_account_id=crm_account_id,
        name=company_name(i),
        segment=segment,
        csm=csm,
        customer_since=since,
        trend=trend,
    )
    if csm and i % 5 == 0:
        company.sentiment = SENTIMENTS[sentiment_turn % len(SENTIMENTS)]
        company.sentiment_note = SENTIMENT_NOTES[company.sentiment]
    return company


def plan_for(i: int) -> str:
    """Two companies in three are on Ultimate, the others on Premium."""
    return "ultimate" if i % 3 != 1 else "premium"


# --------------------------------------------------------------------------------------------------
# Identities and labels


def hex_digest(*parts: object, length: int = 32) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:length]


def uuid_for(*parts: object) -> str:
    h = hex_digest(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def license_md5_for(crm_account_id: str) -> str:
    """The md5 of the license a company's instances report."""
    return hex_digest(crm_account_id, "license")


def license_sha256_for(md5: str) -> str:
    return hex_digest(md5, length=64)


def trial_license_md5_for(crm_account_id: str) -> str:
    """The md5 of a trial license nobody has mapped to a subscription."""
    return hex_digest(crm_account_id, "trial-license")


def unmapped_trial(company: CompanySpec) -> dict[str, object]:
    """The instance fields of a lab on a trial license nobody has mapped to a subscription: its
    pings are kept, waiting under Data quality."""
    return {
        "usage_share": 0.1,
        "sends_subscription_id": False,
        "unmapped": True,
        "license_md5": trial_license_md5_for(company.crm_account_id),
        "license_sha256": None,
        "versions": ("15.1.0-ee",),
    }


def slug(name: str) -> str:
    """A company name as a hostname or namespace path part: "Acme Robotics" → "acme-robotics"."""
    return name.lower().replace(" ", "-")


Spec = TypeVar("Spec", bound=InstanceSpec)


def self_managed_spec(
    cls: type[Spec],
    company: CompanySpec,
    sub: SubscriptionSpec,
    n: int,
    label: str,
    host: str,
    versions: tuple[str, ...],
    **fields,
) -> Spec:
    """The ``n``-th self-managed instance of ``company``, at ``host``.<company>.example.com.

    It reports the company's license unless ``fields`` (the spec's other fields) say otherwise.
    """
    md5 = license_md5_for(company.crm_account_id)
    fields = {"license_md5": md5, "license_sha256": license_sha256_for(md5), **fields}
    return cls(
        company=company,
        subscription=sub,
        kind="self-managed",
        label=label,
        uuid=uuid_for(company.crm_account_id, n),
        hostname=f"{host}.{slug(company.name)}.example.com",
        versions=versions,
        **fields,
    )


def namespace_spec(
    cls: type[Spec], company: CompanySpec, sub: SubscriptionSpec, n: int, k: int = 0, **fields
) -> Spec:
    """The book's ``n``-th SaaS namespace, ``company``'s ``k``-th: Production, as every namespace.

    Its path is the company's slug, suffixed with ``k`` after the first.
    """
    path = slug(company.name)
    return cls(
        company=company,
        subscription=sub,
        kind="saas",
        label="production",
        namespace_id=NAMESPACE_ID_BASE + n,
        namespace_path=f"{path}-{k}" if k else path,
        **fields,
    )


def given_labels(spec: InstanceSpec) -> list[tuple[str, str]]:
    """(field, value) of the labels a person gave this instance before the book's end."""
    labels = []
    if spec.label and spec.kind == "self-managed":
        labels.append(("instance_type", spec.label))
    if spec.opt_out:
        labels.append(("health_inclusion", "opt_out"))
    return labels


# --------------------------------------------------------------------------------------------------
# Versions and usage


def upgrade_path(rng: random.Random, start_minor: int, major: int = 16) -> tuple[str, ...]:
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


def version_at(spec: InstanceSpec, week: int, weeks: int) -> str:
    """The version ``spec`` runs in ``week``: its upgrade path spread evenly over the weeks."""
    steps = len(spec.versions)
    return spec.versions[min(steps - 1, week * steps // max(weeks, 1))]


def ping_rng(spec: InstanceSpec, *, seed: int = PING_SEED) -> random.Random:
    """The stream of weekly noise in one instance's pings."""
    return random.Random(f"{seed}|{spec.uuid}|{spec.namespace_id}")


@functools.lru_cache(maxsize=65536)
def usage_profile(uuid: str, namespace_id: int) -> dict[str, float]:
    """How an instance's users work: stable ratios, so weekly figures move smoothly."""
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
        # Drawn last, so that adding it left every earlier figure of the books as it was.
        "active": rng.uniform(0.75, 1.1),
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
    profile = usage_profile(spec.uuid, spec.namespace_id)

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
        # Users active in any way (GitLab's unique_active_users_monthly); never above billable.
        unique_active_users=min(billable, round(umau * profile["active"])),
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
