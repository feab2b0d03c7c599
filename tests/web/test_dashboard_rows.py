"""The dashboard's hand-built rows are django-tables2's rows: one column declaration drives both.

``DashboardTable`` renders its page through the kit's ``OwnRowsTable`` (each column's
``cell_function``) for speed; rendered the ordinary way, cell by cell through django-tables2,
the same table must give the same HTML, whatever the sort and whatever is missing.
"""

from __future__ import annotations

import re

import django_tables2 as tables
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from django_tables2 import RequestConfig

from tests.web.test_reports_views import build_book
from usage_portal.web.dashboard.selectors import dashboard_accounts
from usage_portal.web.dashboard.tables import DashboardTable
from usage_portal.web.kit.tables import NumberColumn, OwnRowsTable

ROW = re.compile(r"<tr class=\"(?:even|odd)\">.*?</tr>", flags=re.DOTALL)


def _rows(table, request, *, own: bool) -> list[str]:
    table.renders_own_rows = own
    html = table.as_html(request)
    tbody = html[html.index("<tbody") : html.index("</tbody>")]
    return ROW.findall(tbody)


def _table(request) -> DashboardTable:
    table = DashboardTable(dashboard_accounts(), request=request)
    RequestConfig(request, paginate={"per_page": 100}).configure(table)
    return table


@pytest.mark.parametrize(
    "sort", ["name", "-license_utilization", "product_usage", "csm", "-last_ping_at", "n_other"]
)
def test_own_rows_match_django_tables2s_rendering(db, csm, other_csm, ops, sort):
    build_book(24, csms=(csm, other_csm))
    request = RequestFactory().get("/", {"sort": sort})
    request.user = ops
    own = _rows(_table(request), request, own=True)
    ordinary = _rows(_table(request), request, own=False)
    assert len(own) == 24
    assert own == ordinary
    # The book holds every kind of cell: missing figures, NA pills, unowned accounts.
    page = "".join(own)
    for expected in ("<td >—</td>", "pill-NA", "pill-Red", 'class="num">—</td>', "%<span"):
        assert expected in page, expected


def test_a_column_without_its_own_cells_is_refused(db, ops):
    class Plain(OwnRowsTable):
        figure = tables.Column()

    class Overridden(OwnRowsTable):
        figure = NumberColumn()

        def render_figure(self, value):
            return value

    request = RequestFactory().get("/")
    request.user = ops
    for table_class in (Plain, Overridden):
        with pytest.raises(ImproperlyConfigured, match="figure"):
            table_class([{"figure": 1}], request=request).page_rows_html()
