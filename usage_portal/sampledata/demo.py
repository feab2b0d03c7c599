"""The demo book: 48 companies whose instances cover every case the product must show.

Pure data (no database): ``build_book`` lays the book out with the shared shapes and rules of
``shapes``, and ``iter_ping_kwargs`` / ``iter_saas_rows`` turn its instances into weekly pings
and SaaS export rows. ``seed`` feeds them through the real CRM import and ping ingest paths.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time

from . import shapes

#: The demo's logins, in the order they are created.
DEMO_PEOPLE = shapes.logins(
    shapes.PersonSpec("csm1", "Casey", "Morgan", "CSM"),
    shapes.PersonSpec("csm2", "Sam", "Rivera", "CSM"),
    shapes.PersonSpec("csm3", "Jordan", "Lee", "CSM"),
)
DEMO_CSMS = tuple(p.username for p in DEMO_PEOPLE if p.role == "CSM")


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
    book = shapes.Book([], [], [], weeks, end or date.today())
    for i in range(companies):
        # Most accounts are years old; every 13th is a new customer ("too early to score").
        since = shapes.customer_since(
            rng, new=i % 13 == 12, start=book.start, end=book.end, max_days=900
        )
        company = shapes.company_spec(
            i,
            crm_account_id=f"0016100000{i:06d}",
            csms=csms,
            since=since,
            trend=shapes.TRENDS[i % 3],
            sentiment_turn=i,
        )
        book.companies.append(company)

        deployment = "saas" if i % 7 == 3 else "self-managed"
        seats = rng.choice((25, 50, 100, 200, 250, 500, 1000, 2500))
        sub = book.add_subscription(
            rng, company, 10000000 + i * 10, shapes.plan_for(i), seats, deployment
        )
        book.instances.extend(_instances_for(rng, i, company, sub, weeks))
    return book


def _instances_for(
    rng: random.Random,
    i: int,
    company: shapes.CompanySpec,
    sub: shapes.SubscriptionSpec,
    weeks: int,
) -> list[shapes.InstanceSpec]:
    if sub.deployment == "saas":
        return [shapes.namespace_spec(shapes.InstanceSpec, company, sub, i)]

    def sm(n: int, label: str, host: str, **fields) -> shapes.InstanceSpec:
        # The default path is drawn even when ``versions`` is given: the book depends on it.
        versions = fields.pop("versions", shapes.upgrade_path(rng, rng.randint(0, 8)))
        return shapes.self_managed_spec(
            shapes.InstanceSpec, company, sub, n, label, host, versions, **fields
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
    if i % 6 == 1 and i > 20:  # Unknown-only instance on a subscription (labeling rule 2)
        out[0].label = ""
    return out


def iter_ping_kwargs(book: shapes.Book, spec: shapes.InstanceSpec) -> Iterator[dict]:
    """``build_payload`` keyword arguments for every weekly ping this instance sends."""
    rng = shapes.ping_rng(spec)
    dates = book.week_dates()
    hour = rng.randint(0, 23)
    for week in book.weeks_of(spec):
        recorded_at = datetime.combine(dates[week], time(hour, rng.randint(0, 59)), tzinfo=UTC)
        version = shapes.version_at(spec, week, book.weeks)
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
            "metrics": shapes.weekly_metrics(spec, week, book.weeks, rng),
        }


def iter_saas_rows(book: shapes.Book, spec: shapes.InstanceSpec) -> Iterator[dict]:
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
