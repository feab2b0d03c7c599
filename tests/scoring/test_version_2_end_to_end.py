"""Version 2 of the rules through the database: failure values stored and explained, expired
subscriptions left out but listed, sentiment on CSM-owned accounts only, and the one-time
rebuild of scores computed under version 1.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company
from instances.metrics import failed_names
from instances.models import MonthlyUsage, UsagePing
from scoring.models import MonthlyScore, SchemeChange, ScoreSnapshot
from scoring.services import active_scheme, companies_refresh, scheme_version_sync
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.web.test_c360_views import _client, _html

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance():
    sub = SubscriptionFactory(licensed_seats=200, plan="ultimate")
    Company.objects.filter(pk=sub.company_id).update(
        customer_since=timezone.now().date() - dt.timedelta(days=400)
    )
    return InstanceFactory(subscription=sub, company=sub.company)


def _current(company_id: int) -> ScoreSnapshot:
    return ScoreSnapshot.objects.get(company_id=company_id, is_current=True)


def test_a_failure_value_is_stored_with_the_ping_and_its_month_and_explained(instance):
    # store_ping sends GitLab's -1 for every metric it is not given a value for.
    store_ping(instance, days_ago=2, metrics={"unique_active_users": None}, refresh=False)
    ping = UsagePing.objects.get(instance=instance)
    assert ping.unique_active_users is None
    assert "unique_active_users" in failed_names(ping.failed_metrics)
    assert "billable_users" not in failed_names(ping.failed_metrics)  # sent: 40
    month = MonthlyUsage.objects.get(instance=instance)
    assert month.failed_metrics == ping.failed_metrics
    companies_refresh(company_ids=[instance.company_id])
    ue = _current(instance.company_id).detail["measures"]["user_engagement"]
    assert ue["reason"] == "instance reported a failure value for unique active users"
    history = MonthlyScore.objects.get(company_id=instance.company_id)
    assert history.detail["measures"]["user_engagement"]["reason"] == ue["reason"]


def test_a_metric_sent_as_a_number_is_not_a_failure(instance):
    store_ping(instance, days_ago=2, metrics={"unique_active_users": 150}, refresh=False)
    failed = failed_names(UsagePing.objects.get(instance=instance).failed_metrics)
    assert "unique_active_users" not in failed and "umau" not in failed
    companies_refresh(company_ids=[instance.company_id])
    ue = _current(instance.company_id).detail["measures"]["user_engagement"]
    assert ue["value"] == pytest.approx(150 / 40)  # the factory's 40 billable users


def test_an_expired_subscription_leaves_its_instance_out_but_listed(instance, viewer):
    store_ping(instance, days_ago=2, refresh=False)
    ended = timezone.now().date() - dt.timedelta(days=5)
    instance.subscription.__class__.objects.filter(pk=instance.subscription_id).update(
        end_date=ended, status="expired"
    )
    companies_refresh(company_ids=[instance.company_id])
    card = _current(instance.company_id)
    assert card.detail["instance_ids"] == [] and card.license_utilization_color == "NA"
    assert card.detail["measures"]["license_utilization"]["reason"] == (
        "no Production instance on an active subscription"
    )
    html = _html(_client(viewer).get(reverse("account_instances", args=[instance.company_id])))
    row = html[html.index(f'id="instance-{instance.pk}"') :].split("</tr>", 1)[0]
    assert f"subscription {instance.subscription.name} ended on {ended.isoformat()}" in row


def test_sentiment_counts_once_the_account_is_csm_owned(instance, csm):
    store_ping(instance, days_ago=2, refresh=False)
    Company.objects.filter(pk=instance.company_id).update(
        sentiment="Red", sentiment_at=timezone.now(), segment="Scale", csm=csm
    )
    companies_refresh(company_ids=[instance.company_id])
    assert _current(instance.company_id).detail["csm_sentiment"]["reason"] == (
        "not a CSM-owned account"
    )
    Company.objects.filter(pk=instance.company_id).update(segment="Strategic")
    companies_refresh(company_ids=[instance.company_id])
    current = _current(instance.company_id)
    assert current.detail["csm_sentiment"]["color"] == "Red"
    assert current.overall_color == "Red"  # a Red word forces Red on an owned account


def test_scores_of_the_older_version_are_rebuilt_once_with_the_change_recorded(instance):
    store_ping(instance, days_ago=2, refresh=False)
    companies_refresh(company_ids=[instance.company_id])
    label = active_scheme().label
    older = label.replace("@2", "@1")
    ScoreSnapshot.objects.update(scheme=older, inputs_hash="old")
    MonthlyScore.objects.update(scheme=older)

    change = scheme_version_sync()
    assert (change.from_scheme, change.to_scheme, change.rebuilt_history) == (older, label, True)
    assert set(ScoreSnapshot.objects.filter(is_current=True).values_list("scheme", flat=True)) == {
        label
    }
    assert set(MonthlyScore.objects.values_list("scheme", flat=True)) == {label}
    assert scheme_version_sync() is None  # up to date: nothing recorded twice
    assert SchemeChange.objects.count() == 1


def test_an_up_to_date_book_records_no_change(instance):
    store_ping(instance, days_ago=2, refresh=False)
    companies_refresh(company_ids=[instance.company_id])
    assert scheme_version_sync() is None
    assert not SchemeChange.objects.exists()


def test_the_scorecard_explains_unknown_scanners_and_the_ultimate_only_rule(instance, viewer):
    premium = SubscriptionFactory(company=instance.company, plan="premium", licensed_seats=50)
    other = InstanceFactory(subscription=premium, company=instance.company)
    store_ping(instance, days_ago=2, metrics={"sast_scans_l28": 5, "dast_scans_l28": 1})
    store_ping(other, days_ago=2, metrics={"sast_scans_l28": 0, "dast_scans_l28": 0})
    companies_refresh(company_ids=[instance.company_id])
    html = _html(_client(viewer).get(reverse("account_scorecard", args=[instance.company_id])))
    assert "Computed over the Ultimate instances only; the others do not dilute it." in html
    assert "Unknown, so counted as not in use: Dependency Scanning scans (L28)" in html
    in_use = _current(instance.company_id).detail["measures"]["devsecops_scanners_in_use"]
    assert (in_use["value"], in_use["color"]) == (2, "Yellow")
    assert in_use["inputs"]["instance_ids"] == [instance.pk]


def test_a_starting_worker_queues_the_rebuild(instance):
    from celery.signals import worker_ready

    store_ping(instance, days_ago=2, refresh=False)
    companies_refresh(company_ids=[instance.company_id])
    label = active_scheme().label
    ScoreSnapshot.objects.update(scheme=label.replace("@2", "@1"), inputs_hash="old")
    worker_ready.send(sender=None)  # what Celery sends once a worker is up (eager here)
    assert SchemeChange.objects.get().to_scheme == label
    assert ScoreSnapshot.objects.get(is_current=True).scheme == label
