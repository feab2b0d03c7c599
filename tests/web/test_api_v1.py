"""The Integration API (docs/api.md): every account's health a page at a time, by a session or a
``read`` token; the health CSV by a token too; the one gate and its throttle on all three.

Before: only one account at a time over the API, and the CSV for a session alone.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import Company
from instances.services.tokens import ingest_token_create
from scoring.models import ScoreSnapshot
from scoring.services import companies_refresh
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping
from tests.web.test_throttle import fresh_address
from usage_portal.web.api.pagination import (
    PARAMETERS,
    BadParameter,
    Position,
    cursor_decode,
    cursor_encode,
    health_query,
)

pytestmark = pytest.mark.django_db

LIST = "/api/v1/accounts/health"
CSV = "/exports/health.csv"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def read_secret() -> str:
    return ingest_token_create(name="salesforce sync", scopes=["read"])[1]


@pytest.fixture
def book():
    """Two accounts with usage, one scored without any (every measure NA), one never scored."""
    with_usage = []
    for seats, users in ((200, 80), (100, 95)):
        sub = SubscriptionFactory(licensed_seats=seats)
        inst = InstanceFactory(subscription=sub, company=sub.company)
        store_ping(inst, days_ago=1, metrics={"billable_users": users}, refresh=False)
        with_usage.append(sub.company)
    without_usage = CompanyFactory(name="No Data Inc")
    companies_refresh(company_ids=[c.pk for c in (*with_usage, without_usage)], history=False)
    never_scored = CompanyFactory(name="Just Imported")
    return {"scored": [*with_usage, without_usage], "never_scored": never_scored}


def pages(client: Client, url: str, **headers) -> list[dict]:
    """Every page, following ``next`` to the end."""
    bodies = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.content
        bodies.append(response.json())
        url = bodies[-1]["next"]
    return bodies


def ids(bodies: list[dict]) -> list[str]:
    return [item["crm_account_id"] for body in bodies for item in body["results"]]


# --------------------------------------------------------------------------------------------------
# The list


def test_the_list_gives_each_scored_account_as_the_single_endpoint_does(client, viewer, book):
    client.force_login(viewer)
    body = client.get(LIST).json()

    assert set(body) == {"results", "next", "updated_through"}
    assert body["next"] is None
    scored = {c.crm_account_id for c in book["scored"]}
    assert {item["crm_account_id"] for item in body["results"]} == scored
    assert book["never_scored"].crm_account_id not in ids([body])
    for item in body["results"]:
        single = client.get(f"/api/v1/accounts/{item['crm_account_id']}/health").json()
        assert item == single
    no_data = next(
        i for i in body["results"] if i["crm_account_id"] == book["scored"][2].crm_account_id
    )
    assert no_data["as_of"] is None and no_data["measures"]["scm"]["color"] == "NA"
    newest = ScoreSnapshot.objects.filter(is_current=True).order_by("computed_at", "id").last()
    assert body["updated_through"] == newest.computed_at.isoformat()


def test_a_read_token_lists_and_nothing_else_does(client, book, read_secret):
    assert client.get(LIST, headers=bearer(read_secret)).status_code == 200

    anonymous = client.get(LIST)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "authentication required" in anonymous.json()["error"]
    unknown = client.get(LIST, headers=bearer("upt_guess"))
    assert unknown.status_code == 401 and unknown["WWW-Authenticate"].startswith("Bearer")
    _, ingest_only = ingest_token_create(name="gitlab.acme")
    refused = client.get(LIST, headers=bearer(ingest_only))
    assert refused.status_code == 403
    assert "lacks the 'read' scope" in refused.json()["error"]
    assert "results" not in refused.json()


@pytest.mark.parametrize("method", ["head", "post", "put", "delete"])
def test_only_get_is_allowed(client, read_secret, method):
    assert getattr(client, method)(LIST, headers=bearer(read_secret)).status_code == 405


def test_pages_of_one_scoring_run_list_every_account_once_in_order(client, viewer):
    # One run stamps every account with the same computed_at: the id must break the tie, or a
    # cursor on the time alone skips or repeats accounts at a page boundary.
    companies = CompanyFactory.create_batch(7)
    companies_refresh(company_ids=[c.pk for c in companies], history=False)
    assert ScoreSnapshot.objects.values("computed_at").distinct().count() == 1
    client.force_login(viewer)

    bodies = pages(client, f"{LIST}?limit=2")

    assert [len(b["results"]) for b in bodies] == [2, 2, 2, 1]
    expected = list(
        ScoreSnapshot.objects.filter(is_current=True)
        .order_by("computed_at", "id")
        .values_list("company__crm_account_id", flat=True)
    )
    assert ids(bodies) == expected and len(set(expected)) == 7
    assert bodies[-1]["next"] is None
    link = urlsplit(bodies[0]["next"])
    assert link.scheme == "http" and link.path == LIST
    assert parse_qs(link.query)["limit"] == ["2"]


def test_accounts_scored_while_a_client_pages_shift_nothing_it_has_still_to_read(client, viewer):
    companies = CompanyFactory.create_batch(6)
    companies_refresh(company_ids=[c.pk for c in companies], history=False)
    client.force_login(viewer)
    first = client.get(f"{LIST}?limit=2").json()
    already = ids([first])

    # Meanwhile: an account of the first page is rescored, and a new one is scored.
    rescored = Company.objects.get(crm_account_id=already[0])
    Company.objects.filter(pk=rescored.pk).update(sentiment="Green", sentiment_at=timezone.now())
    newcomer = CompanyFactory(name="Newcomer")
    assert companies_refresh(company_ids=[rescored.pk, newcomer.pk], history=False) == 2

    rest = ids(pages(client, first["next"]))
    originals = [c.crm_account_id for c in companies]
    # Every account not yet read is read: nothing skipped (an offset would skip one here).
    assert set(already) | set(rest) >= set(originals)
    assert len(rest) == len(set(rest))
    # The changed ones come last, with their new health.
    assert set(rest[-2:]) == {rescored.crm_account_id, newcomer.crm_account_id}


def _stamp(company, when: datetime) -> None:
    ScoreSnapshot.objects.filter(company=company, is_current=True).update(computed_at=when)


def test_updated_since_lists_the_accounts_whose_health_was_computed_from_then_on(client, viewer):
    old, boundary, new = CompanyFactory.create_batch(3)
    companies_refresh(company_ids=[old.pk, boundary.pk, new.pk], history=False)
    since = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    _stamp(old, since - timedelta(microseconds=1))
    _stamp(boundary, since)
    _stamp(new, since + timedelta(hours=1))
    client.force_login(viewer)

    for written in (
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:00:00%2B00:00",
        "2026-03-01T14:00:00%2B02:00",
    ):
        body = client.get(f"{LIST}?updated_since={written}").json()
        assert ids([body]) == [boundary.crm_account_id, new.crm_account_id], written
    # A '+' left unencoded arrives as a space: read as the zone it was.
    body = client.get(f"{LIST}?updated_since=2026-03-01T14:00:00+02:00").json()
    assert ids([body]) == [boundary.crm_account_id, new.crm_account_id]

    # The filter and the size ride along in ``next``.
    bodies = pages(client, f"{LIST}?updated_since=2026-03-01T12:00:00Z&limit=1")
    assert ids(bodies) == [boundary.crm_account_id, new.crm_account_id]
    assert parse_qs(urlsplit(bodies[0]["next"]).query)["updated_since"] == [since.isoformat()]
    assert bodies[-1]["updated_through"] == (since + timedelta(hours=1)).isoformat()

    empty = client.get(f"{LIST}?updated_since=2030-01-01T00:00:00Z").json()
    assert empty == {"results": [], "next": None, "updated_through": None}


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "parameter", "says"),
    [
        ("limit=0", "limit", "from 1 to 1000"),
        ("limit=1001", "limit", "from 1 to 1000"),
        ("limit=ten", "limit", "whole number"),
        ("limit=-5", "limit", "whole number"),
        ("limit=1&limit=2", "limit", "more than once"),
        ("updated_since=2026-03-01", "updated_since", "time zone"),
        ("updated_since=2026-03-01T12:00:00", "updated_since", "time zone"),
        ("updated_since=yesterday", "updated_since", "ISO 8601"),
        ("updated_since=2026-03-01T25:00:00Z", "updated_since", "ISO 8601"),
        ("updated_since=", "updated_since", "ISO 8601"),
        ("updated_since=9999-12-31T23:00:00-05:00", "updated_since", "ISO 8601"),
        ("updated_since=0001-01-01T00:30:00%2B01:00", "updated_since", "ISO 8601"),
        ("cursor=not-a-cursor!", "cursor", "not one this API gave out"),
        ("cursor=" + _cursor(b"[1, 2]"), "cursor", "not one this API gave out"),
        ("cursor=" + _cursor(b'["2026-03-01T12:00:00", 5]'), "cursor", "not one"),
        ("cursor=" + _cursor(b'["2026-03-01T12:00:00Z", true]'), "cursor", "not one"),
        ("cursor=" + _cursor(b"{}"), "cursor", "not one"),
        ("cursor=" + _cursor(b'["9999-12-31T23:00:00-05:00", 5]'), "cursor", "not one"),
        ("updatedSince=2026-03-01T12:00:00Z", "updatedSince", "unknown parameter"),
        ("page=2", "page", "unknown parameter"),
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it(client, viewer, book, query, parameter, says):
    client.force_login(viewer)
    response = client.get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["parameter"] == parameter and says in body["error"]


_texts = st.one_of(
    st.text(max_size=40),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.builds(
        lambda d, n: _cursor(f'["{d.isoformat()}", {n}]'.encode()),
        st.datetimes(timezones=st.timezones()),
        st.integers(),
    ),
    st.integers().map(str),
)


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=5)),
        st.lists(_texts, min_size=1, max_size=2),
        max_size=4,
    )
)
def test_any_query_string_is_read_or_refused_by_name(params):
    """Never another exception (a 500): and what is read compares in UTC in the database."""
    try:
        query = health_query(params)
    except BadParameter as bad:
        assert bad.parameter in params
        return
    for when in (query.updated_since, query.after and query.after.computed_at):
        assert not when or when.utcoffset().total_seconds() == 0


@given(st.datetimes(timezones=st.just(UTC)), st.integers(min_value=1, max_value=2**63))
def test_a_cursor_reads_back_as_the_position_it_was_made_from(when, snapshot_id):
    position = Position(when, snapshot_id)
    assert cursor_decode(cursor_encode(position)) == position


def test_the_default_page_is_100_and_the_largest_1000(client, viewer):
    companies = CompanyFactory.create_batch(101)
    companies_refresh(company_ids=[c.pk for c in companies], history=False)
    client.force_login(viewer)
    first = client.get(LIST).json()
    assert len(first["results"]) == 100 and first["next"]
    assert len(client.get(f"{LIST}?limit=1000").json()["results"]) == 101


@pytest.mark.parametrize("credentials", ["session", "token"])
def test_a_page_costs_the_same_queries_whatever_its_size(
    client, viewer, read_secret, credentials, django_assert_max_num_queries
):
    headers = bearer(read_secret) if credentials == "token" else {}
    if credentials == "session":
        client.force_login(viewer)
    companies = [CompanyFactory() for _ in range(3)]
    companies_refresh(company_ids=[c.pk for c in companies], history=False)
    client.get(LIST, headers=headers)  # the token's last use is written once a minute at most

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"{LIST}?limit=1000", headers=headers).status_code == 200
        return len(captured)

    small = queries()
    more = CompanyFactory.create_batch(40)
    companies_refresh(company_ids=[c.pk for c in more], history=False)
    with django_assert_max_num_queries(small):
        response = client.get(f"{LIST}?limit=1000", headers=headers)
    assert len(response.json()["results"]) == 43
    assert queries() == small <= 4


# --------------------------------------------------------------------------------------------------
# The CSV


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_the_csv_downloads_with_a_read_token(client, book, read_secret):
    response = client.get(CSV, headers=bearer(read_secret))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="account_health_')
    rows = _rows(response)
    assert rows[0][:3] == ["Account ID", "Account Name", "[GS] Health: License Utilization"]
    assert {r[0] for r in rows[1:]} == {c.crm_account_id for c in book["scored"]}


def test_the_csv_refuses_other_tokens_in_json_and_sends_people_to_sign_in(client, book):
    _, ingest_only = ingest_token_create(name="gitlab.acme")
    refused = client.get(CSV, headers=bearer(ingest_only))
    assert refused.status_code == 403 and "lacks the 'read' scope" in refused.json()["error"]
    unknown = client.get(CSV, headers=bearer("upt_guess"))
    assert unknown.status_code == 401 and unknown["WWW-Authenticate"] == 'Bearer realm="api"'
    no_scheme = client.get(CSV, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert no_scheme.status_code == 401
    # A browser without a session (a link clicked after signing out): the sign-in page.
    browser = client.get(CSV)
    assert browser.status_code == 302 and browser["Location"] == "/login/?next=/exports/health.csv"


def test_the_csv_by_token_stays_formula_safe(client, book, read_secret):
    Company.objects.filter(pk=book["scored"][0].pk).update(name='=HYPERLINK("http://x","y")')
    rows = _rows(client.get(CSV, headers=bearer(read_secret)))
    (row,) = [r for r in rows if r[0] == book["scored"][0].crm_account_id]
    assert row[1] == '\'=HYPERLINK("http://x","y")'


# --------------------------------------------------------------------------------------------------
# One gate, one throttle: each endpoint counts refused tokens against TOKEN_FAILURE_RATE once


@pytest.mark.parametrize("url", [LIST, CSV, "/api/v1/accounts/X/health"])
def test_guessed_tokens_are_throttled_on_every_read_endpoint(settings, read_secret, url):
    settings.TOKEN_FAILURE_RATE = "3/m"
    guesser = Client(REMOTE_ADDR=fresh_address())
    for attempt in range(3):
        assert guesser.get(url, headers=bearer(f"upt_guess{attempt}")).status_code == 401
    blocked = guesser.get(url, headers=bearer("upt_guess-4"))
    assert blocked.status_code == 429 and 1 <= int(blocked["Retry-After"]) <= 60
    # The right token waits too: a guesser who hits it must not learn so.
    assert guesser.get(url, headers=bearer(read_secret)).status_code == 429
    elsewhere = Client(REMOTE_ADDR=fresh_address())
    assert elsewhere.get(url, headers=bearer(read_secret)).status_code in (200, 404)
