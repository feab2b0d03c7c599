"""The C360 content cache (``fragment_cache.cached_content``): after a write, a section whose
rows are the same as at its last build is taken from the cache, not shaped and rendered again;
a section whose rows changed is built anew and shows the change. Its keys are digests of
everything the content is built from (``signature_bytes``), the same in every process.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone as dj_timezone

from accounts.models import Company
from accounts.services import sentiment_set
from instances.models import Instance
from scoring.models import AlertStatus, HealthAlert
from scoring.services import stale_ping_days
from tests.web.test_c360_views import _client, _html, build_account
from usage_portal.web.c360 import datatables, sections, selectors
from usage_portal.web.c360 import fragment_cache as fragments
from usage_portal.web.c360.charts import Point, Series

SECTIONS = (
    "",
    "scorecard/",
    "adoption/",
    "adoption/?report=ci_builds_per_user",
    "trends/",
    "trends/?report=license",
    "trends/?report=not_production",
    "instances/",
)
#: What each section's first build shapes and renders (and a content hit does not).
BUILT_BY = {
    "accounts/_summary_content.html": "",
    "accounts/_scorecard_content.html": "scorecard/",
    "accounts/_adoption_content.html": "adoption/",
    "accounts/_trends_content.html": "trends/",
    "accounts/_instances_content.html": "instances/",
}


@pytest.fixture
def account(db, csm):
    return build_account("content", instances=5, pings=10, csm=csm)


@pytest.fixture
def builds(monkeypatch):
    """The sections built (shaped and rendered) from now on, by their content partial.

    With a code version of the test's own: content another test's account built is the same
    content (the cache rightly serves it), and would not be built here.
    """
    version = f"test-{uuid.uuid4()}"
    monkeypatch.setattr(fragments, "code_version", lambda: version)
    built: list[str] = []
    render = sections.render_to_string

    def spy(name, context=None, *args, **kwargs):
        if name in BUILT_BY:
            built.append(BUILT_BY[name])
        return render(name, context, *args, **kwargs)

    billable = sections._billable_block

    def billable_spy(*args, **kwargs):
        built.append("trends/?report=not_production")
        return billable(*args, **kwargs)

    monkeypatch.setattr(sections, "render_to_string", spy)
    monkeypatch.setattr(sections, "_billable_block", billable_spy)
    return built


def _page(client, company: Company, section: str) -> str:
    response = client.get(f"/accounts/{company.pk}/{section}")
    assert response.status_code == 200
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", _html(response))


def _viewed(client, company: Company) -> dict[str, str]:
    return {s: _page(client, company, s) for s in SECTIONS}


def test_after_a_write_that_changes_nothing_shown_no_section_is_built_again(account, ops, builds):
    client = _client(ops)
    first = _viewed(client, account)
    assert {b.split("?")[0] for b in builds} >= {s.split("?")[0] for s in SECTIONS}
    builds.clear()

    Company.objects.filter(pk=account.pk).touch()  # a write: every section's version moved
    with CaptureQueriesContext(connection) as read:
        again = _viewed(client, account)

    assert builds == []
    assert again == first
    # Its rows were read again (that is how a section knows it may take its content).
    assert any("instances_instance" in q["sql"] for q in read.captured_queries)


def test_a_write_builds_again_the_sections_that_show_it_and_no_other(account, ops, csm, builds):
    client = _client(ops)
    _viewed(client, account)
    builds.clear()

    sentiment_set(company=account, sentiment="Yellow", note="Champion left.", by=csm)
    assert "Champion left." in _page(client, account, "")
    assert builds == [""]  # the Summary shows it; the account's row is in its signature
    for section in SECTIONS[1:]:
        _page(client, account, section)
    assert builds == [""]

    builds.clear()
    unknown = Instance.objects.filter(company=account, instance_type="unknown").first()
    Instance.objects.filter(pk=unknown.pk).update(version="17.9.9-ee")
    Company.objects.filter(pk=account.pk).touch()
    assert "17.9.9-ee" in _page(client, account, "instances/")
    assert "17.9.9-ee" in _page(client, account, "trends/?report=not_production")
    for section in ("", "adoption/", "trends/", "trends/?report=license"):
        _page(client, account, section)
    assert sorted(builds) == ["instances/", "trends/?report=not_production"]


def test_instances_going_stale_with_time_alone_build_the_section_again(
    account, ops, builds, monkeypatch
):
    """Nothing was written about the instances, but the clock moved past their stale limit:
    the content cache must not serve them as fresh (the stale flags are in its signature)."""
    client = _client(ops)
    assert "stale</span>" not in _page(client, account, "instances/")
    builds.clear()
    days = stale_ping_days() + 1
    later = SimpleNamespace(now=lambda: dj_timezone.now() + timedelta(days=days))
    monkeypatch.setattr(sections, "timezone", later)  # the section's clock (not the session's)
    Company.objects.filter(pk=account.pk).touch()
    assert "stale</span>" in _page(client, account, "instances/")
    assert builds == ["instances/"]


def test_people_who_see_different_things_never_share_content(account, ops, viewer, builds):
    assert ">Edit</a>" in _page(_client(ops), account, "instances/")
    Company.objects.filter(pk=account.pk).touch()
    assert ">Edit</a>" not in _page(_client(viewer), account, "instances/")
    assert "sentiment-form" not in _page(_client(viewer), account, "")
    assert "sentiment-form" in _page(_client(ops), account, "")


def test_a_refused_form_is_the_visitors_own_page_and_never_kept(account, csm):
    client = _client(csm)
    refused = client.post(
        reverse("account_sentiment", args=[account.pk]), {"sentiment": "Green", "note": " "}
    )
    assert refused.status_code == 400
    html = _html(refused)
    assert "Add a note saying why" in html
    assert str(fragments.CSRF_PLACEHOLDER) not in html
    assert re.search(
        r'class="sentiment-form".*?name="csrfmiddlewaretoken" value="[A-Za-z0-9]{64}"', html, re.S
    )
    assert "Add a note saying why" not in _page(client, account, "")


def test_the_header_counts_open_health_drops_only(account, viewer):
    for measure, status in (("scm", "open"), ("ci", "open"), ("cd", "closed")):
        HealthAlert.objects.create(
            company=account, measure=measure, status=status, from_color="Green", to_color="Red"
        )
    html = _page(_client(viewer), account, "")
    assert '<span class="pill pill-Red">2</span> open health drops</a>' in html
    HealthAlert.objects.filter(company=account).update(status=AlertStatus.CLOSED)
    assert "drop-badge" not in _page(_client(viewer), account, "")


def test_a_failing_cache_costs_one_attempt_and_the_page_is_built(account, ops, monkeypatch):
    calls: list[str] = []

    def down(name):
        def fail(*args, **kwargs):
            calls.append(name)
            raise ConnectionError("cache unreachable")

        return fail

    for method in ("get", "get_many", "set", "set_many"):
        monkeypatch.setattr(fragments.cache, method, down(method))
    html = _page(_client(ops), account, "instances/")
    assert "gitlab4.content.example.com" in html
    assert calls == ["get"]  # neither the content nor the rows asked the cache again


# --------------------------------------------------------------------------------------------------
# Signatures


def test_the_account_row_in_a_signature_leaves_out_its_version(account, csm):
    before = fragments.row_values(Company.objects.get(pk=account.pk))
    Company.objects.filter(pk=account.pk).touch()
    assert fragments.row_values(Company.objects.get(pk=account.pk)) == before
    sentiment_set(company=account, sentiment="Red", note="Escalation.", by=csm)
    assert fragments.row_values(Company.objects.get(pk=account.pk)) != before


def test_signatures_tell_apart_values_that_print_differently():
    values = [
        1,
        1.0,
        True,
        "1",
        None,
        [1],
        {"1": 1},
        Decimal("1.0"),
        Decimal("1.00"),
        date(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=1))),  # that moment, elsewhere
    ]
    written = [fragments.signature_bytes(v) for v in values]
    assert len(set(written)) == len(values), written


def test_a_set_is_written_in_one_order_whatever_the_process_string_hashing():
    assert fragments.signature_bytes(frozenset({"b", "c", "a"})) == b'["a","b","c"]'
    assert fragments.signature_bytes({"b", "a"}) == fragments.signature_bytes({"a", "b"})


def test_a_scheme_signs_the_same_each_time_it_is_read(db):
    from scoring.services import active_scheme

    assert fragments.signature_bytes(active_scheme()) == fragments.signature_bytes(active_scheme())


# --------------------------------------------------------------------------------------------------
# Reads and writers the content is built with


def test_instances_come_with_their_subscriptions_in_two_queries(account):
    with CaptureQueriesContext(connection) as read:
        items = selectors.instances_list(account)
        names = {i.subscription.name for i in items}
    assert names == {"A-S-content"}
    assert len(read) == 2
    with CaptureQueriesContext(connection) as read:
        bare = selectors.instances_list(account, subscriptions=False)
    assert len(read) == 1 and len(bare) == len(items)


def test_the_wide_table_writes_every_kind_of_value_as_the_cell_table_does():
    months = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]
    values = [
        [0, -0.0, 1.0],
        [None, 10**17 + 1, -1234],
        [1234.5, True, 7],
    ]
    series = [
        Series(f"s<{n}>", [Point(m, v) for m, v in zip(months, row, strict=True)])
        for n, row in enumerate(values)
    ]
    expected = datatables.table_html(*datatables.series_table(series, months))
    assert datatables.series_table_html(series, months) == expected
    assert '<td class="num">-0</td>' in expected  # -0.0 is not the cell of 0


def _outside(account) -> set[int]:
    return set(
        Instance.objects.filter(company=account)
        .exclude(instance_type="production")
        .values_list("pk", flat=True)
    )


def test_a_history_read_without_its_totals_refuses_to_sum_them(account):
    outside = _outside(account)
    history = selectors.monthly_history(
        account, card_paths=(), usage_of=outside, fields=("billable_users",), totals=False
    )
    assert history.months
    with pytest.raises(KeyError):  # its usage covers some instances: a sum would be wrong
        history.totals(history.months[-1], ["billable_users"])
    whole = selectors.monthly_history(account, card_paths=())
    assert whole.totals(whole.months[-1], ["billable_users"])["billable_users"] is not None


def test_usage_rows_are_signed_as_read_and_become_dicts_only_when_drawn(account):
    outside = _outside(account)
    history = selectors.monthly_history(
        account, card_paths=(), usage_of=outside, fields=("billable_users",), totals=False
    )
    usage = history.usage
    assert isinstance(usage, selectors.UsageRows)
    scores, rows = history.signature()
    assert rows == usage.rows and usage._by_key is None  # signing made no dict
    first = rows[0]
    assert usage[(first[0], first[1])] == {
        "instance_id": first[0],
        "month": first[1],
        "billable_users": first[2],
    }
    assert len(usage) == len(rows) and {i for i, _ in usage} == outside
