"""Page query counts stay fixed whatever the account's or the book's size (timings are not tested).

One small load book holds an 80-instance account beside 1- and 3-instance ones; each page must
cost the same number of queries for the 3- and the 80-instance account (a 1-instance account may
skip one), and no more than the issue's budget, both when it is built from the database (just
after the account's data changed) and when its parts come from the cache.
"""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from accounts.models import Company

C360_BUDGET = 12
DASHBOARD_BUDGET = 12
SECTIONS = (
    "",
    "adoption/",
    "trends/",
    "trends/?report=license",
    "trends/?report=not_production",
    "instances/",
    "scorecard/",
)
DASHBOARD = ("/", "/?sort=-n_unknown", "/?overall_color=Red&sort=overall_color", "/?page=2")


@pytest.fixture
def book(db):
    call_command("generate_load_data", companies=40, weeks=6, csms=2, stdout=io.StringIO())
    sizes = Company.objects.annotate(n=Count("instances")).filter(n__gt=0).order_by("n", "pk")
    return sizes.first(), sizes.filter(n=3).first(), sizes.last()


def _queries(client, url: str) -> int:
    client.get(url)  # caches warmed (content types, permissions)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def _cold_queries(client, company, url: str) -> int:
    """The page built from the database: its account's data just changed (cache missed)."""
    client.get(url)
    Company.objects.filter(pk=company.pk).touch()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


@pytest.mark.parametrize("section", SECTIONS)
def test_c360_section_query_count_does_not_grow_with_the_account(client, book, section):
    client.force_login(get_user_model().objects.get(username="ops"))
    smallest, typical, largest = book
    assert largest.n >= 60
    for measure in (_cold_queries, lambda cl, c, url: _queries(cl, url)):
        counts = {c.n: measure(client, c, f"/accounts/{c.pk}/{section}") for c in book}
        assert max(counts.values()) <= C360_BUDGET, counts
        # A 1-instance account may skip a query (nothing outside health measures to load); an
        # 81-instance account must cost no more than a 3-instance one.
        assert counts[largest.n] <= counts[typical.n] <= counts[smallest.n] + 1, counts


@pytest.mark.parametrize("section", SECTIONS)
def test_a_cached_section_costs_fewer_queries_than_building_it(client, book, section):
    client.force_login(get_user_model().objects.get(username="ops"))
    largest = book[2]
    url = f"/accounts/{largest.pk}/{section}"
    assert _queries(client, url) < _cold_queries(client, largest, url)


@pytest.mark.parametrize("url", DASHBOARD)
def test_dashboard_query_count_is_fixed(client, book, url):
    client.force_login(get_user_model().objects.get(username="ops"))
    assert _queries(client, url) <= DASHBOARD_BUDGET
