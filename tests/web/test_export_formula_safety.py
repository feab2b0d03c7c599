"""No download runs a formula: every CSV and XLSX cell of text from pings or the CRM is inert.

Accounts named, and instances reporting hostnames, that a spreadsheet would run
(``=HYPERLINK(…)``, DDE's ``+cmd|…``, ``@SUM``, ``-2+3``, a tab before ``=``) are downloaded from
every export through the test client; CSV is read with ``csv`` and XLSX with openpyxl.
"""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest

from instances.models import Instance
from scoring.services import companies_refresh
from scoring.spreadsheet import safe_cell
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db

HOSTILE = (
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "\t=1",
)
#: Written out here, not imported: the test states what a spreadsheet runs on its own.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
PAGE_EXPORTS = {
    "dashboard": "/?csm=",
    "burndown": "/burndown/?csm=",
    "versions": "/reports/versions/?csm=",
}


@pytest.fixture
def hostile(csm):
    """Per hostile text, an account of that name (owned by a CSM, so Burn-Down lists it) with
    one Unknown self-managed instance whose pings report that hostname."""
    ids = []
    for n, text in enumerate(HOSTILE):
        sub = SubscriptionFactory(company__name=text, company__csm=csm)
        instance = InstanceFactory(
            subscription=sub, company=sub.company, hostname=text, instance_type="unknown"
        )
        store_ping(instance, days_ago=1, metrics={"billable_users": 40 + n}, refresh=False)
        ids.append(sub.company_id)
    companies_refresh(company_ids=ids)
    return ids


def _csv_cells(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.reader(io.StringIO(body.decode("utf-8"))))


def _xlsx_cells(response) -> list:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    book = openpyxl.load_workbook(io.BytesIO(response.getvalue()))
    return [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]


def _runnable(text: str) -> bool:
    """Text a spreadsheet would take for a formula (a plain signed number is a number)."""
    return text.startswith(FORMULA_START) and not NUMBER.fullmatch(text)


def _assert_csv_safe(rows: list[list[str]]) -> None:
    cells = [cell for row in rows for cell in row]
    assert [c for c in cells if _runnable(c)] == []
    # Every hostile text is there, quoted inert (the rows were exported, not dropped).
    for text in HOSTILE:
        assert "'" + text in cells, text


@pytest.mark.parametrize("page", PAGE_EXPORTS)
def test_page_csv_downloads_carry_no_formula(client, ops, hostile, page):
    client.force_login(ops)
    _assert_csv_safe(_csv_cells(client.get(PAGE_EXPORTS[page] + "&_export=csv")))


@pytest.mark.parametrize("page", PAGE_EXPORTS)
def test_page_xlsx_downloads_carry_no_formula_cell(client, ops, hostile, page):
    client.force_login(ops)
    cells = _xlsx_cells(client.get(PAGE_EXPORTS[page] + "&_export=xlsx"))
    assert [(c.coordinate, c.value) for c in cells if c.data_type == "f"] == []
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert [t for t in texts if _runnable(t)] == []
    for text in HOSTILE:
        assert "'" + text in texts, text
        stored = next(c for c in cells if c.value == "'" + text)
        assert stored.data_type == "s"  # a string cell, not a formula
    # Figures stay numbers: only text is quoted.
    assert any(isinstance(c.value, int) and not isinstance(c.value, bool) for c in cells)


def test_burndown_xlsx_keeps_figures_numeric(client, ops, hostile):
    client.force_login(ops)
    response = client.get("/burndown/?csm=&_export=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(response.getvalue())).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    billable = rows[0].index("Billable users")
    figures = sorted(row[billable] for row in rows[1:] if row[billable] is not None)
    assert figures == [40 + n for n in range(len(HOSTILE))]


def test_health_csv_carries_no_formula(client, viewer, hostile):
    client.force_login(viewer)
    _assert_csv_safe(_csv_cells(client.get("/exports/health.csv")))


def test_instance_type_export_carries_no_formula(client, ops, hostile, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path
    client.force_login(ops)
    client.post("/exports/instance-types/")
    _assert_csv_safe(_csv_cells(client.get("/exports/instance-types/?download=1")))


def test_xlsx_download_survives_a_control_character_in_a_hostname(client, ops, hostile):
    Instance.objects.filter(company_id=hostile[0]).update(hostname="bell\x07.example.com")
    client.force_login(ops)
    texts = [c.value for c in _xlsx_cells(client.get("/burndown/?csm=&_export=xlsx"))]
    assert "bell\ufffd.example.com" in texts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(1)", "'@SUM(1)"),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("＝1+1", "'＝1+1"),
        ("-12", "-12"),  # a signed number written as text runs nothing
        ("+2.5%", "+2.5%"),
        ("gitlab.example.com", "gitlab.example.com"),
        (-3, -3),
        (4.5, 4.5),
        (None, None),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected
