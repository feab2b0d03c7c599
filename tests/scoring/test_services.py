"""Snapshots, monthly history, scheme changes and the recompute command, on the database."""

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Company
from instances.models import Instance, MonthlyUsage
from scoring.methodology import score_company
from scoring.models import MonthlyScore, SchemeChange, ScoreSnapshot
from scoring.scorecard import Scorecard
from scoring.services import (
    active_scheme,
    companies_refresh,
    load_inputs,
    scheme_set,
)
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    sub = SubscriptionFactory(licensed_seats=200, plan="premium")
    # Old enough that the months this file's history tests use are past the first 30 days.
    sub.company.customer_since = timezone.now().date() - dt.timedelta(days=400)
    sub.company.save()
    return InstanceFactory(subscription=sub, company=sub.company)


def current(company):
    return ScoreSnapshot.objects.get(company=company, is_current=True)


def test_seed_example_200_licenses_80_users_after_9_months_is_40_percent_red(account):
    store_ping(account, days_ago=1, metrics={"billable_users": 80}, refresh=False)
    companies_refresh(company_ids=[account.company_id], reason="test")
    snap = current(account.company)
    assert snap.license_utilization == pytest.approx(0.40)
    assert snap.license_utilization_color == "Red"
    assert snap.billable_users == 80 and snap.licensed_seats == 200
    card = Scorecard.from_dict(snap.detail)
    assert card.measures["license_utilization"].inputs["account_age_months"] >= 9
    # Premium: DevSecOps is NA with the handbook's reason.
    assert snap.devsecops_color == "NA"
    assert "Ultimate" in card.use_cases["devsecops"].reason


def test_unchanged_inputs_write_no_new_snapshot_and_a_new_ping_does(account):
    store_ping(account, days_ago=8, refresh=False)
    assert companies_refresh(company_ids=[account.company_id]) == 1
    assert companies_refresh(company_ids=[account.company_id]) == 0
    first = current(account.company)
    store_ping(account, days_ago=1, metrics={"billable_users": 150}, refresh=False)
    assert companies_refresh(company_ids=[account.company_id], reason="new ping") == 1
    latest = current(account.company)
    assert latest.pk != first.pk and latest.license_utilization == pytest.approx(0.75)
    first.refresh_from_db()
    assert not first.is_current
    assert ScoreSnapshot.objects.filter(company=account.company).count() == 2


def test_red_sentiment_forces_overall_red(account, csm):
    from accounts.services import sentiment_set

    Company.objects.filter(pk=account.company_id).update(csm=csm)  # CSM-owned: sentiment counts

    store_ping(account, days_ago=1, metrics={"billable_users": 190}, refresh=False)
    companies_refresh(company_ids=[account.company_id])
    assert current(account.company).overall_color != "Red"
    sentiment_set(company=account.company, sentiment="Red", note="escalation", by=csm)
    companies_refresh(company_ids=[account.company_id], reason="sentiment")
    assert current(account.company).overall_color == "Red"


def test_snapshot_matches_the_pure_engine(account):
    store_ping(account, days_ago=3, refresh=False)
    companies_refresh(company_ids=[account.company_id])
    today = timezone.now().date()
    expected = score_company(
        load_inputs([account.company_id], as_of=today)[account.company_id], active_scheme()
    )
    assert current(account.company).detail == expected.to_dict()


def test_monthly_usage_keeps_the_last_ping_of_each_month(account):
    dates = [dt.datetime(2026, 1, d, 9, tzinfo=dt.UTC) for d in (9, 16, 23, 30)]
    pings = {
        d.day: store_ping(account, recorded_at=d, metrics={"billable_users": d.day}, refresh=False)
        for d in dates
    }
    feb = store_ping(
        account,
        recorded_at=dt.datetime(2026, 2, 6, 9, tzinfo=dt.UTC),
        metrics={"billable_users": 6},
        refresh=False,
    )
    rows = {m.month: m for m in MonthlyUsage.objects.filter(instance=account)}
    assert rows[dt.date(2026, 1, 1)].ping_id == pings[30].id
    assert rows[dt.date(2026, 1, 1)].billable_users == 30
    assert rows[dt.date(2026, 2, 1)].ping_id == feb.id
    # A late-arriving earlier ping does not displace the month's last one.
    store_ping(account, recorded_at=dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC), refresh=False)
    assert (
        MonthlyUsage.objects.get(instance=account, month=dt.date(2026, 1, 1)).ping_id
        == pings[30].id
    )


def test_scheme_change_is_recorded_and_rebuilds_history(account):
    for days in (70, 40, 10):
        store_ping(
            account,
            days_ago=days,
            metrics={"billable_users": 100, "git_operation_users": 20},
            refresh=False,
        )
    companies_refresh(company_ids=[account.company_id])
    assert current(account.company).scm_color == "Yellow"  # 20%: > 10% – ≤ 33% (handbook 2025)
    change = scheme_set(name="gitlab-dbt-2024")
    assert SchemeChange.objects.get() == change and change.to_scheme == "gitlab-dbt-2024"
    snap = current(account.company)
    assert snap.scheme.startswith("gitlab-dbt-2024") and snap.scm_color == "Red"  # < 25% (dbt)
    months = MonthlyScore.objects.filter(company=account.company)
    assert months.exists() and all(m.scheme.startswith("gitlab-dbt-2024") for m in months)


def test_load_inputs_query_count_does_not_grow_with_instances(django_assert_num_queries):
    sub = SubscriptionFactory()
    small = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(small, recorded_at=timezone.now(), refresh=False)
    # Companies, instances, latest pings, support tickets, last meetings, recent meetings.
    with django_assert_num_queries(6):
        load_inputs([sub.company_id], as_of=timezone.now().date())
    big = SubscriptionFactory()
    for _ in range(15):
        inst = InstanceFactory(subscription=big, company=big.company)
        store_ping(inst, recorded_at=timezone.now(), refresh=False)
    with django_assert_num_queries(6):
        inputs = load_inputs([big.company_id], as_of=timezone.now().date())
    assert len(inputs[big.company_id].candidates) == 15
    assert all(c.ping_id for c in inputs[big.company_id].candidates)


def test_recompute_scores_command(account):
    store_ping(account, recorded_at=timezone.now(), refresh=False)
    out = io.StringIO()
    call_command("recompute_scores", "--all", stdout=out)
    assert "Recomputed 1 companies" in out.getvalue() and "companies/s" in out.getvalue()
    assert current(account.company)
    call_command("recompute_scores", "--company", str(account.company_id), stdout=out)
    with pytest.raises(CommandError, match="no company with id 999999"):
        call_command("recompute_scores", "--company", "999999")


def test_admin_scheme_switch_is_recorded_and_recomputes(
    client, ops, account, django_capture_on_commit_callbacks
):
    store_ping(account, recorded_at=timezone.now(), refresh=False)
    client.force_login(ops)
    # The recompute is a background job queued after the commit (it runs eagerly here).
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/scoring/scoringconfig/add/",
            {"scheme": "gitlab-dbt-2024", "rebuild_history": "on"},
        )
    assert response.status_code == 302
    change = SchemeChange.objects.get()
    assert change.to_scheme == "gitlab-dbt-2024" and change.changed_by == ops
    assert active_scheme().name == "gitlab-dbt-2024"
    assert current(account.company).scheme.startswith("gitlab-dbt-2024")


def test_new_ping_rescores_history_from_its_month_on_only(
    account, django_capture_on_commit_callbacks
):
    jan = dt.datetime(2026, 1, 20, 9, tzinfo=dt.UTC)
    store_ping(account, recorded_at=jan, refresh=False)
    store_ping(account, recorded_at=jan + dt.timedelta(days=21), refresh=False)  # Feb 10
    companies_refresh(company_ids=[account.company_id])
    before = dict(
        MonthlyScore.objects.filter(company=account.company).values_list("month", "computed_at")
    )
    assert set(before) == {dt.date(2026, 1, 1), dt.date(2026, 2, 1)}
    with django_capture_on_commit_callbacks(execute=True):  # the queued task runs eagerly
        store_ping(
            account, recorded_at=jan + dt.timedelta(days=28), metrics={"billable_users": 120}
        )  # Feb 17
    after = {m.month: m for m in MonthlyScore.objects.filter(company=account.company)}
    assert after[dt.date(2026, 1, 1)].computed_at == before[dt.date(2026, 1, 1)]
    assert after[dt.date(2026, 2, 1)].computed_at > before[dt.date(2026, 2, 1)]
    assert after[dt.date(2026, 2, 1)].billable_users == 120


def test_ping_that_maps_waiting_pings_rescores_their_months_too(django_capture_on_commit_callbacks):
    sub = SubscriptionFactory()
    march = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    old = store_ping(
        "u-late-map", recorded_at=march, license_md5="c" * 32, version="15.4.0-ee", refresh=False
    )
    assert old.subscription is None  # unmapped, kept
    instance = old.instance
    Instance.objects.filter(pk=instance.pk).update(instance_type="production")
    with django_capture_on_commit_callbacks(execute=True):
        store_ping(
            instance,
            recorded_at=march + dt.timedelta(days=60),
            subscription=sub,
            license_md5="c" * 32,
            version="15.4.0-ee",
        )
    old.refresh_from_db()
    assert old.subscription == sub
    rows = dict(MonthlyUsage.objects.filter(instance=instance).values_list("month", "company_id"))
    assert rows == {dt.date(2026, 3, 1): sub.company_id, dt.date(2026, 5, 1): sub.company_id}
    months = set(MonthlyScore.objects.filter(company=sub.company).values_list("month", flat=True))
    assert dt.date(2026, 3, 1) in months and dt.date(2026, 5, 1) in months


def test_instance_moving_company_rescores_both(django_capture_on_commit_callbacks, monkeypatch):
    from scoring import tasks

    a, b = SubscriptionFactory(), SubscriptionFactory()
    inst = InstanceFactory(subscription=a, company=a.company)
    store_ping(inst, days_ago=40, refresh=False)
    companies_refresh(company_ids=[a.company_id])
    assert MonthlyScore.objects.filter(company=a.company).exists()
    calls = []
    monkeypatch.setattr(
        tasks.refresh_companies, "apply_async", lambda args, *_, **__: calls.append(tuple(args))
    )
    with django_capture_on_commit_callbacks(execute=True):
        store_ping(inst, recorded_at=timezone.now(), subscription=b)
    assert calls == [(sorted([a.company_id, b.company_id]), "new ping", None, True)]
    assert set(MonthlyUsage.objects.filter(instance=inst).values_list("company_id", flat=True)) == {
        b.company_id
    }
    companies_refresh(company_ids=[a.company_id, b.company_id])  # what the queued task does
    assert not MonthlyScore.objects.filter(company=a.company).exists()
    assert MonthlyScore.objects.filter(company=b.company).count() == 2
