"""The cross-account pages: dashboard, CSM Burn-Down, versions, data quality, metrics dictionary.

Each test checks numbers on the page against the data, and the refusal cases. ``build_book``
writes a book of any size in a few bulk inserts, so query counts can be compared between a
small and a large book.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import tablib
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from accounts.models import CSM_OWNED_SEGMENTS, Company, Subscription
from instances.metrics import METRICS
from instances.models import Instance, License, RejectedPayload, UsagePing
from instances.versions import release_n_behind, releases_behind
from scoring.listing import listings_refresh
from scoring.models import ScoreSnapshot
from scoring.services import active_scheme
from tests.conftest import PASSWORD
from usage_portal.web.kit.tables import percent
from usage_portal.web.reports.charts import versions_chart

SEGMENTS = ("Strategic", "Growth", "Scale", "Digital")
COLORS = ("Red", "Yellow", "Green")


# --------------------------------------------------------------------------------------------------
# A book of business of any size, in bulk


@dataclass
class Book:
    companies: list[Company]
    unknown: list[Instance] = field(default_factory=list)
    licenses: list[License] = field(default_factory=list)


def _version(major: int, minor: int, patch: int = 0) -> tuple[str, int]:
    return f"{major}.{minor}.{patch}-ee", major * 1_000_000 + minor * 1_000 + patch


def build_book(n: int, *, csms, prefix: str = "") -> Book:
    """``n`` accounts: every case the reports show, in proportion, whatever ``n``."""
    now = timezone.now()
    companies = Company.objects.bulk_create(
        [
            Company(
                name=f"{prefix}Account {i:03d}",
                crm_account_id=f"{prefix}T{i:06d}",
                segment=SEGMENTS[i % 4],
                csm=csms[i % len(csms)] if SEGMENTS[i % 4] in CSM_OWNED_SEGMENTS else None,
                customer_since=now.date() - timedelta(days=500),
            )
            for i in range(n)
        ]
    )
    subs = Subscription.objects.bulk_create(
        [
            Subscription(
                name=f"A-S{prefix}{i:08d}",
                company=c,
                plan="ultimate",
                licensed_seats=100,
                deployment="self-managed",
            )
            for i, c in enumerate(companies)
        ]
    )
    instances, pings_for = [], []

    def add(i, company, sub, kind, *, days_silent=1, age_days=400, version=(16, 5), users=50):
        text, sort = _version(*version)
        inst = Instance(
            kind="self-managed",
            uuid=f"{prefix}{i:04d}-{kind}",
            hostname=f"{kind}.{prefix}account{i}.example.com".replace("_", "-"),
            company=company,
            subscription=sub,
            version=text,
            version_sort=sort,
            instance_type=kind,
            first_ping_at=now - timedelta(days=age_days),
            last_ping_at=now - timedelta(days=days_silent),
            created_at=now - timedelta(days=age_days),
        )
        instances.append(inst)
        pings_for.append((inst, sub, users))
        return inst

    book = Book(companies)
    for i, (company, sub) in enumerate(zip(companies, subs, strict=True)):
        add(i, company, sub, "production", version=(16, i % 12))
        if i % 3 == 0:
            book.unknown.append(
                add(i, company, sub, "unknown", age_days=10 + i, version=(15, i % 12), users=10)
            )
        if i % 4 == 0:
            add(i, company, sub, "non_production", users=5)
        if i % 5 == 0:
            add(i, company, sub, "obsolete", days_silent=200, version=(13, 12), users=20)
        if i % 6 == 0:
            add(i, company, sub, "geo_secondary", days_silent=90, version=(14, 3), users=0)
    Instance.objects.bulk_create(instances)
    UsagePing.objects.bulk_create(
        [
            UsagePing(
                instance=inst,
                recorded_at=inst.last_ping_at,
                source="http",
                version=inst.version,
                subscription=sub,
                billable_users=users,
                umau=users // 2,
            )
            for inst, sub, users in pings_for
        ]
    )
    snapshots = []
    for i, company in enumerate(companies):
        if i % 8 == 7:
            continue  # never scored: no usage data
        lu = None if i % 8 == 6 else (i % 10) / 10 + 0.05
        color = "NA" if lu is None else "Red" if lu < 0.3 else "Yellow" if lu < 0.6 else "Green"
        snapshots.append(
            ScoreSnapshot(
                company=company,
                scheme="gitlab-handbook-2025@1",
                inputs_hash=f"h{i}",
                detail={},
                as_of=None if lu is None else now.date(),
                license_utilization=lu,
                license_utilization_color=color,
                user_engagement_color=COLORS[i % 3],
                scm_color=COLORS[(i + 1) % 3],
                ci_color=COLORS[(i + 2) % 3],
                cd_color="NA",
                devsecops_color=COLORS[i % 3],
                product_usage_value=None if lu is None else 30 + i % 60,
                product_usage_color=color,
                overall_color=color,
                billable_users=None if lu is None else round(lu * 100),
                licensed_seats=100,
            )
        )
    ScoreSnapshot.objects.bulk_create(snapshots)
    # Written by hand, not by scoring: the accounts' listing follows as scoring's would.
    listings_refresh([c.pk for c in companies])
    # Licenses nobody mapped: pings kept, waiting for a subscription.
    for j in range(max(1, n // 10)):
        lic = License.objects.create(md5=f"{prefix}{j:031d}"[-32:].rjust(32, "0"))
        orphan = Instance.objects.create(
            kind="self-managed",
            uuid=f"{prefix}orphan-{j}",
            hostname=f"lab{j}.{prefix}unmapped.example.com",
            license=lic,
            last_ping_at=now - timedelta(days=3),
        )
        UsagePing.objects.bulk_create(
            [
                UsagePing(
                    instance=orphan,
                    recorded_at=now - timedelta(days=3 + 7 * week),
                    source="http",
                    license=lic,
                    license_md5=lic.md5,
                )
                for week in range(3)
            ]
        )
        book.licenses.append(lic)
    RejectedPayload.objects.bulk_create(
        [RejectedPayload(source="http", reason=f"not JSON ({k})") for k in range(3)]
    )
    return book


@pytest.fixture
def book(csm, other_csm):
    return build_book(24, csms=(csm, other_csm))


def client_for(client, user):
    client.force_login(user)
    return client


def rows_of(response, table="table"):
    return list(response.context[table].page.object_list)


def names_on_page(response) -> list[str]:
    return [row.record.name for row in rows_of(response)]


# --------------------------------------------------------------------------------------------------
# Dashboard


def test_anonymous_users_are_sent_to_sign_in(client, db):
    for name in ("dashboard", "burndown", "versions_report", "data_quality", "metrics_dictionary"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_dashboard_shows_each_accounts_snapshot_figures(client, ops, book):
    response = client_for(client, ops).get("/?per_page=100")
    assert response.status_code == 200
    assert response.context["nav"] == "dashboard"
    html = response.content.decode()
    snaps = {s.company_id: s for s in ScoreSnapshot.objects.filter(is_current=True)}
    rows = {row.record.pk: row for row in rows_of(response)}
    assert len(rows) == 24
    for company in book.companies:
        record = rows[company.pk].record
        snap = snaps.get(company.pk)
        assert record.license_utilization == (snap.license_utilization if snap else None)
        assert record.lu_color == (snap.license_utilization_color if snap else "NA")
        if snap and snap.license_utilization is not None:
            assert percent(snap.license_utilization) in html
        counts = Instance.objects.filter(company=company)
        assert record.n_production == counts.filter(instance_type="production").count()
        assert record.n_unknown == counts.filter(instance_type="unknown").count()
        assert record.n_non_production == counts.filter(instance_type="non_production").count()
        assert (
            record.n_other == counts.filter(instance_type__in=["obsolete", "geo_secondary"]).count()
        )
    assert reverse("account_summary", args=[book.companies[0].pk]) in html
    assert 'class="pill pill-Red"' in html and 'class="pill pill-NA"' in html


def test_dashboard_lu_matches_the_demo_books_snapshots(client, demo):
    client.login(username="viewer", password="demo")
    response = client.get("/")
    html = response.content.decode()
    for snap in ScoreSnapshot.objects.filter(is_current=True).select_related("company"):
        row = re.search(
            rf">{re.escape(snap.company.name)}</a>.*?</tr>", html, flags=re.DOTALL
        ).group(0)
        expected = "NA" if snap.license_utilization is None else percent(snap.license_utilization)
        assert f">{expected}<" in row, snap.company.name
        assert f"pill-{snap.license_utilization_color}" in row


def test_a_csm_lands_on_my_accounts_and_can_see_all(client, csm, book):
    client_for(client, csm)
    mine = client.get("/")
    owned = set(Company.objects.filter(csm=csm).values_list("name", flat=True))
    assert owned and set(names_on_page(mine)) == owned
    assert 'aria-current="page">My accounts' in mine.content.decode().replace("\n", "")
    everyone = client.get("/?csm=")
    assert everyone.context["table"].paginator.count == 24
    # Sorting keeps the choice: the default applies only when no filter is given at all.
    assert client.get("/?sort=-name").context["table"].paginator.count == len(owned)


def test_ops_and_viewers_land_on_all_accounts(client, ops, viewer, book):
    for user in (ops, viewer):
        response = client_for(client, user).get("/")
        assert response.context["table"].paginator.count == 24


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("segment=Scale", lambda c: c.segment == "Scale"),
        ("q=account+00", lambda c: c.name.startswith("Account 00")),
        ("has_unknown=on", lambda c: c.instances.filter(instance_type="unknown").exists()),
        (
            "no_usage_data=on",
            lambda c: not c.score_snapshots.filter(is_current=True, as_of__isnull=False).exists(),
        ),
        (
            "lu_color=Red",
            lambda c: c.score_snapshots.filter(license_utilization_color="Red").exists(),
        ),
        (
            "lu_color=NA",
            lambda c: not c.score_snapshots.exclude(license_utilization_color="NA").exists(),
        ),
        ("scm_color=Green", lambda c: c.score_snapshots.filter(scm_color="Green").exists()),
        ("csm=none", lambda c: c.csm_id is None),
    ],
)
def test_dashboard_filters(client, ops, book, query, expected):
    response = client_for(client, ops).get(f"/?{query}")
    assert response.status_code == 200
    wanted = sorted(c.name for c in Company.objects.all() if expected(c))
    assert wanted, "the book must hold a case for every filter"
    assert sorted(names_on_page(response)) == wanted


def test_dashboard_sorts_with_missing_values_last(client, ops, book):
    client_for(client, ops)
    for order in ("license_utilization", "-license_utilization"):
        records = [r.record for r in rows_of(client.get(f"/?sort={order}"))]
        values = [r.license_utilization for r in records]
        known = [v for v in values if v is not None]
        assert known == sorted(known, reverse=order.startswith("-"))
        assert values[len(known) :] == [None] * (len(values) - len(known))
    colors = [r.record.scm_color for r in rows_of(client.get("/?sort=scm_color"))]
    ranks = [{"Red": 0, "Yellow": 1, "Green": 2}.get(c, 3) for c in colors]
    assert ranks == sorted(ranks)


def test_dashboard_paginates_fifty_per_page(client, ops, csm, other_csm):
    build_book(60, csms=(csm, other_csm))
    response = client_for(client, ops).get("/")
    assert len(rows_of(response)) == 50
    html = response.content.decode()
    assert 'class="pagination"' in html and "1–50 of 60" in html
    assert len(rows_of(client.get("/?page=2"))) == 10


def test_csv_export_has_a_header_and_every_filtered_row(client, viewer, csm, other_csm):
    build_book(60, csms=(csm, other_csm))
    client_for(client, viewer)
    response = client.get("/?segment=&_export=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.getvalue().decode("utf-8-sig"))))
    assert rows[0][:3] == ["Account", "CRM account id", "CSM"]
    assert "License utilization (%)" in rows[0] and "Unknown" in rows[0]
    assert len(rows) - 1 == 60  # every row, not just the first page
    filtered = list(
        csv.reader(io.StringIO(client.get("/?segment=Scale&_export=csv").getvalue().decode()))
    )
    assert len(filtered) - 1 == Company.objects.filter(segment="Scale").count()
    header = rows[0]
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    snap = ScoreSnapshot.objects.filter(license_utilization__isnull=False).first()
    exported = by_name[snap.company.name]
    assert float(exported["License utilization (%)"]) == round(snap.license_utilization * 100, 1)
    assert exported["License utilization colour"] == snap.license_utilization_color


def test_xlsx_export_is_a_valid_workbook(client, viewer, book):
    response = client_for(client, viewer).get("/?csm=&_export=xlsx")
    assert response.status_code == 200
    body = response.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(body))
    data = tablib.Dataset().load(body, format="xlsx")
    assert data.headers[0] == "Account"
    assert len(data) == 24


def test_csm_default_applies_to_exports_too(client, csm, book):
    response = client_for(client, csm).get("/?_export=csv")
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    assert len(rows) - 1 == Company.objects.filter(csm=csm).count()


# --------------------------------------------------------------------------------------------------
# Query counts: the same bound for a small and a large book

PAGES = [
    "/",
    "/?csm=&sort=-n_unknown",
    "/?csm=&lu_color=Red&has_unknown=on&sort=scm_color",
    "/?csm=&_export=csv",
    "/burndown/",
    "/burndown/?csm=&sort=usage_share",
    "/reports/versions/?csm=&older_than=3",
    "/reports/versions/?csm=&_export=xlsx",
    "/data-quality/",
    "/metrics/",
]


MAX_QUERIES = 20


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", PAGES)
def test_pages_run_a_fixed_number_of_queries(
    client, ops, csm, other_csm, url, django_assert_max_num_queries
):
    # Eight accounts are enough for every table of every page to have rows (an empty page
    # skips its query), so the counts must be equal, not just under the same bound.
    build_book(8, csms=(csm, other_csm), prefix="s")
    client_for(client, ops)
    _count_queries(client, url)  # warm the session and permission caches alike
    with django_assert_max_num_queries(MAX_QUERIES):
        small = _count_queries(client, url)
    build_book(150, csms=(csm, other_csm), prefix="l")
    with django_assert_max_num_queries(MAX_QUERIES):
        large = _count_queries(client, url)
    assert large == small, f"{url}: {small} queries for 8 accounts, {large} for 158"


# --------------------------------------------------------------------------------------------------
# CSM Burn-Down


def test_burndown_lists_unknown_instances_of_csm_owned_accounts_only(client, ops, book):
    response = client_for(client, ops).get("/burndown/")
    assert response.context["nav"] == "burndown"
    shown = {row.record.pk for row in rows_of(response)}
    expected = {
        i.pk
        for i in Instance.objects.filter(
            instance_type="unknown", company__segment__in=CSM_OWNED_SEGMENTS
        ).exclude(company__csm=None)
    }
    assert shown == expected and expected
    assert not Instance.objects.filter(pk__in=shown, company__segment__in=["Scale", "Digital"])


def test_burndown_defaults_to_the_signed_in_csm(client, csm, other_csm, book):
    response = client_for(client, csm).get("/burndown/")
    assert {row.record.company.csm_id for row in rows_of(response)} == {csm.pk}
    everyone = client.get("/burndown/?csm=")
    assert {row.record.company.csm_id for row in rows_of(everyone)} == {csm.pk, other_csm.pk}
    by_csm = {row["company__csm"]: row["instances"] for row in response.context["by_csm"]}
    assert by_csm[csm.pk] == len(rows_of(response))


def test_burndown_shows_age_share_and_links(client, csm, book):
    response = client_for(client, csm).get("/burndown/?sort=-age")
    records = [row.record for row in rows_of(response)]
    ages = [(timezone.now() - r.first_seen).days for r in records]
    assert ages == sorted(ages, reverse=True)  # oldest first
    html = response.content.decode()
    record = records[0]
    # The share is its billable users over those of the account's reporting instances
    # (production 50 + unknown 10 + non-production 5 when present; stale ones left out).
    fresh = Instance.objects.filter(
        company=record.company, last_ping_at__gte=timezone.now() - timedelta(days=60)
    )
    total = sum(
        UsagePing.objects.filter(instance__in=fresh).values_list("billable_users", flat=True)
    )
    assert record.usage_share == pytest.approx(10 / total)
    assert percent(10 / total) in html
    report = f"/accounts/{record.company_id}/trends/?report=not_production&amp;instance={record.pk}"
    assert report in html
    assert reverse("instance_edit", args=[record.company_id, record.pk]) in html


def test_burndown_offers_edit_only_to_those_who_may_label(client, viewer, csm, other_csm, book):
    instance = next(i for i in book.unknown if i.company.csm_id == csm.pk)
    edit = reverse("instance_edit", args=[instance.company_id, instance.pk])
    assert edit in client_for(client, csm).get("/burndown/").content.decode()
    assert edit not in client_for(client, viewer).get("/burndown/?csm=").content.decode()
    assert edit not in client_for(client, other_csm).get("/burndown/?csm=").content.decode()


# --------------------------------------------------------------------------------------------------
# GitLab versions


def test_releases_behind_counts_monthly_minor_releases():
    assert releases_behind((17, 7), (17, 7)) == 0
    assert releases_behind((17, 5), (17, 7)) == 2
    assert releases_behind((16, 11), (17, 0)) == 1
    assert releases_behind((15, 11), (16, 0)) == 1  # 15.11 was the last 15.x
    assert releases_behind((13, 12), (14, 1)) == 2  # 13.12 was the last 13.x
    assert release_n_behind((17, 1), 3) == (16, 10)
    assert releases_behind(None, (17, 0)) is None


def test_versions_report_filters_older_than_n_releases(client, viewer, book):
    client_for(client, viewer)
    response = client.get("/reports/versions/?older_than=5")
    assert response.context["nav"] == "versions"
    newest = Instance.objects.aggregate(v=Max("version_sort"))["v"]
    assert response.context["newest"] == f"{newest // 1_000_000}.{newest // 1000 % 1000}"
    major, minor = release_n_behind((newest // 1_000_000, newest // 1000 % 1000), 5)
    cut = major * 1_000_000 + minor * 1000
    shown = {row.record.pk for row in rows_of(response)}
    expected = set(
        Instance.objects.filter(kind="self-managed", version_sort__lt=cut).values_list(
            "pk", flat=True
        )
    )
    assert shown == expected and expected
    # The chart shows every release, with the cut marked.
    chart = response.context["chart"]
    releases = {x for trace in chart["data"] for x in trace["x"]}
    assert "16.11" in releases and "13.12" in releases
    assert chart["layout"]["shapes"][0]["line"]["dash"] == "dash"
    assert chart["layout"]["xaxis"]["title"]["text"] == "GitLab version (major.minor)"
    assert "(count)" in chart["layout"]["yaxis"]["title"]["text"]
    assert 'id="versions-chart-data"' in response.content.decode()


def test_versions_chart_says_why_it_is_empty(client, viewer, db):
    response = client_for(client, viewer).get("/reports/versions/")
    assert response.context["chart"] is None
    assert "nothing to chart" in response.content.decode()


def test_versions_report_lists_each_instance_of_an_account(client, csm, book):
    company = book.companies[0]  # production, unknown, non-production, obsolete, geo
    response = client_for(client, csm).get(f"/reports/versions/?csm=&q={company.name}")
    versions = sorted(row.record.version for row in rows_of(response))
    assert versions == sorted(
        Instance.objects.filter(company=company).values_list("version", flat=True)
    )
    assert len(versions) == 5


# --------------------------------------------------------------------------------------------------
# Data quality


def test_data_quality_groups_unmapped_pings_by_license(client, viewer, book):
    response = client_for(client, viewer).get("/data-quality/")
    assert response.context["nav"] == "data_quality"
    rows = {row.record["license"]: row.record for row in rows_of(response, "licenses")}
    assert set(rows) == {lic.pk for lic in book.licenses}
    for lic in book.licenses:
        assert rows[lic.pk]["pings"] == 3 and rows[lic.pk]["instances"] == 1
    html = response.content.decode()
    assert "lab0.unmapped.example.com" in html
    # Viewers see the list but no way to map.
    assert reverse("license_map", args=[book.licenses[0].pk]) not in html
    assert response.context["rejected"] is None  # rejected payloads are for ops


def test_ops_maps_a_license_in_one_step_and_its_pings_attach(client, ops, book):
    client_for(client, ops)
    lic = book.licenses[0]
    page = client.get("/data-quality/").content.decode()
    assert reverse("license_map", args=[lic.pk]) in page
    subscription = Subscription.objects.get(name="A-S00000003")
    response = client.post(reverse("license_map", args=[lic.pk]), {"subscription": "a-s00000003 "})
    assert response.status_code == 302
    assert response["Location"].endswith("/data-quality/#unmapped-licenses")
    lic.refresh_from_db()
    assert lic.subscription == subscription and lic.mapped_via == "manual"
    assert lic.mapped_by == ops
    assert UsagePing.objects.filter(license=lic, subscription=subscription).count() == 3
    assert Instance.objects.get(license=lic).company == subscription.company
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "3 pings attached" in message and "A-S00000003" in message
    assert lic.pk not in {
        r.record["license"] for r in rows_of(client.get("/data-quality/"), "licenses")
    }


def test_mapping_to_an_unknown_subscription_explains_the_error(client, ops, book):
    lic = book.licenses[0]
    response = client_for(client, ops).post(
        reverse("license_map", args=[lic.pk]), {"subscription": "A-S99999999"}
    )
    assert response.status_code == 400
    assert "No subscription is named “A-S99999999”" in response.content.decode()
    assert UsagePing.objects.filter(license=lic, subscription__isnull=True).count() == 3


@pytest.mark.parametrize("role", ["viewer", "csm"])
def test_only_ops_may_map_licenses(client, request, book, role):
    user = request.getfixturevalue(role)
    lic = book.licenses[0]
    client_for(client, user)
    url = reverse("license_map", args=[lic.pk])
    assert client.post(url, {"subscription": "A-S00000003"}).status_code == 403
    assert client.get(url).status_code == 403
    lic.refresh_from_db()
    assert lic.subscription is None
    assert UsagePing.objects.filter(license=lic, subscription__isnull=True).count() == 3


def test_rejected_payloads_and_stale_instances_show_to_ops(client, ops, book):
    response = client_for(client, ops).get("/data-quality/")
    assert response.context["rejected"].paginator.count == 3
    assert "not JSON (0)" in response.content.decode()
    stale = {row.record.pk for row in rows_of(response, "stale")}
    expected = set(
        Instance.objects.filter(last_ping_at__lt=timezone.now() - timedelta(days=60))
        .exclude(instance_type="obsolete")
        .values_list("pk", flat=True)
    )
    assert stale == expected and expected  # the geo secondaries, silent for 90 days


def _account(name, *, segment="Strategic", saas=False, **kwargs):
    company = Company.objects.create(name=name, crm_account_id=name, segment=segment)
    sub = Subscription.objects.create(
        name=f"A-{name}",
        company=company,
        plan="ultimate",
        licensed_seats=10,
        deployment="saas" if saas else "self-managed",
    )
    return company, sub


def _instance(company, sub, kind="production", *, days_silent=1, version=(16, 5), **kwargs):
    text, sort = _version(*version)
    return Instance.objects.create(
        kind="self-managed",
        uuid=f"{company.name}-{kind}-{days_silent}",
        hostname=f"{kind}.{company.name}.example.com",
        company=company,
        subscription=sub,
        instance_type=kind,
        version=text,
        version_sort=sort,
        last_ping_at=timezone.now() - timedelta(days=days_silent),
        **kwargs,
    )


def test_accounts_without_usage_data_say_why(client, viewer, db):
    cases = {}
    company, _ = _account("nopings")
    cases["nopings"] = "No pings at all"
    company, _ = _account("saasonly", saas=True)
    cases["saasonly"] = "SaaS namespace not tied to a subscription"
    company, sub = _account("unlabeled")
    _instance(company, sub, "unknown")
    cases["unlabeled"] = "No Production instance labeled"
    company, sub = _account("optedout")
    _instance(company, sub, health_inclusion="opt_out")
    cases["optedout"] = "Every Production instance is opted out"
    company, sub = _account("quiet")
    _instance(company, sub, days_silent=75)
    cases["quiet"] = "All instances stale"
    company, sub = _account("legacy")
    _instance(company, sub, version=(13, 12))
    cases["legacy"] = "Version too old for billable users"
    company, sub = _account("healthy")
    _instance(company, sub)
    ScoreSnapshot.objects.create(
        company=company,
        scheme="x",
        inputs_hash="x",
        detail={},
        as_of=timezone.now().date(),
        billable_users=5,
        license_utilization=0.5,
    )
    listings_refresh([company.pk])  # a snapshot written by hand: the listing follows
    response = client_for(client, viewer).get("/data-quality/?acct-per_page=50")
    html = response.content.decode()
    listed = {row.record.name: row for row in rows_of(response, "accounts")}
    assert set(listed) == set(cases)  # "healthy" has usage data
    for name, title in cases.items():
        row_html = re.search(rf">{name}</a>.*?</tr>", html, flags=re.DOTALL).group(0)
        assert title in row_html, name
    assert "GitLab 13.12" in html
    dashboard = client.get("/?no_usage_data=on")
    assert sorted(names_on_page(dashboard)) == sorted(cases)


# --------------------------------------------------------------------------------------------------
# Metrics dictionary


def test_metrics_dictionary_anchors_every_metric_and_measure(client, viewer, db):
    response = client_for(client, viewer).get("/metrics/")
    assert response.context["nav"] == "metrics"
    html = response.content.decode()
    for metric in METRICS:
        assert f'id="{metric.name}"' in html
        for path in metric.key_paths:
            assert path in html
        assert escape(metric.introduced) in html
    scheme = active_scheme()
    for spec in scheme.measures:
        assert f'id="measure-{spec.key}"' in html
        assert spec.thresholds.replace("–", "–") in html.replace("&lt;", "<").replace("&gt;", ">")
    for key in ("scm", "ci", "cd", "devsecops", "product_usage", "overall_health"):
        assert f'id="measure-{key}"' in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "anchors must be unique"
    assert "30 to 2 days before" in html
    assert 'href="#measure-ci_builds_per_user"' in html  # metric → measure links


def test_measure_links_elsewhere_land_on_anchors(client, viewer, db):
    dashboard = client_for(client, viewer).get("/").content.decode()
    anchors = re.findall(r'/metrics/#([\w-]+)"', dashboard)
    html = client.get("/metrics/").content.decode()
    assert anchors
    for anchor in anchors:
        assert f'id="{anchor}"' in html


def test_pages_use_the_shared_table_partial(client, viewer, book):
    html = client_for(client, viewer).get("/?csm=").content.decode()
    assert 'class="table-wrap"' in html
    assert 'aria-sort="ascending"' in html  # sorted by name
    assert 'class="num"' in html
    assert 'class="filters card"' in html and ">Reset</a>" in html
    # The export links keep the filters.
    assert re.search(r'href="\?[^"]*csm=[^"]*_export=csv', html.replace("&amp;", "&"))


def test_login_with_password_works_for_every_role(client, ops, csm, viewer, db):
    for user in (ops, csm, viewer):
        assert client.login(username=user.username, password=PASSWORD)
        assert client.get("/metrics/").status_code == 200
        client.logout()


def test_versions_chart_is_a_plain_figure_with_titled_axes():
    assert versions_chart([]) is None
    figure = versions_chart(
        [
            {"release": 16_011, "instance_type": "production", "n": 2},
            {"release": 16_002, "instance_type": "unknown", "n": 1},
            {"release": 17_000, "instance_type": "production", "n": 1},
        ],
        threshold=(16, 11),
        older_than=1,
    )
    json.dumps(figure)  # plain data, ready for json_script
    assert figure["layout"]["xaxis"]["categoryarray"] == ["16.2", "16.11", "17.0"]
    production = next(t for t in figure["data"] if t["name"] == "Production")
    assert production["y"] == [0, 2, 1] and production["marker"]["color"] == "#6b4fbb"
    assert figure["layout"]["shapes"][0]["x0"] == 0.5  # between 16.2 and 16.11
    assert figure["layout"]["yaxis"]["dtick"] == 1  # no repeated labels on small counts
