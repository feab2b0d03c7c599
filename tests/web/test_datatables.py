"""The data tables under the C360 charts: the one-pass writer of the widest ones prints exactly
what the cell-by-cell one does, escaping included."""

from __future__ import annotations

from datetime import date

from usage_portal.web.c360 import datatables
from usage_portal.web.c360.charts import Point, Series

MONTHS = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]


def test_the_one_pass_series_table_matches_the_cell_table():
    series = [
        Series("gitlab<eu>.example.com", [Point(MONTHS[0], 12), Point(MONTHS[2], 1234.5)]),
        Series('R&D "lab"', [Point(m, None) for m in MONTHS]),
        Series("Production total", [Point(m, 40_000) for m in MONTHS]),
    ]
    expected = datatables.table_html(*datatables.series_table(series, MONTHS))
    assert datatables.series_table_html(series, MONTHS) == expected
    assert "gitlab&lt;eu&gt;.example.com" in expected and "R&amp;D &quot;lab&quot;" in expected
    assert expected.index("Nov 2026") < expected.index("Sep 2026")  # newest month first
