"""The list pages' CSV and XLSX downloads are streamed: same file as before, flat memory.

Each download is checked against what django-tables2's in-memory export wrote before it was
streamed (``table.as_values()`` through ``export_cell`` into a tablib ``Dataset``, in UTC): the
same CSV bytes, the same XLSX values and cell types, read back by openpyxl and tablib. The
memory a download takes while it is read, and the queries it runs, do not grow with the number
of rows; the first piece leaves before the last record is read.
"""

from __future__ import annotations

import csv
import io
import tracemalloc
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal

import django_tables2 as tables
import openpyxl
import pytest
import tablib
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import format_html
from django_tables2.rows import BoundRow

from accounts.models import Company
from instances.models import Instance
from scoring.models import ScoreSnapshot
from tests.web.test_reports_views import build_book
from usage_portal.web.kit import streaming, views
from usage_portal.web.kit.exports import export_cell
from usage_portal.web.kit.tables import CsmColumn, DateColumn, NumberColumn

pytestmark = pytest.mark.django_db

DASHBOARD = "/?csm="
PAGES = {
    "dashboard": DASHBOARD,
    "dashboard, filtered and sorted": "/?csm=&segment=Strategic&sort=-n_unknown",
    "burndown": "/burndown/?csm=&sort=usage_share",
    "versions": "/reports/versions/?csm=&sort=-behind",
}
#: Text a spreadsheet or an XML reader would get wrong if written as it is.
AWKWARD = (
    "Smith & Sons <Holdings>",
    '=HYPERLINK("http://x","y")',
    " leading and trailing space ",
    "two\nlines",
    "carriage\rreturn",
    "bell\x07inside",
    "Ünïcødé 株式会社 🚀",
    "-2+3",
    "",
)


@pytest.fixture
def awkward_book(csm, other_csm):
    """A small book, plus accounts (and instance hostnames) of every awkward text."""
    build_book(12, csms=(csm, other_csm))
    for n, text in enumerate(AWKWARD):
        company = Company.objects.create(
            name=text or "(blank)",
            crm_account_id=f"AWK{n:04d}",
            segment="Strategic",
            csm=csm if n % 2 else None,
            customer_since=date(2025, 1, 1),
        )
        Instance.objects.create(
            kind="self-managed",
            uuid=f"awkward-{n}",
            hostname=text,
            company=company,
            instance_type="unknown",
            version="16.1.0-ee",
            version_sort=16_001_000,
            last_ping_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC),
        )
        ScoreSnapshot.objects.create(
            company=company,
            scheme="gitlab-handbook-2025@1",
            inputs_hash=f"awk{n}",
            detail={},
            license_utilization=0.123456,
            license_utilization_color="Red",
            billable_users=7,
            licensed_seats=100,
        )


@pytest.fixture
def spy(monkeypatch):
    """The tables the views hand to ``streamed_export``, to compute the expected file from."""
    seen = []
    real = views.streamed_export

    def recording(export_format, table, **kwargs):
        seen.append(table)
        return real(export_format, table, **kwargs)

    monkeypatch.setattr(views, "streamed_export", recording)
    return seen


def _expected_dataset(table, export_format: str) -> tablib.Dataset:
    """What the download held before it was streamed: django-tables2's export of the table."""
    try:
        title = table.Meta.model._meta.verbose_name_plural.title()
    except AttributeError:
        title = "Export Data"
    dataset = tablib.Dataset(title=title)
    with timezone.override(UTC):
        values = list(table.as_values())
    dataset.headers = [export_cell(h, export_format) for h in values[0]]
    for row in values[1:]:
        dataset.append([export_cell(v, export_format) for v in row])
    return dataset


def _download(client, url: str, export_format: str) -> tuple[StreamingHttpResponse, bytes]:
    response = client.get(f"{url}&_export={export_format}")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    return response, b"".join(response.streaming_content)


def _sheet(body: bytes):
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert len(book.worksheets) == 1
    return book.worksheets[0]


def _cells(sheet) -> list[list[tuple]]:
    # Value and type of every cell (openpyxl reads a blank cell and an empty text alike). The
    # export it replaces wrote a CR as it is, which an XML reader reads as a LF (the streamed
    # one keeps it: test_xlsx_reads_back_with_tablib): compared as LFs.
    def value(v):
        return v.replace("\r", "\n") if isinstance(v, str) else v

    return [
        [(value(c.value), c.data_type, c.is_date) for c in row if c.value not in (None, "")]
        for row in sheet.iter_rows()
    ]


# --------------------------------------------------------------------------------------------------
# The same file as before


@pytest.mark.parametrize("page", PAGES)
def test_csv_is_byte_for_byte_the_export_it_replaces(client, ops, awkward_book, spy, page):
    client.force_login(ops)
    response, body = _download(client, PAGES[page], "csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    expected = _expected_dataset(spy[-1], "csv")
    assert len(expected) >= 5  # the pages' rows are there, not just a header
    assert body.decode("utf-8") == expected.export("csv")


@pytest.mark.parametrize("page", PAGES)
def test_xlsx_holds_the_values_and_types_of_the_export_it_replaces(
    client, ops, awkward_book, spy, page
):
    client.force_login(ops)
    response, body = _download(client, PAGES[page], "xlsx")
    assert response["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    before = _sheet(_expected_dataset(spy[-1], "xlsx").export("xlsx"))
    after = _sheet(body)
    assert after.title == before.title
    assert _cells(after) == _cells(before)
    assert after.freeze_panes == "A2"
    assert all(cell.font.b for cell in next(after.iter_rows()))  # the header row in bold
    # Figures are numbers and dates are dates, as before; no cell is a formula.
    types = {(type(c.value), c.data_type) for row in after.iter_rows() for c in row}
    assert (int, "n") in types and (datetime, "d") in types
    assert not any(t == "f" for _, t in types)


def test_xlsx_reads_back_with_tablib(client, ops, awkward_book, spy):
    client.force_login(ops)
    _, body = _download(client, DASHBOARD, "xlsx")
    data = tablib.Dataset().load(body, format="xlsx")
    expected = _expected_dataset(spy[-1], "xlsx")
    assert data.headers == expected.headers
    assert len(data) == len(expected) == Company.objects.count()
    names = data.get_col(0)
    assert "Smith & Sons <Holdings>" in names and '\'=HYPERLINK("http://x","y")' in names
    assert " leading and trailing space " in names and "carriage\rreturn" in names
    assert "bell\ufffdinside" in names  # XML 1.0 holds no C0 control character


def test_downloads_keep_their_file_names(client, ops, awkward_book):
    client.force_login(ops)
    for url, name in [
        ("/?csm=", "product-usage-dashboard"),
        ("/burndown/?csm=", "csm-burndown-unknown-instances"),
        ("/reports/versions/?csm=", "gitlab-version-details"),
    ]:
        for fmt in ("csv", "xlsx"):
            response, _ = _download(client, url, fmt)
            assert response["Content-Disposition"] == f'attachment; filename="{name}.{fmt}"'


def test_filters_that_cannot_be_used_download_the_header_alone(client, ops, awkward_book):
    client.force_login(ops)
    _, body = _download(client, "/?csm=&lu_color=Purple", "csv")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert len(rows) == 1 and rows[0][0] == "Account"


@pytest.mark.parametrize(
    "query",
    [
        "/?sort=__class__",
        "/?csm=&sort=-name&page=999",
        "/?csm=&sort=-product_usage&per_page=0",
        "/?csm=abc&segment=Nowhere",
        "/burndown/?csm=&sort=-age",
        "/reports/versions/?csm=&older_than=1e400&sort=release",
        "/reports/versions/?csm=&instance_type=unknown&sort=-subscription",
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_odd_query_strings_still_download_whole_files(client, ops, awkward_book, query, fmt):
    # A streamed download fails after its 200 if it fails at all: read each one to the end.
    client.force_login(ops)
    _, body = _download(client, query, fmt)
    if fmt == "csv":
        assert next(csv.reader(io.StringIO(body.decode())))[0] == "Account"
    else:
        assert _sheet(body)["A1"].value == "Account"


def test_a_format_the_page_does_not_offer_shows_the_page(client, ops, awkward_book):
    client.force_login(ops)
    response = client.get("/?csm=&_export=json")
    assert response.status_code == 200
    assert not response.streaming
    assert response["Content-Type"].startswith("text/html")


# --------------------------------------------------------------------------------------------------
# Cell values: django-tables2's, decided once per column


class ValuesTable(tables.Table):
    """Every way a column finds its export value."""

    name = tables.Column()
    segment = tables.Column()  # a choices field: its label
    csm = CsmColumn()  # a relation, missing on some accounts
    csm_name = tables.Column(accessor="csm__first_name")  # across a missing relation
    flagged = tables.Column(accessor="name", empty_values=())
    since = DateColumn(accessor="customer_since")
    seats = NumberColumn(accessor="pk")
    label = tables.Column(accessor="get_segment_display")  # a callable accessor
    row_aware = tables.Column(accessor="name")
    nowhere = tables.Column(accessor="no_such_attribute")
    rendered = tables.Column(accessor="crm_account_id")
    linked = tables.Column(accessor="name", linkify=lambda record: f"/{record.pk}/")

    class Meta:
        model = Company
        fields = ()

    def value_flagged(self, value, record):
        return f"{value}:{record.pk}"

    def value_row_aware(self, bound_row, value):
        return f"{bound_row.record.pk}-{value}"

    def render_rendered(self, value):
        return format_html("<b>{}</b>", value)


def test_cell_value_functions_give_django_tables2s_export_values(csm):
    Company.objects.create(name="Owned", crm_account_id="V1", segment="Scale", csm=csm)
    Company.objects.create(name="Unowned", crm_account_id="", segment="Growth")
    table = ValuesTable(Company.objects.select_related("csm").order_by("pk"))
    columns = streaming.export_columns(table)
    functions = [streaming.cell_value_function(column, table) for column in columns]
    records = list(Company.objects.select_related("csm").order_by("pk"))
    got = [[f(record) for f in functions] for record in records]
    expected = [[BoundRow(r, table=table).get_cell_value(c.name) for c in columns] for r in records]
    assert got == expected
    assert got[0][:4] == ["Owned", "Scale", csm.get_full_name() or csm.username, csm.first_name]
    assert got[1][2:4] == [None, None]  # no CSM: nothing, nor across the missing relation


def test_export_values_of_rows_that_are_not_model_instances():
    class DictTable(tables.Table):
        a = tables.Column()
        b = tables.Column(accessor="b__c")

    rows = [{"a": 1, "b": {"c": "x"}}, {"a": None, "b": {}}]
    table = DictTable(rows)
    columns = streaming.export_columns(table)
    got = list(streaming.export_values(table, columns, streaming.table_records(table)))
    assert got == list(table.as_values())


# --------------------------------------------------------------------------------------------------
# The XLSX writer: what each cell becomes


def _written(rows: list[list]):
    body = b"".join(streaming.xlsx_pieces(iter(rows), streaming.sheet_title("Sheet [1]: test")))
    return _sheet(body)


def test_xlsx_cells_keep_their_types_and_their_text():
    moment = datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)
    sheet = _written(
        [
            ["text", "int", "float", "decimal", "bool", "date", "datetime", "none", "nan"],
            [
                "a & b < c > d \"e\" 'f'",
                -3,
                2.5,
                Decimal("1.25"),
                True,
                date(2026, 1, 15),
                moment,
                None,
                float("nan"),
            ],
            ["  spaced\t", 10**15, 0.1, Decimal("-0"), False, date(1999, 12, 31), None, "", "x"],
        ]
    )
    assert sheet.title == "Sheet -1-- test"
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[1] == [
        "a & b < c > d \"e\" 'f'",
        -3,
        2.5,
        1.25,
        True,
        datetime(2026, 1, 15),
        datetime(2026, 3, 1, 12, 30, 15),
        None,
        "nan",  # not a number Excel can hold: its text
    ]
    assert values[2][:6] == ["  spaced\t", 10**15, 0.1, 0, False, datetime(1999, 12, 31)]
    assert sheet["F2"].number_format == "yyyy-mm-dd"
    assert sheet["G2"].number_format == "yyyy-mm-dd h:mm:ss"


def test_xlsx_text_that_looks_like_a_formula_is_a_string_cell():
    sheet = _written([["h"], ["=1+1"], ["@SUM(A1)"]])
    assert [(c.value, c.data_type) for c in sheet["A"][1:]] == [("=1+1", "s"), ("@SUM(A1)", "s")]


# --------------------------------------------------------------------------------------------------
# Streamed: memory and queries do not grow with the rows


@pytest.fixture
def small_fetches(monkeypatch):
    """Fetches and pieces of a few rows, so a test book of hundreds spans many of them."""
    monkeypatch.setattr(streaming, "ROWS_PER_FETCH", 50)
    monkeypatch.setattr(streaming, "ROWS_PER_PIECE", 25)
    monkeypatch.setattr(streaming, "ZIP_PIECE_BYTES", 1024)
    # zlib holds up to 16,384 symbols before it emits a block, more than a test book's sheet:
    # a smaller window of symbols makes it emit as it goes, as it does over a real book's.
    monkeypatch.setattr(
        streaming, "_deflate", lambda: zlib.compressobj(level=6, memLevel=1, wbits=-zlib.MAX_WBITS)
    )


@pytest.fixture
def pulled(monkeypatch):
    """How many records the download has read from the database so far."""
    count = {"records": 0}
    real = streaming._Chunked.__iter__

    def counting(self):
        for record in real(self):
            count["records"] += 1
            yield record

    monkeypatch.setattr(streaming._Chunked, "__iter__", counting)
    return count


def _consume(response) -> tuple[int, int]:
    """(bytes, peak bytes allocated) while the response is read."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = sum(len(piece) for piece in response.streaming_content)
        return size, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _measure(client, url) -> tuple[int, int, int]:
    """(bytes, peak allocated while read, queries) of one download."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        assert isinstance(response, StreamingHttpResponse)
        size, peak = _consume(response)
    return size, peak, len(queries)


N = 300


def _assert_flat(client, ops, csm, other_csm, fmt):
    client.force_login(ops)
    url = f"{DASHBOARD}&_export={fmt}"
    build_book(N, csms=(csm, other_csm), prefix="a")
    _measure(client, url)  # warm: imports, the session, the permission caches
    small = _measure(client, url)
    build_book(3 * N, csms=(csm, other_csm), prefix="b")
    large = _measure(client, url)
    assert large[0] > 3 * small[0]  # four times the rows were written
    assert large[1] < 1.5 * small[1] + 256 * 1024, (
        f"{fmt}: {small[1]} bytes at peak for {N} rows, {large[1]} for {4 * N}"
    )
    assert large[2] == small[2], f"{fmt}: {small[2]} queries for {N} rows, {large[2]} for {4 * N}"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_memory_and_queries_do_not_grow_with_the_rows(
    client, ops, csm, other_csm, small_fetches, fmt
):
    _assert_flat(client, ops, csm, other_csm, fmt)


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_memory_and_queries_do_not_grow_with_the_rows_on_postgresql(
    client, ops, csm, other_csm, small_fetches, fmt
):
    # A server-side cursor there: the rows wait in PostgreSQL, not in the web process.
    _assert_flat(client, ops, csm, other_csm, fmt)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_first_pieces_leave_before_the_last_record_is_read(
    client, ops, csm, other_csm, small_fetches, pulled, fmt
):
    build_book(N, csms=(csm, other_csm))
    client.force_login(ops)
    response = client.get(f"{DASHBOARD}&_export={fmt}")
    pieces = iter(response.streaming_content)
    first = next(pieces)
    assert pulled["records"] == 0  # the header leaves before the database is asked
    if fmt == "csv":
        assert first.decode().startswith("Account,CRM account id,CSM,")
        assert first.count(b"\r\n") == 1
    else:
        assert first.startswith(b"PK\x03\x04")  # a zip's first local file header
    while pulled["records"] == 0:
        next(pieces)
    next(pieces)  # a piece with rows in it
    assert 0 < pulled["records"] < N  # ... left before the last record was read
    assert b"".join(pieces)
    assert pulled["records"] == N


def test_downloads_are_written_in_utc_while_streamed(client, ops, awkward_book, settings):
    # The rows are written after the view has returned, outside the reader's zone: with a
    # server zone of Tokyo (late on the 15th in UTC is the 16th there) they still say the 15th.
    settings.TIME_ZONE = "Asia/Tokyo"
    client.force_login(ops)
    _, body = _download(client, "/reports/versions/?csm=", "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    dates = {r["Last ping"] for r in rows if r["UUID"].startswith("awkward-")}
    assert dates == {"2026-01-15"}
