"""The C360 pages state each business rule from its one home, never from a copy of their own.

Each test sets a rule's input where only its home would notice (a stale limit from the
settings, a SaaS namespace nobody labeled, a CSM on someone else's account) and checks that
the page and the engine (or the write) agree.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db.models import F
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company
from instances import labels
from instances.labels import label_change_request
from instances.models import Instance, LabelChange, UsagePing
from scoring.models import MonthlyScore, ScoreSnapshot
from scoring.services import companies_refresh
from tests.web.test_c360_views import _client, _html, build_account


def _row(html: str, instance: Instance) -> str:
    match = re.search(rf'<tr id="instance-{instance.pk}".*?</tr>', html, re.S)
    assert match, f"no row for {instance}"
    return match.group(0)


def _silence(company: Company, *, days: int) -> None:
    """Every ping of the account ``days`` older: its newest is now ``days`` days old."""
    shift = timedelta(days=days)
    Instance.objects.filter(company=company).update(
        first_ping_at=F("first_ping_at") - shift, last_ping_at=F("last_ping_at") - shift
    )
    UsagePing.objects.filter(instance__company=company).update(recorded_at=F("recorded_at") - shift)


def _rescore(company: Company) -> dict:
    # The inputs hash does not cover ping dates or kinds (they never change in real life).
    ScoreSnapshot.objects.filter(company=company).delete()
    companies_refresh(company_ids=[company.pk], reason="test")
    return ScoreSnapshot.objects.get(company=company, is_current=True).detail


# --------------------------------------------------------------------------------------------------
# (a) The stale limit is the active scheme's, from STALE_INSTANCE_DAYS


@pytest.mark.parametrize(("limit", "stale"), [(30, True), (60, False)])
def test_the_stale_limit_of_the_settings_is_what_the_page_and_the_engine_use(
    db, viewer, limit, stale
):
    with override_settings(STALE_INSTANCE_DAYS=limit):
        company = build_account(f"stale{limit}", instances=1, pings=2)
        production = company.instances.get()
        _silence(company, days=45)
        card = _rescore(company)
        html = _html(_client(viewer).get(reverse("account_instances", args=[company.pk])))
        row = _row(html, production)
        scorecard = _html(_client(viewer).get(reverse("account_scorecard", args=[company.pk])))

    assert (production.pk in card["stale_instance_ids"]) is stale
    assert (production.pk in card["instance_ids"]) is not stale
    assert ("health-stale" in row) is stale
    assert (f'title="No ping for more than {limit} days">stale<' in row) is stale
    assert ("health-included" in row) is not stale
    if stale:
        # In calendar days, as the page counts them: 46 in the hour after midnight (UTC), when
        # the ping built an hour before "now" fell on the day before.
        production.refresh_from_db()
        age = (timezone.now().date() - production.last_ping_at.date()).days
        assert age in (45, 46)
        assert f"latest ping {age} days old (limit {limit})" in row
    assert f"latest ping if at most {limit} days old" in scorecard
    assert "at most 60 days old" not in scorecard or limit == 60  # the stale limit only


def test_the_faq_names_the_stale_limit_of_the_settings(db, viewer):
    with override_settings(STALE_INSTANCE_DAYS=30):
        company = build_account("silentprod", instances=1, pings=2)
        _silence(company, days=45)
        reason = _rescore(company)["product_usage"]["reason"]
        assert reason == "no data for 30 days"
        # Months scored while the instance was silent: the engine's reason, nothing to chart.
        MonthlyScore.objects.filter(company=company).update(
            detail={"instance_ids": [], "product_usage": {"reason": reason}, "use_cases": {}},
            totals=None,
        )
        Company.objects.filter(pk=company.pk).touch()
        html = _html(_client(viewer).get(reverse("account_trends", args=[company.pk])))
    assert "No data for 30 days. The production instance has sent no usage ping for 30 days" in html
    assert "60 days" not in html


# --------------------------------------------------------------------------------------------------
# (b) Which instances count: methodology.health_exclusion, with its SaaS rule


def test_an_unlabeled_saas_namespace_counts_on_the_page_as_it_counts_in_the_engine(db, viewer):
    company = build_account("saasco", instances=3, pings=2, production=0)
    namespace, labeled, unknown = company.instances.order_by("id")
    Instance.objects.filter(pk=namespace.pk).update(
        kind="saas", uuid=None, namespace_id=9001, namespace_path="saasco", instance_type="unknown"
    )
    Instance.objects.filter(pk=labeled.pk).update(
        kind="saas",
        uuid=None,
        namespace_id=9002,
        namespace_path="saasco-sandbox",
        instance_type="non_production",
    )
    Instance.objects.filter(pk=unknown.pk).update(instance_type="unknown")
    card = _rescore(company)
    assert card["instance_ids"] == [namespace.pk]  # the engine counts the unlabeled namespace

    client = _client(viewer)
    html = _html(client.get(reverse("account_instances", args=[company.pk])))
    assert "health-included" in _row(html, namespace)
    assert "used in health measures" in _row(html, namespace)
    assert "No instance is in health measures" not in html
    assert "Non-Production: not in health measures" in _row(html, labeled)
    assert "Unknown: not in health measures" in _row(html, unknown)

    url = reverse("account_trends", args=[company.pk]) + "?report=not_production"
    outside = _html(client.get(url))
    assert f"instance={namespace.pk}" not in outside  # it is in health measures
    assert f"instance={labeled.pk}" in outside and f"instance={unknown.pk}" in outside


# --------------------------------------------------------------------------------------------------
# (c) Who may change an account: accounts.permissions


def test_a_csm_gets_edit_links_on_their_own_account_only(db, csm, other_csm):
    mine = build_account("mine", instances=2, pings=1, csm=csm)
    theirs = build_account("theirs", instances=2, pings=1, csm=other_csm)
    client = _client(csm)
    for company, editable in ((mine, True), (theirs, False)):
        instance = company.instances.exclude(instance_type="production").get()
        edit = reverse("instance_edit", args=[company.pk, instance.pk])
        instances = _html(client.get(reverse("account_instances", args=[company.pk])))
        outside = _html(
            client.get(reverse("account_trends", args=[company.pk]) + "?report=not_production")
        )
        summary = _html(client.get(reverse("account_summary", args=[company.pk])))
        assert (edit in instances) is editable
        assert (edit in outside) is editable
        assert (reverse("account_sentiment", args=[company.pk]) in summary) is editable


def test_writes_to_another_csms_account_are_refused_and_change_nothing(db, csm, other_csm):
    theirs = build_account("theirs", instances=2, pings=1, csm=other_csm)
    instance = theirs.instances.exclude(instance_type="production").get()
    pending = label_change_request(
        instance=instance, field="instance_type", value="obsolete", by=other_csm, schedule=False
    )
    # Even with the permission to apply changes now, only on accounts one may change.
    csm.user_permissions.add(Permission.objects.get(codename="apply_label_change_now"))
    client = _client(csm)
    edit = reverse("instance_edit", args=[theirs.pk, instance.pk])
    refused = {
        "edit": client.post(edit, {"instance_type": "production", "health_inclusion": ""}),
        "sentiment": client.post(
            reverse("account_sentiment", args=[theirs.pk]), {"sentiment": "Red", "note": "x"}
        ),
        "apply_now": client.post(reverse("label_apply_now", args=[pending.pk])),
    }
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 403)
    theirs.refresh_from_db()
    assert theirs.sentiment == ""
    assert list(LabelChange.objects.values_list("pk", "status")) == [(pending.pk, "pending")]
    instance.refresh_from_db()
    assert instance.instance_type != "obsolete"


def test_apply_now_is_allowed_on_an_account_one_may_change(db, csm):
    mine = build_account("mine", instances=2, pings=1, csm=csm)
    instance = mine.instances.exclude(instance_type="production").get()
    change = label_change_request(
        instance=instance, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    csm.user_permissions.add(Permission.objects.get(codename="apply_label_change_now"))
    response = _client(csm).post(reverse("label_apply_now", args=[change.pk]))
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == "applied"


# --------------------------------------------------------------------------------------------------
# Writes: the label edit's fields are requested in one transaction


def test_a_two_field_edit_whose_second_request_fails_stores_neither(db, csm, monkeypatch):
    company = build_account("atomic", instances=2, pings=1, csm=csm)
    instance = company.instances.exclude(instance_type="production").get()
    real = labels.companies_changed
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(labels, "companies_changed", second_fails)
    url = reverse("instance_edit", args=[company.pk, instance.pk])
    with pytest.raises(RuntimeError):
        _client(csm).post(url, {"instance_type": "production", "health_inclusion": "opt_out"})
    assert len(calls) == 2
    assert not LabelChange.objects.filter(instance=instance).exists()
