"""The C360 sections' cached parts: reused while an account's data is unchanged, rebuilt the
moment a write commits, never shared between people who see different things.

No test clears the cache: keys hold each account's version, so a test's entries are its own
(and clearing a Redis cache would also empty the broker the worker tests use).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company
from accounts.services import sentiment_set
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance
from scoring.models import MonthlyScore
from scoring.services import companies_refresh
from tests.factories import store_ping
from tests.web.test_c360_views import _client, _figures, _html, build_account
from usage_portal.web.c360 import fragment_cache as fragments

SECTIONS = (
    "",
    "scorecard/",
    "adoption/",
    "trends/",
    "trends/?report=license",
    "trends/?report=not_production",
    "instances/",
)


@pytest.fixture
def own_code_version(monkeypatch):
    """Entries of this test's own: on a Redis that outlives the run, a rerun's accounts get the
    same ids and content as the last run's, and would rightly be served its cached rows."""
    version = f"test-{uuid.uuid4()}"
    monkeypatch.setattr(fragments, "code_version", lambda: version)


@pytest.fixture
def account(db, csm, own_code_version):
    return build_account("cached", instances=4, pings=6, csm=csm)


def _get(client, company: Company, section: str) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/accounts/{company.pk}/{section}")
    assert response.status_code == 200
    return response.content.decode(), len(captured)


def _csrf_free(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


@pytest.mark.parametrize("section", SECTIONS)
def test_a_second_view_reuses_the_parts_and_shows_the_same_page(account, ops, section):
    client = _client(ops)
    client.get("/")  # the session and permission caches exist
    first, cold = _get(client, account, section)
    second, warm = _get(client, account, section)
    assert _csrf_free(second) == _csrf_free(first)
    assert warm < cold, (cold, warm)


def test_turned_off_every_view_builds_the_parts(account, ops, settings):
    settings.C360_CACHE_SECONDS = 0
    client = _client(ops)
    client.get("/")
    _, first = _get(client, account, "instances/")
    _, second = _get(client, account, "instances/")
    assert first == second


def test_a_label_edit_shows_at_once_on_every_section(account, ops, csm):
    client = _client(ops)
    unknown = Instance.objects.filter(company=account, instance_type="unknown").first()
    before = {s: _get(client, account, s)[0] for s in ("", "instances/")}
    assert "Pending" not in before["instances/"]

    label_change_request(
        instance=unknown, field="instance_type", value="non_production", by=csm, schedule=False
    )

    instances_html, _ = _get(client, account, "instances/")
    assert "Pending</span> → <strong>Non-Production</strong>" in instances_html
    summary_html, _ = _get(client, account, "")
    assert "1 label change pending" in summary_html


def test_an_applied_label_moves_the_instance_out_of_not_production(account, ops, csm):
    client = _client(ops)
    unknown = Instance.objects.filter(company=account, instance_type="unknown").first()
    html, _ = _get(client, account, "trends/?report=not_production")
    assert f"instance={unknown.pk}" in html
    change = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, schedule=False
    )
    label_change_apply(change_id=change.pk, via="now", force=True, refresh=False)

    html, _ = _get(client, account, "trends/?report=not_production")
    assert f"instance={unknown.pk}" not in html


def test_a_new_ping_and_its_score_refresh_show_at_once(account, ops):
    client = _client(ops)
    production = Instance.objects.filter(company=account, instance_type="production").first()
    _get(client, account, "instances/")
    _get(client, account, "scorecard/")

    store_ping(
        production,
        recorded_at=timezone.now(),
        version="17.9.2-ee",
        metrics={"billable_users": 97},
        refresh=False,
    )
    assert "17.9.2-ee" in _get(client, account, "instances/")[0]

    companies_refresh(company_ids=[account.pk], reason="test")
    scorecard, _ = _get(client, account, "scorecard/")
    assert re.search(r'data-testid="numerator-license_utilization">97<', scorecard)


def test_sentiment_shows_at_once(account, ops, csm):
    client = _client(ops)
    red = 'pill pill-Red">Red</span><span class="explain-value" data-testid="value-csm_sentiment"'
    assert red not in _get(client, account, "scorecard/")[0]
    sentiment_set(company=account, sentiment="Red", note="Escalation open.", by=csm)
    assert "Escalation open." in _get(client, account, "")[0]
    companies_refresh(company_ids=[account.pk], reason="sentiment")
    assert red in _get(client, account, "scorecard/")[0]


def test_people_who_may_not_edit_never_get_the_editors_rows(account, ops, viewer):
    ops_html, _ = _get(_client(ops), account, "instances/")
    viewer_html, _ = _get(_client(viewer), account, "instances/")
    assert ">Edit</a>" in ops_html
    assert ">Edit</a>" not in viewer_html
    viewer_np, _ = _get(_client(viewer), account, "trends/?report=not_production")
    assert "/edit/" not in viewer_np


def test_cached_forms_carry_each_visitors_own_csrf_token(account, ops, csm):
    unknown = Instance.objects.filter(company=account, instance_type="unknown").first()
    change = label_change_request(
        instance=unknown, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    url = reverse("account_instances", args=[account.pk])
    _client(ops).get(url)  # someone else's visit fills the cache

    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    html = client.get(url).content.decode()
    assert fragments.CSRF_PLACEHOLDER not in html
    token = re.search(
        r'class="inline-form apply-now-form"><input type="hidden" '
        r'name="csrfmiddlewaretoken" value="([^"]+)"',
        html,
    ).group(1)
    response = client.post(
        reverse("label_apply_now", args=[change.pk]), {"csrfmiddlewaretoken": token, "next": url}
    )
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == "applied"


def test_a_broken_cache_serves_the_page_uncached(account, ops, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr(fragments.cache, "get", down)
    monkeypatch.setattr(fragments.cache, "set", down)
    html, _ = _get(_client(ops), account, "instances/")
    assert "gitlab0.cached.example.com" in html


def test_touch_moves_the_version_of_exactly_those_accounts(account, db):
    other = build_account("other", instances=1, pings=1)
    before = {c.pk: c.updated_at for c in Company.objects.all()}
    Company.objects.filter(pk=account.pk).touch()
    after = {c.pk: c.updated_at for c in Company.objects.all()}
    assert after[account.pk] > before[account.pk]
    assert after[other.pk] == before[other.pk]
    assert fragments.key(Company.objects.get(pk=account.pk), "x") != fragments.key(
        Company(pk=account.pk, updated_at=before[account.pk]), "x"
    )


def test_a_change_to_the_code_starts_a_new_cache(account, monkeypatch):
    before = fragments.key(account, "instances")
    monkeypatch.setattr(fragments, "code_version", lambda: "another-deploy")
    assert fragments.key(account, "instances") != before
    assert len(fragments.code_version()) > 0


def test_the_code_digest_covers_the_templates_and_views(settings, tmp_path):
    fragments.code_version.cache_clear()
    try:
        real = fragments.code_version()
        for folder in ("accounts", "instances", "scoring", "templates"):
            (tmp_path / folder).mkdir()
        (tmp_path / "templates" / "page.html").write_text("<p>one</p>")
        settings.BASE_DIR = tmp_path
        fragments.code_version.cache_clear()
        one = fragments.code_version()
        (tmp_path / "templates" / "page.html").write_text("<p>two</p>")
        fragments.code_version.cache_clear()
        assert fragments.code_version() not in (one, real)
    finally:
        fragments.code_version.cache_clear()


def test_the_key_tells_variants_and_versions_apart(account):
    later = Company(pk=account.pk, updated_at=account.updated_at + timedelta(microseconds=1))
    keys = {
        fragments.key(account, "instances", True, True, "/a"),
        fragments.key(account, "instances", False, True, "/a"),
        fragments.key(account, "instances", True, True, "/b"),
        fragments.key(later, "instances", True, True, "/a"),
        fragments.key(account, "scorecard"),
    }
    assert len(keys) == 5


def test_stored_monthly_totals_draw_what_summing_the_usage_rows_draws(account, ops):
    """Months scored before totals were stored fall back to summing every instance's usage:
    both ways give the same charts and tables."""
    client = _client(ops)
    sections = ("adoption/", "adoption/?report=ci_builds_per_user", "trends/", "trends/?report=cd")
    assert MonthlyScore.objects.filter(company=account, totals__isnull=False).exists()
    stored = {s: _csrf_free(_get(client, account, s)[0]) for s in sections}
    MonthlyScore.objects.filter(company=account).update(totals=None)
    Company.objects.filter(pk=account.pk).touch()
    account.refresh_from_db()
    summed = {s: _csrf_free(_get(client, account, s)[0]) for s in sections}
    assert summed == stored
    drawn = _figures(stored["trends/"])
    assert any(y is not None for f in drawn.values() for t in f["data"] for y in t.get("y", []))


def test_not_production_detail_works_while_months_lack_stored_totals(account, ops):
    MonthlyScore.objects.filter(company=account).update(totals=None)
    Company.objects.filter(pk=account.pk).touch()
    account.refresh_from_db()
    other = Instance.objects.filter(company=account).exclude(instance_type="production").first()
    html, _ = _get(_client(ops), account, f"trends/?report=not_production&instance={other.pk}")
    assert f"not-production-{other.pk}-0" in html and "data as of" in html


def test_other_query_strings_share_the_cached_parts(account, ops):
    client = _client(ops)
    _, cold = _get(client, account, "instances/")
    _, warm = _get(client, account, "instances/?utm_source=mail")
    assert warm < cold
    html, _ = _get(client, account, "trends/?report=not_production&x=1")
    assert "x=1" not in html  # edit links come back to the report, not to stray parameters


def test_a_new_subscription_shows_on_the_summary_at_once(account, ops):
    from accounts.importers import SubscriptionRow
    from accounts.services import subscriptions_import

    client = _client(ops)
    assert "A-S-NEW-1" not in _get(client, account, "")[0]
    row = SubscriptionRow(
        line=2,
        name="A-S-NEW-1",
        crm_account_id=account.crm_account_id,
        plan="premium",
        licensed_seats=25,
        start_date=None,
        end_date=None,
        status="active",
        deployment="self-managed",
        arr=None,
    )
    summary = subscriptions_import(rows=[row])
    assert summary.created == 1
    account.refresh_from_db()
    assert "A-S-NEW-1" in _get(client, account, "")[0]


def test_admin_edits_and_deletes_of_instances_show_at_once(account, ops, rf):
    from django.contrib import admin

    from instances.admin import InstanceAdmin

    client = _client(ops)
    model_admin = InstanceAdmin(Instance, admin.site)
    request = rf.post("/admin/")
    request.user = ops
    inst = Instance.objects.filter(company=account, instance_type="unknown").first()
    _get(client, account, "instances/")

    inst.hostname = "renamed.example.com"
    model_admin.save_model(request, inst, form=None, change=True)
    account.refresh_from_db()
    assert "renamed.example.com" in _get(client, account, "instances/")[0]

    model_admin.delete_queryset(request, Instance.objects.filter(pk=inst.pk))
    account.refresh_from_db()
    assert "renamed.example.com" not in _get(client, account, "instances/")[0]


# --------------------------------------------------------------------------------------------------
# Instances rows: cached by what they show


def _rows_rendered(monkeypatch, template: str = "accounts/_instance_rows.html") -> list:
    """The instances whose rows ``template`` renders from now on (cache misses)."""
    from usage_portal.web.c360 import sections

    rendered: list = []
    original = sections.render_to_string

    def spy(name, context=None, *args, **kwargs):
        if name == template:
            rendered.extend(row.instance.pk for row in context["rows"])
        return original(name, context, *args, **kwargs)

    monkeypatch.setattr(sections, "render_to_string", spy)
    return rendered


def test_after_a_change_only_the_rows_that_show_it_are_rendered_again(account, ops, monkeypatch):
    client = _client(ops)
    url = reverse("account_instances", args=[account.pk])
    client.get(url)
    rendered = _rows_rendered(monkeypatch)
    first, *others = Instance.objects.filter(company=account).order_by("pk")
    Instance.objects.filter(pk=first.pk).update(version="17.9.9-ee")
    Company.objects.filter(pk=account.pk).touch()  # as every write does

    html = _html(client.get(url))
    assert rendered == [first.pk]  # the other rows come from the cache
    row = re.search(rf'<tr id="instance-{first.pk}".*?</tr>', html, re.S).group(0)
    assert "17.9.9-ee" in row
    assert all(f'id="instance-{o.pk}"' in html for o in others)


def test_a_pending_change_re_renders_its_row_with_the_note(account, csm, monkeypatch):
    client = _client(csm)
    url = reverse("account_instances", args=[account.pk])
    client.get(url)
    rendered = _rows_rendered(monkeypatch)
    target = Instance.objects.filter(company=account).order_by("pk").last()
    label_change_request(instance=target, field="instance_type", value="obsolete", by=csm)

    html = _html(client.get(url))
    assert rendered == [target.pk]
    row = re.search(rf'<tr id="instance-{target.pk}".*?</tr>', html, re.S).group(0)
    assert "pending-note" in row and "Obsolete" in row


def test_rows_are_not_shared_between_people_who_may_and_may_not_label(account, csm, viewer):
    url = reverse("account_instances", args=[account.pk])
    assert "Edit</a>" in _html(_client(csm).get(url))
    assert "Edit</a>" not in _html(_client(viewer).get(url))


def test_not_production_rows_are_cached_by_what_they_show(account, ops, monkeypatch):
    client = _client(ops)
    url = reverse("account_trends", args=[account.pk]) + "?report=not_production"
    client.get(url)
    rendered = _rows_rendered(monkeypatch, "accounts/_outside_rows.html")
    outside = Instance.objects.filter(company=account).exclude(instance_type="production")
    first = outside.order_by("pk").first()
    Instance.objects.filter(pk=first.pk).update(version="17.9.9-ee")
    Company.objects.filter(pk=account.pk).touch()
    html = _html(client.get(url))
    assert rendered == [first.pk]
    assert "17.9.9-ee" in html and outside.count() > 1
