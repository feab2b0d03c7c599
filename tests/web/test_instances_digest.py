"""The Instances section on PostgreSQL: its rows are signed in the database
(``selectors.instances_digest``), so a first view after a write that changed none of them reads
no instance or label change and builds nothing; every change it shows builds it again.

Real PostgreSQL and Redis (the content cache), as in production.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company, Subscription
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance, LabelChange
from scoring.services import stale_ping_days
from tests.web.test_c360_views import _client, _html, build_account
from usage_portal.web.c360 import fragment_cache as fragments
from usage_portal.web.c360 import sections

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def account(csm, monkeypatch):
    # Entries of this test's own (a rerun's accounts get the same ids as the last run's).
    version = f"test-{uuid.uuid4()}"
    monkeypatch.setattr(fragments, "code_version", lambda: version)
    return build_account("digest", instances=5, pings=6, csm=csm)


@pytest.fixture
def builds(monkeypatch):
    """How many times the section's content is built from now on."""
    built: list[int] = []
    original = sections._instances_build

    def spy(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sections, "_instances_build", spy)
    return built


def _view(client, company: Company) -> tuple[str, list[str]]:
    url = reverse("account_instances", args=[company.pk])
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return _html(response), [q["sql"] for q in captured.captured_queries]


def _without_csrf(html: str) -> str:
    return re.sub(r'(csrfmiddlewaretoken" value=")[^"]+', r"\1", html)  # masked anew each time


def _touch(company: Company) -> None:
    Company.objects.filter(pk=company.pk).touch()  # as every write does


def _loads(queries: list[str], table: str) -> list[str]:
    """The queries that load ``table``'s rows (the ORM selects them by their table's name)."""
    return [q for q in queries if q.lstrip().startswith(f'SELECT "{table}".')]


def test_a_write_that_changes_no_row_is_served_without_reading_them(account, ops, builds):
    client = _client(ops)
    first, cold = _view(client, account)
    assert builds == [1]
    _touch(account)

    again, queries = _view(client, account)

    assert builds == [1]  # the content came from the cache, found by the rows' digest
    assert _without_csrf(again) == _without_csrf(first)
    # The digest reads the rows inside one statement; nothing loads them as objects.
    assert _loads(cold, "instances_instance") and _loads(cold, "instances_labelchange")
    assert _loads(queries, "instances_instance") == []
    assert _loads(queries, "instances_labelchange") == []
    assert len(queries) <= 9 < len(cold)


def test_every_change_the_section_shows_builds_it_again(account, ops, csm, builds):
    client = _client(ops)
    _view(client, account)
    first, second, *_ = Instance.objects.filter(company=account).order_by("pk")

    Instance.objects.filter(pk=first.pk).update(version="17.9.9-ee")
    _touch(account)
    html, queries = _view(client, account)
    assert len(builds) == 2 and "17.9.9-ee" in html
    assert len(queries) <= 12  # the digest, then the rows it signed

    Subscription.objects.filter(pk=first.subscription_id).update(name="A-S-renamed")
    _touch(account)
    html, _ = _view(client, account)
    assert len(builds) == 3 and "A-S-renamed" in html

    change = label_change_request(instance=second, field="instance_type", value="obsolete", by=csm)
    html, _ = _view(client, account)
    assert len(builds) == 4
    row = re.search(rf'<tr id="instance-{second.pk}".*?</tr>', html, re.S).group(0)
    assert "pending-note" in row

    label_change_apply(change_id=change.pk, via="manual", by=ops, force=True)
    html, _ = _view(client, account)
    assert len(builds) == 5 and f"by {ops.username}" in html

    # Who applied it is shown by name: renaming them is a change of the section too.
    type(ops).objects.filter(pk=ops.pk).update(username="ops-renamed")
    _touch(account)
    html, _ = _view(client, account)
    assert len(builds) == 6 and "by ops-renamed" in html

    # An instance going stale with time alone (its row unchanged) builds it again.
    stale = timezone.now() - timedelta(days=stale_ping_days() + 1)
    Instance.objects.filter(pk=first.pk).update(last_ping_at=stale)
    _touch(account)
    html, _ = _view(client, account)
    assert len(builds) == 7
    _touch(account)
    _view(client, account)
    assert len(builds) == 7  # and then not again while nothing changes


def test_the_history_lists_changes_of_one_moment_newest_first(account, csm):
    inst = Instance.objects.filter(company=account).order_by("pk").first()
    moment = timezone.now() - timedelta(hours=1)
    made = [
        label_change_request(instance=inst, field="instance_type", value=value, by=csm)
        for value in ("obsolete", "unknown")
    ]
    LabelChange.objects.filter(pk__in=[c.pk for c in made]).update(requested_at=moment)

    from usage_portal.web.c360 import selectors

    recent = selectors.label_changes_recent(account, instances={inst.pk: inst})
    ids = [c.pk for c in recent if c.requested_at == moment]
    assert ids == sorted((c.pk for c in made), reverse=True)


def test_with_the_cache_off_the_rows_are_not_signed_in_the_database(account, ops, settings):
    settings.C360_CACHE_SECONDS = 0

    html, queries = _view(_client(ops), account)

    assert not [q for q in queries if "md5(string_agg" in q]
    assert _loads(queries, "instances_instance") and 'id="instance-' in html
