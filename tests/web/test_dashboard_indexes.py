"""Every dashboard sort reads an index, forwards for its first pages, backwards for its last.

On PostgreSQL, with sorting and sequential scans priced out, the plan of a page's keys query
(the query ``kit.tables.TwoStepPaginator`` sends) must hold no Sort node: an index returns the
rows in the sort's order, or in the exact reverse. A sort order added without its index, or an
index whose NULLS or direction do not match the ORDER BY, fails here.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django_tables2 import RequestConfig

from tests.web.test_dashboard_paging import SORTS
from tests.web.test_reports_views import build_book
from usage_portal.web.dashboard.filters import DashboardFilter
from usage_portal.web.dashboard.selectors import dashboard_accounts
from usage_portal.web.dashboard.tables import DashboardTable

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

#: The CSM sort ranks owners by name at query time (a name is not the account's to index).
UNINDEXED = {"csm", "-csm"}


def _ordered(user, query: dict):
    request = RequestFactory().get("/", query)
    request.user = user
    rows = DashboardFilter(query, queryset=dashboard_accounts(), request=request).qs
    table = DashboardTable(rows, request=request)
    RequestConfig(request, paginate=False).configure(table)
    return table.data.data


def _plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in ("enable_sort", "enable_incremental_sort", "enable_seqscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("sort", [s for s in SORTS if s not in UNINDEXED])
def test_a_sorts_first_and_last_pages_read_an_index(ops, csm, sort):
    build_book(30, csms=(csm,))
    keys = _ordered(ops, {"sort": sort}).values_list("pk", flat=True)
    for page in (keys[100:150], keys.reverse()[100:150]):
        plan = _plan(page)
        assert "Sort" not in plan and "Index" in plan, plan


@pytest.mark.parametrize(
    "query",
    [
        {"overall_color": "Red", "sort": "overall_color"},
        {"csm": "none", "sort": "-n_unknown"},
        {"has_unknown": "on", "sort": "-last_ping_at"},
    ],
)
def test_a_filtered_sort_reads_its_index_too(ops, csm, query):
    build_book(30, csms=(csm,))
    plan = _plan(_ordered(ops, query).values_list("pk", flat=True)[:50])
    assert "Sort" not in plan, plan


def test_the_count_and_the_keys_read_the_account_table_alone(ops, csm):
    build_book(10, csms=(csm,))
    ordered = _ordered(ops, {"sort": "-overall_color", "segment": "Growth", "ci_color": "NA"})
    for sql in (
        str(ordered.values_list("pk", flat=True)[:50].query),
        _count_sql(ordered),
    ):
        assert "JOIN" not in sql and "scoresnapshot" not in sql and "instance" not in sql, sql


def _count_sql(queryset) -> str:
    with CaptureQueriesContext(connection) as captured:
        queryset.count()
    return captured.captured_queries[-1]["sql"]


@pytest.mark.parametrize("sort", ["csm", "-csm"])
def test_a_csm_sorted_page_within_one_owner_reads_an_index(client, ops, csm, other_csm, sort):
    build_book(60, csms=(csm, other_csm))
    client.force_login(ops)
    for page in (2, 9):  # within an owner's accounts, within the unowned ones
        with CaptureQueriesContext(connection) as captured:
            client.get(f"/?sort={sort}&per_page=5&page={page}")
        (keys,) = [q["sql"] for q in captured.captured_queries if "LIMIT 5" in q["sql"]]
        with transaction.atomic(), connection.cursor() as cursor:
            for setting in ("enable_sort", "enable_incremental_sort", "enable_seqscan"):
                cursor.execute(f"SET LOCAL {setting} = off")
            cursor.execute(f"EXPLAIN {keys}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Sort" not in plan and "Index" in plan, plan
