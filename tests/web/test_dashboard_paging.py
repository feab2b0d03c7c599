"""The dashboard's sorts and pages: every order total and as documented, every page read once.

The dashboard sorts on the accounts' stored listing (``Company.listing_*``) and reads the pages
past the middle backwards from the end (``kit.tables.TwoStepPaginator``). Here the expected
order of every sort is rebuilt in Python from the sources of truth (the current snapshots, the
instances, the people), and the book is walked page by page: the pages laid end to end must be
that order exactly, each account once, whichever end a page was read from. The query count of
a page must not depend on its number nor on the book's size.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Company
from instances.models import Instance
from scoring.listing import listings_refresh
from scoring.models import ScoreSnapshot
from tests.web.test_reports_views import build_book, client_for, rows_of
from usage_portal.web.dashboard.tables import DashboardTable
from usage_portal.web.kit.tables import page_keys

pytestmark = pytest.mark.django_db

RANK = {"Red": 0, "Yellow": 1, "Green": 2}
COLOR_FIELDS = {
    "ue_color": "user_engagement_color",
    "scm_color": "scm_color",
    "ci_color": "ci_color",
    "cd_color": "cd_color",
    "devsecops_color": "devsecops_color",
    "overall_color": "overall_color",
}
#: Figures a book may lack: sorted with the missing ones last in both directions.
NULLABLE = {
    "licensed_seats": "licensed_seats",
    "billable_users": "billable_users",
    "license_utilization": "license_utilization",
    "product_usage": "product_usage_value",
}
COUNTS = {
    "n_production": ("production",),
    "n_non_production": ("non_production",),
    "n_unknown": ("unknown",),
    "n_other": ("obsolete", "geo_secondary"),
}


@dataclass
class Truth:
    """One account as its sources of truth tell it, not as its listing stores it."""

    pk: int
    name: str
    segment: str
    owner: tuple | None  # the CSM's (first name, last name, username)
    figures: dict
    ranks: dict
    counts: dict
    last_ping: datetime | None
    lu_color: str


def truths() -> list[Truth]:
    snaps = {s.company_id: s for s in ScoreSnapshot.objects.filter(is_current=True)}
    types: dict[int, Counter] = {}
    last: dict[int, datetime] = {}
    for inst in Instance.objects.filter(company__isnull=False):
        types.setdefault(inst.company_id, Counter())[inst.instance_type] += 1
        if inst.last_ping_at and (
            inst.company_id not in last or inst.last_ping_at > last[inst.company_id]
        ):
            last[inst.company_id] = inst.last_ping_at
    out = []
    for c in Company.objects.select_related("csm"):
        snap = snaps.get(c.pk)
        have = types.get(c.pk, Counter())
        out.append(
            Truth(
                pk=c.pk,
                name=c.name,
                segment=c.segment,
                owner=(c.csm.first_name, c.csm.last_name, c.csm.username) if c.csm else None,
                figures={k: getattr(snap, f) if snap else None for k, f in NULLABLE.items()},
                ranks={
                    k: RANK.get(getattr(snap, f), 3) if snap else 3 for k, f in COLOR_FIELDS.items()
                },
                counts={k: sum(have[t] for t in ts) for k, ts in COUNTS.items()},
                last_ping=last.get(c.pk),
                lu_color=snap.license_utilization_color if snap else "NA",
            )
        )
    return out


def _missing_last(rows: list[Truth], value, *, descending: bool) -> list[int]:
    known = sorted((r for r in rows if value(r) is not None), key=lambda r: r.pk)
    known.sort(key=value, reverse=descending)  # stable: ties stay by pk, ascending
    missing = sorted(r.pk for r in rows if value(r) is None)
    return [r.pk for r in known] + missing


def expected_order(rows: list[Truth], sort: str) -> list[int]:
    """The documented order of ``sort``: descending is ascending read backwards, except that
    missing figures stay last (and then ties stay in id order)."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name in NULLABLE:
        return _missing_last(rows, lambda r: r.figures[name], descending=descending)
    if name == "last_ping_at":
        return _missing_last(rows, lambda r: r.last_ping, descending=descending)
    keys = {
        "name": lambda r: (r.name, r.pk),
        "segment": lambda r: (r.segment, r.name, r.pk),
        "csm": lambda r: (r.owner is None, r.owner or (), r.pk),  # unowned after the owned
    }
    keys |= {c: (lambda r, c=c: (r.ranks[c], r.name, r.pk)) for c in COLOR_FIELDS}
    keys |= {c: (lambda r, c=c: (r.counts[c], r.pk)) for c in COUNTS}
    ordered = [r.pk for r in sorted(rows, key=keys[name])]
    return ordered[::-1] if descending else ordered


def sortable_columns() -> list[str]:
    return [
        name
        for name, column in DashboardTable.base_columns.items()
        if column.orderable is not False
    ]


SORTS = [f"{sign}{name}" for name in sortable_columns() for sign in ("", "-")]


@pytest.fixture
def book(csm, other_csm):
    """A book with every kind of tie and gap: accounts never scored, NA figures, one seat count
    for all, many equal instance counts, two accounts of the same name, unowned accounts."""
    build_book(40, csms=(csm, other_csm))
    twin = Company.objects.create(name="Account 003", crm_account_id="TWIN", segment="Growth")
    Company.objects.create(name="Account 003", crm_account_id="TWIN2", segment="Digital")
    Instance.objects.create(
        kind="self-managed", uuid="twin-1", company=twin, instance_type="unknown"
    )
    listings_refresh([twin.pk])
    return Company.objects.count()


def walk(client, query: str, per_page: int) -> list[int]:
    """Every page of the dashboard for ``query``, laid end to end."""
    first = client.get(f"/?{query}&per_page={per_page}&page=1")
    count = first.context["table"].paginator.count
    seen = [r.record.pk for r in rows_of(first)]
    for page in range(2, math.ceil(count / per_page) + 1):
        response = client.get(f"/?{query}&per_page={per_page}&page={page}")
        assert response.context["table"].page.number == page
        seen += [r.record.pk for r in rows_of(response)]
    assert len(seen) == count
    return seen


def test_every_sortable_column_has_a_documented_order():
    # A new sortable column needs its order here (and an index: test_dashboard_indexes).
    assert set(sortable_columns()) == {
        "name",
        "csm",
        "segment",
        "last_ping_at",
        *NULLABLE,
        *COLOR_FIELDS,
        *COUNTS,
    }


@pytest.mark.parametrize("sort", SORTS)
def test_the_pages_of_every_sort_are_the_whole_book_in_order_once(client, ops, book, sort):
    seen = walk(client_for(client, ops), f"sort={sort}", per_page=7)
    assert len(set(seen)) == len(seen) == book  # no account twice, none missing
    assert seen == expected_order(truths(), sort)


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("overall_color=Red&sort=overall_color", lambda r: r.ranks["overall_color"] == 0),
        (
            "segment=Strategic&ci_color=Yellow&sort=-license_utilization",
            lambda r: r.segment == "Strategic" and r.ranks["ci_color"] == 1,
        ),
        ("has_unknown=on&sort=-last_ping_at", lambda r: r.counts["n_unknown"] > 0),
        (
            "no_usage_data=on&sort=-name",
            lambda r: (
                r.figures["license_utilization"] is None and r.figures["product_usage"] is None
            ),
        ),
        ("lu_color=NA&sort=csm", lambda r: r.lu_color not in RANK),
        ("q=account+01&sort=-n_unknown", lambda r: "account 01" in r.name.lower()),
    ],
)
def test_filters_keep_the_sort_and_its_pages(client, ops, book, query, keep):
    seen = walk(client_for(client, ops), query, per_page=3)
    rows = [r for r in truths() if keep(r)]
    assert rows, "the book must hold a case for this filter"
    assert seen == expected_order(rows, query.rsplit("sort=", 1)[1])


def test_a_page_past_the_end_is_the_last_page(client, ops, book):
    client_for(client, ops)
    last = client.get("/?sort=-overall_color&per_page=10&page=999")
    assert last.context["table"].page.number == math.ceil(book / 10)
    assert [r.record.pk for r in rows_of(last)] == expected_order(truths(), "-overall_color")[
        (math.ceil(book / 10) - 1) * 10 :
    ]


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("sort", ["name", "-overall_color", "-n_unknown", "license_utilization"])
def test_a_pages_queries_do_not_grow_with_its_number_or_the_book(client, ops, csm, sort):
    client_for(client, ops).get("/")  # the session's first request does more than a page
    build_book(12, csms=(csm,))
    small = {_queries(client, f"/?sort={sort}&per_page=5&page={p}") for p in (1, 2, 3)}
    build_book(90, csms=(csm,), prefix="big-")
    pages = (1, 2, 10, 11, 20, 21)  # both ends of a 102-account book, and its middle
    large = {_queries(client, f"/?sort={sort}&per_page=5&page={p}") for p in pages}
    assert len(small) == 1 and small == large


def test_the_csm_sort_costs_one_more_query_whatever_the_page(client, ops, csm, other_csm):
    # Owners ranked by name in one small query, instead of a join to every account.
    client_for(client, ops).get("/")
    build_book(30, csms=(csm, other_csm))
    by_name = {_queries(client, f"/?per_page=5&page={p}") for p in (1, 3, 6)}
    by_csm = {_queries(client, f"/?sort=-csm&per_page=5&page={p}") for p in (1, 3, 6)}
    assert len(by_name) == 1 and by_csm == {by_name.pop() + 1}


def test_pages_read_from_either_end_agree(ops, csm, other_csm):
    build_book(23, csms=(csm, other_csm))
    queryset = Company.objects.order_by("listing_overall_rank", "name", "pk")
    everything = list(queryset.values_list("pk", flat=True))
    count = len(everything)
    for bottom in range(count):
        for top in (bottom + 1, bottom + 5, count):
            assert page_keys(queryset, bottom, min(top, count), count) == everything[bottom:top]


def test_an_order_that_is_not_total_is_read_from_the_start(csm, other_csm):
    # Backwards, ties would come in another order and pages would overlap: not done.
    build_book(10, csms=(csm, other_csm))
    queryset = Company.objects.order_by("segment")
    with CaptureQueriesContext(connection) as captured:
        page_keys(queryset, 8, 10, 10)
    assert " DESC" not in captured.captured_queries[-1]["sql"]
    assert "OFFSET 8" in captured.captured_queries[-1]["sql"]


def test_a_csm_sorted_page_reads_the_owners_it_spans_only(client, ops, csm, other_csm):
    client_for(client, ops).get("/")
    build_book(40, csms=(csm, other_csm))  # 10 accounts each, 20 unowned
    first_owner = expected_order(truths(), "csm")[0]
    owner_id = Company.objects.get(pk=first_owner).csm_id
    with CaptureQueriesContext(connection) as captured:
        client.get("/?sort=csm&per_page=5&page=2")
    keys = [q["sql"] for q in captured.captured_queries if "LIMIT 5" in q["sql"]]
    assert len(keys) == 1 and "JOIN" not in keys[0]
    assert re.search(rf'"csm_id" IN \({owner_id}\)', keys[0]), keys[0]
    assert "OFFSET 5" in keys[0]  # into the first owner's accounts, not into the book


def test_a_large_books_counts_read_with_thousands_separators(client, ops):
    Company.objects.bulk_create(
        Company(name=f"Bulk {n:04d}", crm_account_id=f"B{n}", segment="Scale") for n in range(1001)
    )
    html = client_for(client, ops).get("/?page=21").content.decode()
    assert re.search(r'class="[^"]*scope-count[^"]*"[^>]*>\s*1,001 accounts<', html)
    assert "1,001–1,001 of 1,001 accounts" in html
    assert 'aria-current="page">21<' in html
