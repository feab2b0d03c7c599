"""The portal's chrome and the dashboard's rough edges a CSM meets in the first hour.

Error pages that keep the navigation and say why; a sidebar without empty headings; one
definition of "no usage data"; filter errors shown instead of an empty list; counts in words;
scope tabs that keep the other filters; the dashboard's column chooser, remembered per person.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.views.defaults import server_error

from accounts.models import Company, TableColumns
from scoring.listing import listings_refresh
from scoring.models import ScoreSnapshot
from tests.conftest import PASSWORD
from tests.web.test_reports_views import _account, _instance, build_book, client_for, names_on_page
from usage_portal.web.dashboard.tables import DEFAULT_COLUMNS, DashboardTable

pytestmark = pytest.mark.django_db

SIDENAV = re.compile(r'<nav class="sidenav".*?</nav>', flags=re.DOTALL)


def _sidenav(response) -> str:
    match = SIDENAV.search(response.content.decode())
    return match.group(0) if match else ""


# --------------------------------------------------------------------------------------------------
# Error pages


def test_a_refused_change_says_why_and_keeps_the_navigation(client, csm, other_csm):
    company = Company.objects.create(
        name="Theirs", crm_account_id="T1", segment="Strategic", csm=other_csm
    )
    response = client_for(client, csm).post(
        f"/accounts/{company.pk}/sentiment/", {"sentiment": "Green", "note": "fine"}
    )
    assert response.status_code == 403
    html = response.content.decode()
    assert "You can change only the accounts you own." in html
    assert "Product Usage Reporting" in _sidenav(response)


def test_a_missing_page_keeps_the_navigation_and_names_no_exception(client, viewer):
    response = client_for(client, viewer).get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html
    assert "Product Usage Reporting" in _sidenav(response)
    assert "Resolver404" not in html and "Http404" not in html


def test_a_missing_page_gives_the_reason_it_was_raised_with(client, viewer):
    company = Company.objects.create(name="Acme", crm_account_id="A1", segment="Scale")
    response = client_for(client, viewer).get(f"/accounts/{company.pk}/trends/?report=bogus")
    assert response.status_code == 404
    assert "No such report." in response.content.decode()
    assert _sidenav(response)


def test_a_missing_account_says_so_in_words(client, viewer):
    response = client_for(client, viewer).get("/accounts/987654/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "matches the given query" not in html  # Django's wording names the model
    assert "Page not found" in html


def test_the_server_error_page_needs_no_database_and_no_request_context(db):
    request = RequestFactory().get("/")
    with CaptureQueriesContext(connection) as captured:
        response = server_error(request)
    assert response.status_code == 500
    assert len(captured) == 0
    html = response.content.decode()
    assert "Something went wrong" in html
    assert 'href="/"' in html


# --------------------------------------------------------------------------------------------------
# The sidebar


def test_a_viewer_sees_no_empty_data_heading(client, viewer):
    nav = _sidenav(client_for(client, viewer).get("/"))
    assert "Reporting" in nav
    assert "Data</p>" not in nav


def test_ops_see_the_data_heading_over_their_data_pages(client, ops):
    nav = _sidenav(client_for(client, ops).get("/"))
    assert "Data</p>" in nav and "Upload usage pings" in nav


# --------------------------------------------------------------------------------------------------
# "No usage data": one definition


def _snapshot(company, **figures):
    snapshot = ScoreSnapshot.objects.create(
        company=company, scheme="x", inputs_hash="x", detail={}, **figures
    )
    listings_refresh([company.pk])  # written by hand, not by scoring: the listing follows
    return snapshot


def test_no_usage_data_leaves_out_an_account_that_shows_a_product_usage_score(client, viewer):
    # Initech in the demo: GitLab 13.x reports no billable users, so License Utilization is NA,
    # but CD and DevSecOps are scored and so is Overall product usage (56, Yellow).
    old, sub = _account("Old version, scored")
    _instance(old, sub, version=(13, 12))
    _snapshot(
        old,
        as_of=timezone.now().date(),
        billable_users=None,
        cd_color="Green",
        product_usage_value=56.5,
        product_usage_color="Yellow",
    )
    _account("Never scored")
    early, sub = _account("Too early to score")
    _instance(early, sub)
    _snapshot(early, as_of=timezone.now().date(), billable_users=None)
    response = client_for(client, viewer).get("/?no_usage_data=on")
    assert sorted(names_on_page(response)) == ["Never scored", "Too early to score"]


def test_the_no_usage_data_filter_says_what_it_means(client, viewer):
    html = client_for(client, viewer).get("/").content.decode()
    help_text = re.search(r'id="id_no_usage_data_helptext"[^>]*>(.*?)</', html, flags=re.DOTALL)
    assert help_text, "the filter carries its definition"
    assert "product usage" in help_text.group(1).lower()
    assert 'aria-describedby="id_no_usage_data_helptext"' in html


# --------------------------------------------------------------------------------------------------
# Filter errors and counts


@pytest.mark.parametrize(
    ("value", "error"),
    [("-5", "greater than or equal to 1"), ("abc", "Enter a number")],
)
def test_an_invalid_filter_is_shown_as_an_error_not_as_an_empty_list(client, ops, value, error):
    build_book(6, csms=(ops,))
    html = client_for(client, ops).get(f"/reports/versions/?older_than={value}").content.decode()
    assert re.search(r'role="alert"[^>]*>[^<]*could not be applied', html)
    field = re.search(r"<input[^>]*id=\"id_older_than\"[^>]*>", html).group(0)
    assert 'aria-invalid="true"' in field and "id_older_than_error" in field
    assert re.search(rf'id="id_older_than_error"[^>]*>[^<]*{error}', html)
    assert "No self-managed instance matches these filters." not in html
    assert "0 instance<" not in html


def test_counts_are_in_words(client, ops):
    build_book(3, csms=(ops,))
    client_for(client, ops)

    def count(url):
        html = client.get(url).content.decode()
        return re.search(r'class="[^"]*scope-count[^"]*"[^>]*>([^<]*)<', html).group(1).strip()

    assert count("/?q=Account+000") == "1 account"
    assert count("/?q=Account+00&csm=") == "3 accounts"
    assert count("/?q=nothing+like+this") == "0 accounts"
    assert count("/reports/versions/?q=nothing+like+this") == "0 instances"
    assert count("/reports/versions/?q=account1.&csm=") == "1 instance"


# --------------------------------------------------------------------------------------------------
# Scope tabs keep the other filters


def _tab(html: str, label: str) -> dict[str, list[str]]:
    href = re.search(rf'<a href="([^"]*)"[^>]*>{label}</a>', html).group(1)
    return parse_qs(urlsplit(href.replace("&amp;", "&")).query, keep_blank_values=True)


def test_my_and_all_accounts_keep_the_other_filters(client, csm):
    html = (
        client_for(client, csm)
        .get("/?segment=Growth&overall_color=Red&sort=-last_ping_at&page=2")
        .content.decode()
    )
    mine, every = _tab(html, "My accounts"), _tab(html, "All accounts")
    for query in (mine, every):
        assert query["segment"] == ["Growth"]
        assert query["overall_color"] == ["Red"]
        assert query["sort"] == ["-last_ping_at"]
        assert "page" not in query  # another scope starts at its first page
    assert mine["csm"] == [str(csm.pk)] and every["csm"] == [""]


# --------------------------------------------------------------------------------------------------
# The column chooser


def _headers(response) -> list[str]:
    return [column.name for column in response.context["table"].columns]


def test_the_dashboard_shows_the_default_columns_until_someone_chooses(client, viewer):
    response = client_for(client, viewer).get("/")
    assert _headers(response) == ["name", *DEFAULT_COLUMNS]
    assert {"overall_color", "last_ping_at"} <= set(DEFAULT_COLUMNS)


def test_chosen_columns_are_remembered_for_the_person_in_the_database(client, viewer, csm):
    client_for(client, viewer)
    response = client.post(
        "/dashboard/columns/",
        {"columns": ["overall_color", "segment", "last_ping_at"], "next": "/?segment=Growth"},
    )
    assert response.status_code == 302 and response["Location"] == "/?segment=Growth"
    stored = TableColumns.objects.get(user=viewer, table="dashboard")
    assert stored.columns == ["segment", "overall_color", "last_ping_at"]  # the table's order
    # A new session (another sign-in) sees them; another person does not.
    fresh = Client()
    assert fresh.login(username=viewer.username, password=PASSWORD)
    assert _headers(fresh.get("/")) == ["name", "segment", "overall_color", "last_ping_at"]
    assert _headers(client_for(Client(), csm).get("/")) == ["name", *DEFAULT_COLUMNS]


def test_back_to_the_default_columns(client, viewer):
    client_for(client, viewer)
    client.post("/dashboard/columns/", {"columns": ["segment"]})
    client.post("/dashboard/columns/", {"reset": "1"})
    assert not TableColumns.objects.filter(user=viewer).exists()
    assert _headers(client.get("/")) == ["name", *DEFAULT_COLUMNS]


def test_an_unknown_column_or_an_outside_address_is_refused(client, viewer):
    client_for(client, viewer)
    response = client.post("/dashboard/columns/", {"columns": ["password"]})
    assert response.status_code == 400
    assert not TableColumns.objects.exists()
    response = client.post("/dashboard/columns/", {"columns": ["csm"], "next": "https://evil/"})
    assert response["Location"] == "/"


def test_exports_carry_every_column_and_only_the_filtered_rows(client, ops):
    build_book(8, csms=(ops,))
    client_for(client, ops).post("/dashboard/columns/", {"columns": ["overall_color"]})
    response = client.get("/?segment=Scale&_export=csv")
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    assert sorted(r["Account"] for r in rows) == ["Account 002", "Account 006"]
    page_only = {"License utilization", "Product usage"}  # pills; their figures export apart
    expected = {
        c.header for c in DashboardTable([]).columns.iterall() if not c.column.exclude_from_export
    }
    assert set(rows[0]) == expected and not page_only & set(rows[0])
    assert {"CSM", "Segment", "Last ping", "Unknown", "License utilization (%)"} <= set(rows[0])


def test_the_remembered_columns_cost_one_query_whatever_the_page_size(client, ops):
    build_book(5, csms=(ops,), prefix="a")
    client_for(client, ops).post("/dashboard/columns/", {"columns": ["overall_color", "csm"]})

    def queries():
        client.get("/")
        with CaptureQueriesContext(connection) as captured:
            client.get("/")
        return len(captured)

    small = queries()
    build_book(40, csms=(ops,), prefix="b")
    assert queries() == small


@pytest.mark.parametrize(
    ("url", "all_label"),
    [("/reports/versions/", "All CSMs"), ("/burndown/", "All CSMs")],
)
def test_the_reports_scope_tabs_keep_the_other_filters_too(client, csm, url, all_label):
    html = client_for(client, csm).get(f"{url}?q=acme&segment=Growth").content.decode()
    mine = _tab(html, "My accounts")
    every = _tab(html, all_label)
    for query in (mine, every):
        assert query["q"] == ["acme"] and query["segment"] == ["Growth"]
    assert mine["csm"] == [str(csm.pk)] and every["csm"] == [""]


def test_a_report_with_invalid_filters_says_they_were_not_applied(client, ops):
    build_book(3, csms=(ops,))
    html = client_for(client, ops).get("/reports/versions/?older_than=abc").content.decode()
    count = re.search(r'class="[^"]*scope-count[^"]*"[^>]*>([^<]*)<', html).group(1).strip()
    assert count == "Filters not applied"
