"""The demo book: 48 companies whose instances cover every case the product must show.

Pure data (no database): ``build_book`` lays the book out with the shared shapes and rules of
``shapes``, and ``iter_ping_kwargs`` / ``iter_saas_rows`` turn its instances into weekly pings
and SaaS export rows. ``seed`` feeds them through the real CRM import and ping ingest paths.

A few accounts are showcases of version 2 of the presets (methodology §12): each is an account a
CSM meets in real books, shaped so that one of the nine corrections changes a colour on it (see
``SHOWCASES``). No account pings before it became a customer, nor later than now: the newest
pings are yesterday's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from instances.versions import parse_version

from . import shapes

#: The demo's logins, in the order they are created.
DEMO_PEOPLE = shapes.logins(
    shapes.PersonSpec("csm1", "Casey", "Morgan", "CSM"),
    shapes.PersonSpec("csm2", "Sam", "Rivera", "CSM"),
    shapes.PersonSpec("csm3", "Jordan", "Lee", "CSM"),
)
DEMO_CSMS = tuple(p.username for p in DEMO_PEOPLE if p.role == "CSM")

# The showcases of version 2 (methodology §12), by their index in the book. Correction 1 (User
# Engagement reads unique active users) needs none: it shows wherever UMAU and unique active
# users fall in different bands (Cyberdyne Systems, Dunder Paper, Nakatomi Trading, ...).
BOTH_CI_BUILD_KEYS = 11  # Vandelay Imports: its 17.x instance sends both CI-builds keys (#2)
NEWEST_CUSTOMER = 12  # Wonka Confectionery: signed two weeks ago (#4)
SCAN_FAILURES = 20  # Monarch Solutions: two scan counts fail (-1) on its big instance (#5, #7)
LAPSED_SUBSCRIPTION = 30  # Sterling Cooper: a regional instance's subscription ended (#3)
OPS_SENTIMENT = 34  # Duff Brewing: a Scale account whose sentiment Ops recorded (#8)
SECOND_PLAN = 36  # Buy n Large: a division on Premium beside the Ultimate instance (#6)
FIRST_OF_THE_MONTH = 46  # Encom: customer since the 1st of the month, six months ago (#9)
# Accounts without a CSM on which each labeling rule (``instances.rules``, run by the seed) finds
# an Unknown instance to label, so that every rule shows in the demo's audit trail.
SAAS_RULE_ACCOUNT = 3  # Umbrella Health: a namespace that arrived before they were Production
UTILIZATION_RULE_ACCOUNT = 7  # Soylent Foods: its busy main instance was never labeled
SINGLE_INSTANCE_ACCOUNT = 10  # Pied Piper: a quiet self-managed pilot on a subscription of its own
SHOWCASES = {  # correction → account
    2: BOTH_CI_BUILD_KEYS,
    3: LAPSED_SUBSCRIPTION,
    4: NEWEST_CUSTOMER,
    # The failure value named; an unsent key shows in colour on Initech (13.12, no L28 pipelines).
    5: SCAN_FAILURES,
    6: SECOND_PLAN,
    7: SCAN_FAILURES,
    8: OPS_SENTIMENT,
    9: FIRST_OF_THE_MONTH,
}
#: The versions assumed to send both CI-builds keys: the handbook's
#: ``counts.count_total_create_ci_build_monthly`` beside ``counts_monthly.ci_builds``, which 17.5
#: dropped. An assumption (when the handbook's key first came is not recorded here), and only
#: the ``BOTH_CI_BUILD_KEYS`` instance sends both: every other instance sends one key or the other.
BOTH_CI_BUILD_KEYS_VERSIONS = ((17, 0, 0), (17, 5, 0))
#: The CI builds the handbook's key counts on that instance, per build of the other key: the two
#: counters are collected differently (an internal event, a database count) and disagree there.
HANDBOOK_CI_BUILDS_RATIO = 1.2
#: The scan counts that fail on the ``SCAN_FAILURES`` instance: its database is large enough that
#: GitLab's batch counts for them time out, and the ping reports the failure value -1.
FAILING_SCANS = ("container_scanning_scans_l28", "api_fuzzing_scans_l28")


@dataclass
class DemoInstance(shapes.InstanceSpec):
    """An instance of the demo book, with what only its showcases do."""

    failing: tuple[str, ...] = ()  # metrics it reports GitLab's failure value (-1) for
    handbook_ci_builds_ratio: float = 0.0  # > 0: also sends the handbook's CI-builds key
    # A namespace that came in Unknown, before namespaces were Production on arrival: the
    # labeling rule for SaaS namespaces has it to label.
    arrived_unknown: bool = False


def crm_account_id(i: int) -> str:
    """The CRM account id of the book's ``i``-th company."""
    return f"0016100000{i:06d}"


def build_book(
    *,
    companies: int = 48,
    weeks: int = 104,
    end: date | None = None,
    seed: int = 7,
    csms: tuple[str, ...] = DEMO_CSMS,
) -> shapes.Book:
    """A book whose shape covers every case the product must show (see ``seed_demo``)."""
    rng = random.Random(seed)
    # The newest pings are yesterday's, so that none is later than now whatever its hour.
    book = shapes.Book([], [], [], weeks, end or date.today() - timedelta(days=1))
    scored_on = book.end + timedelta(days=1)  # the day the seeded book is scored: today
    for i in range(companies):
        # Most accounts are years old; every 13th is a new customer ("too early to score").
        since = shapes.customer_since(
            rng, new=i % 13 == 12, start=book.start, end=book.end, max_days=900
        )
        if i == NEWEST_CUSTOMER:
            since = scored_on - timedelta(days=14)
        elif i == FIRST_OF_THE_MONTH:
            since = _month_start(scored_on, months_back=6)
        company = shapes.company_spec(
            i,
            crm_account_id=crm_account_id(i),
            csms=csms,
            since=since,
            trend=shapes.TRENDS[i % 3],
            sentiment_turn=i,
        )
        if i == OPS_SENTIMENT:
            # No CSM owns a Scale account; Ops recorded this one after a support escalation.
            company.sentiment = "Red"
            company.sentiment_note = "Support escalation: the 17.1 upgrade is stuck on a migration."
        book.companies.append(company)

        deployment = "saas" if i % 7 == 3 else "self-managed"
        seats = rng.choice((25, 50, 100, 200, 250, 500, 1000, 2500))
        sub = book.add_subscription(
            rng, company, 10000000 + i * 10, shapes.plan_for(i), seats, deployment
        )
        instances = _instances_for(rng, i, company, sub, weeks)
        instances += _showcase_instances(book, i, company, sub, scored_on)
        instances += _instances_to_label(book, i, company, sub)
        # Nobody pings before they became a customer.
        onboarded = _first_week_from(book, since)
        for spec in instances:
            spec.first_week = max(spec.first_week, onboarded)
        book.instances.extend(instances)
    return book


def _month_start(day: date, *, months_back: int = 0) -> date:
    """The first day of ``day``'s month, ``months_back`` months earlier."""
    months = day.year * 12 + day.month - 1 - months_back
    return date(months // 12, months % 12 + 1, 1)


def _first_week_from(book: shapes.Book, day: date) -> int:
    """The first week of the book whose ping date is on or after ``day``."""
    return next((w for w, d in enumerate(book.week_dates()) if d >= day), book.weeks)


def _showcase_instances(
    book: shapes.Book,
    i: int,
    company: shapes.CompanySpec,
    sub: shapes.SubscriptionSpec,
    scored_on: date,
) -> list[DemoInstance]:
    """The instances (and their subscriptions) a showcase adds to its account's shape.

    Drawn from their own random streams, so that every other account stays as it was.
    """
    number = 10000000 + i * 10 + 1
    rng = random.Random(f"showcase|{number}")
    if i == LAPSED_SUBSCRIPTION:
        # A regional instance on its own subscription, which ended last month and was not
        # renewed: the host still runs (and pings) while its last users move to the main one.
        lapsed = book.add_subscription(rng, company, number, sub.plan, 300, sub.deployment)
        lapsed.end_date = _month_start(scored_on) - timedelta(days=12)
        versions = ("16.3.2-ee", "16.7.4-ee", "16.11.1-ee")
        return [_self_managed(company, lapsed, 8, "production", "gitlab-eu", versions, 0.2)]
    if i == SECOND_PLAN:
        # The retail division runs its own GitLab on a Premium subscription: two Production
        # instances, one of them on a plan that has no DevSecOps.
        premium = book.add_subscription(rng, company, number, "premium", 1000, sub.deployment)
        versions = ("16.2.1-ee", "16.6.0-ee", "16.10.3-ee")
        return [_self_managed(company, premium, 8, "production", "gitlab-retail", versions, 1.0)]
    return []


def _instances_to_label(
    book: shapes.Book, i: int, company: shapes.CompanySpec, sub: shapes.SubscriptionSpec
) -> list[DemoInstance]:
    """Instances added so that some Unknown waits on every CSM's accounts and every labeling rule
    has one to label. Drawn from their own random streams: every other account stays as it was.
    """
    number = 10000000 + i * 10 + 2
    rng = random.Random(f"to-label|{number}")
    if i == SINGLE_INSTANCE_ACCOUNT:
        # Set up a quarter ago on a small Premium subscription, and barely used: under the
        # utilization rule's threshold, but the only instance on its subscription.
        pilot = book.add_subscription(rng, company, number, "premium", 50, "self-managed")
        spec = _self_managed(company, pilot, 9, "", "gitlab-pilot", ("17.3.2-ee", "17.6.1-ee"), 0.1)
        spec.first_week = max(0, book.weeks - 13)
        pilot.start_date = max(company.customer_since, book.week_dates()[spec.first_week])
        return [spec]
    # A sandbox a team set up a few weeks ago, on CSM-owned accounts of the CSMs the book's other
    # Unknown instances miss (they all fall on csm1's accounts).
    sandbox = i % 12 in (5, 8) and i not in SHOWCASES.values()
    if sandbox and company.csm and sub.deployment == "self-managed":
        versions = shapes.upgrade_path(rng, rng.randint(4, 10), major=17)[:1]
        spec = _self_managed(company, sub, 10, "", "gitlab-sandbox", versions, 0.05)
        spec.first_week = max(0, book.weeks - rng.randint(3, 12))
        return [spec]
    return []


def _self_managed(
    company: shapes.CompanySpec,
    sub: shapes.SubscriptionSpec,
    n: int,
    label: str,
    host: str,
    versions: tuple[str, ...],
    usage_share: float,
) -> DemoInstance:
    return shapes.self_managed_spec(
        DemoInstance, company, sub, n, label, host, versions, usage_share=usage_share
    )


def _instances_for(
    rng: random.Random,
    i: int,
    company: shapes.CompanySpec,
    sub: shapes.SubscriptionSpec,
    weeks: int,
) -> list[DemoInstance]:
    if sub.deployment == "saas":
        return [
            shapes.namespace_spec(
                DemoInstance, company, sub, i, arrived_unknown=i == SAAS_RULE_ACCOUNT
            )
        ]

    def sm(n: int, label: str, host: str, **fields) -> DemoInstance:
        # The default path is drawn even when ``versions`` is given: the book depends on it.
        versions = fields.pop("versions", shapes.upgrade_path(rng, rng.randint(0, 8)))
        return shapes.self_managed_spec(
            DemoInstance, company, sub, n, label, host, versions, **fields
        )

    out = [sm(0, "production", "gitlab", usage_share=0.6 if i == 0 else 1.0)]
    if i % 4 == 0:
        out.append(sm(1, "non_production", "staging", usage_share=0.08))
    if i % 6 == 1:
        # Unknown: a CSM must label it. Not before the book's first week, however short the book.
        out.append(
            sm(2, "", "gitlab-dr", usage_share=0.15, first_week=max(0, weeks - rng.randint(3, 30)))
        )
    if i % 9 == 2:
        out.append(
            sm(
                3,
                "obsolete",
                "old-gitlab",
                usage_share=0.3,
                stop_weeks_ago=rng.randint(12, 40),
                versions=("14.10.5-ee", "15.3.2-ee"),
            )
        )
    if i % 10 == 5:
        out.append(sm(4, "geo_secondary", "geo", usage_share=0.0))
    if i == 0:  # several Production instances on one account (needs the Opt-Out workflow)
        out.append(sm(5, "production", "gitlab-eu", usage_share=0.4))
        out.append(sm(6, "production", "gitlab-apac", usage_share=0.2, opt_out=True))
    if i == 2:  # a legacy instance that never upgraded past 13.x: no billable users
        out[0].versions = ("13.10.3-ee", "13.12.15-ee")
        out[0].sends_subscription_id = False  # mapped through the md5 mapping file
    if i == 4:  # 16.2+ sends no license_md5, only sha256 and the subscription id
        out[0].versions = ("16.3.1-ee", "16.8.2-ee")
    if i == 8:  # 17.5+: counts.ci_builds is gone
        out[0].versions = ("17.2.1-ee", "17.6.2-ee")
    if i == 6:  # a license nobody has mapped yet: kept, shown under Data quality
        out.append(sm(7, "", "lab", **shapes.unmapped_trial(company)))
    if i == 9:  # this account's only instance went quiet 10 weeks ago
        out[0].stop_weeks_ago = 10
    if i % 6 == 1 and i > 20:  # the only instance on its subscription, Unknown
        out[0].label = ""
    if i == UTILIZATION_RULE_ACCOUNT:  # well used, so labeling rule 1 labels it first
        out[0].label = ""
    if i == BOTH_CI_BUILD_KEYS:
        out[0].handbook_ci_builds_ratio = HANDBOOK_CI_BUILDS_RATIO
    if i == SCAN_FAILURES:
        out[0].failing = FAILING_SCANS
    return out


def iter_ping_kwargs(book: shapes.Book, spec: DemoInstance) -> Iterator[dict]:
    """``build_payload`` keyword arguments for every weekly ping this instance sends."""
    rng = shapes.ping_rng(spec)
    dates = book.week_dates()
    hour = rng.randint(0, 23)
    for week in book.weeks_of(spec):
        recorded_at = datetime.combine(dates[week], time(hour, rng.randint(0, 59)), tzinfo=UTC)
        version = shapes.version_at(spec, week, book.weeks)
        sub = spec.subscription
        metrics = shapes.weekly_metrics(spec, week, book.weeks, rng)
        metrics.update(dict.fromkeys(spec.failing))  # None is sent as the failure value -1
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
            "metrics": metrics,
            "also_send": _second_ci_builds_key(spec, version, metrics),
        }


def _second_ci_builds_key(spec: DemoInstance, version: str, metrics: dict) -> dict[str, int]:
    """The handbook's CI-builds key, where ``spec`` sends it beside ``counts_monthly.ci_builds``."""
    since, until = BOTH_CI_BUILD_KEYS_VERSIONS
    builds = metrics.get("ci_builds_l28")
    if not spec.handbook_ci_builds_ratio or builds is None:
        return {}
    if not since <= (parse_version(version) or (0, 0, 0)) < until:
        return {}
    return {
        "counts.count_total_create_ci_build_monthly": round(builds * spec.handbook_ci_builds_ratio)
    }


def iter_saas_rows(book: shapes.Book, spec: DemoInstance) -> Iterator[dict]:
    """Rows of the weekly SaaS namespace export for one namespace."""
    rng = random.Random(f"{shapes.PING_SEED}|saas|{spec.namespace_id}")
    dates = book.week_dates()
    for week in book.weeks_of(spec):
        metrics = shapes.weekly_metrics(spec, week, book.weeks, rng)
        row = {
            "namespace_id": spec.namespace_id,
            "namespace_path": spec.namespace_path,
            "subscription_name": spec.subscription.name,
            "snapshot_date": dates[week].isoformat(),
            "seats": metrics.pop("licensed_users"),
            "seats_in_use": metrics.pop("billable_users"),
        }
        row.update({k: v for k, v in metrics.items() if k not in ("active_users",)})
        yield row


# --------------------------------------------------------------------------------------------------
# The rest of the health scorecard: what the CRM exports beside the accounts (``import_crm``)

#: The personas a CSM meets, and how often each is at a meeting (the scheme wants the first two).
PERSONAS = (("Dev Lead", 0.8), ("Security Lead", 0.35), ("Executive Sponsor", 0.2))
#: Months of support tickets and meetings the CRM export holds, this month included.
CRM_MONTHS = 12
#: Tickets a month by trend: at the start of those months and by their end.
TICKETS = {"growing": (6, 2), "flat": (4, 4), "declining": (3, 14)}
ROI_NOTES = {
    "Green": "Success plan on track: the objectives agreed at the last QBR are met.",
    "Yellow": "Half the success-plan objectives met; the rollout to the second team slipped.",
    "Red": "Success-plan objectives missed; a recovery plan is agreed with the sponsor.",
}


def prioritization(company: shapes.CompanySpec) -> int | None:
    """The CSM's prioritization of an account (1 or 2 set a meeting cadence); none without one."""
    if not company.csm:
        return None
    return 1 if company.segment == "Strategic" else 2


def success_plans(book: shapes.Book) -> list[tuple[str, str, str]]:
    """(CRM account id, ROI, note) of the CSM-owned accounts with a success plan: all but one
    in five, the ROI following how the account's usage goes."""
    out = []
    for i, company in enumerate(book.companies):
        if not company.csm or i % 5 == 3:
            continue
        roi = {
            "growing": "Green",
            "flat": ("Green", "Yellow")[i % 2],
            "declining": ("Yellow", "Red")[i % 2],
        }[company.trend]
        out.append((company.crm_account_id, roi, ROI_NOTES[roi]))
    return out


def support_tickets(book: shapes.Book) -> list[tuple[str, date, int]]:
    """(CRM account id, month, tickets) for each account over the CRM's last months, from the
    month it became a customer. The export counts this month from its middle on (the month so
    far); before that, last month is the newest (a count of a few days would say nothing)."""
    newest = 0 if book.end.day >= 15 else 1
    months = [_month_start(book.end, months_back=n) for n in reversed(range(newest, CRM_MONTHS))]
    out = []
    for company in book.companies:
        rng = random.Random(f"tickets|{company.crm_account_id}")
        first, last = TICKETS[company.trend]
        scale = 1.5 if company.segment == "Strategic" else 1.0
        for n, month in enumerate(months):
            if month < company.customer_since.replace(day=1):
                continue
            mean = scale * (first + (last - first) * n / (len(months) - 1))
            if month == _month_start(book.end):  # the month so far
                mean *= book.end.day / 30
            out.append((company.crm_account_id, month, max(0, round(rng.gauss(mean, mean / 3)))))
    return out


def meetings(book: shapes.Book) -> list[tuple[str, date, tuple[str, ...]]]:
    """(CRM account id, day, personas met) of the CSMs' meetings over the CRM's last months.

    Every three to seven weeks, from the day the account became a customer; on one account in
    seven the meetings stopped two to four months ago (the cadence has lapsed).
    """
    start = _month_start(book.end, months_back=CRM_MONTHS - 1)
    out = []
    for i, company in enumerate(book.companies):
        if not company.csm:
            continue
        rng = random.Random(f"meetings|{company.crm_account_id}")
        until = book.end - timedelta(days=rng.randint(60, 120) if i % 7 == 6 else 0)
        day = max(start, company.customer_since) + timedelta(days=rng.randint(3, 20))
        while day <= until:
            met = tuple(p for p, share in PERSONAS if rng.random() < share) or (PERSONAS[0][0],)
            out.append((company.crm_account_id, day, met))
            day += timedelta(days=rng.randint(21, 49))
    return out
