"""``reparse_pings``: pings stored before a release learnt a metric get it from their kept raw
payload (ping and monthly row), the accounts are rescored, and nothing else changes."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from instances.models import MonthlyUsage, UsagePing
from instances.services.reparse import pings_reparse
from scoring.models import ScoreSnapshot
from scoring.services import companies_refresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance():
    sub = SubscriptionFactory(licensed_seats=100)
    inst = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(inst, days_ago=2, metrics={"unique_active_users": 33, "umau": None}, refresh=False)
    companies_refresh(company_ids=[sub.company_id])
    return inst


def _as_before_the_release(instance) -> None:
    """As an older release stored it: no unique active users, no failure values recorded."""
    for model in (UsagePing, MonthlyUsage):
        model.objects.filter(instance=instance).update(unique_active_users=None, failed_metrics="")


def test_a_kept_payload_restores_the_new_metric_and_its_failure_values(
    instance, django_capture_on_commit_callbacks
):
    _as_before_the_release(instance)
    with django_capture_on_commit_callbacks(execute=True):  # the rescore it announces
        summary = pings_reparse()
    assert (summary.pings, summary.changed, summary.unreadable) == (1, 1, [])
    for model in (UsagePing, MonthlyUsage):
        row = model.objects.get(instance=instance)
        assert row.unique_active_users == 33
        assert "umau" in row.failed_metrics.split(",")  # store_ping sent -1 for it
    card = ScoreSnapshot.objects.get(company_id=instance.company_id, is_current=True).detail
    assert card["measures"]["user_engagement"]["inputs"]["numerator"] == 33
    again = pings_reparse()
    assert (again.pings, again.changed) == (1, 0)  # a second run changes nothing


def test_reading_some_metrics_keeps_the_other_failure_values(instance):
    UsagePing.objects.filter(instance=instance).update(unique_active_users=None)
    before = UsagePing.objects.get(instance=instance).failed_metrics
    pings_reparse(metrics=("unique_active_users",))
    row = UsagePing.objects.get(instance=instance)
    assert row.unique_active_users == 33 and row.failed_metrics == before


def test_a_purged_payload_keeps_its_values(instance):
    UsagePing.objects.filter(instance=instance).update(raw_payload=None, unique_active_users=None)
    summary = pings_reparse()
    assert summary.pings == 0
    assert UsagePing.objects.get(instance=instance).unique_active_users is None


def test_the_command_reports_what_it_did_and_refuses_unknown_metrics(instance, capsys):
    _as_before_the_release(instance)
    call_command("reparse_pings")
    assert "1 stored payload(s) read, 1 ping(s) updated, 1 account(s) to rescore." in (
        capsys.readouterr().out
    )
    with pytest.raises(CommandError, match="unknown metrics: nope"):
        call_command("reparse_pings", "--metrics", "nope")


def test_an_unreadable_payload_is_named_and_the_others_are_read(instance, capsys):
    other = InstanceFactory(subscription=instance.subscription, company=instance.company)
    store_ping(other, days_ago=1, refresh=False)
    UsagePing.objects.filter(instance=other).update(raw_payload=b"not zlib")
    bad = UsagePing.objects.get(instance=other).pk
    _as_before_the_release(instance)
    with pytest.raises(CommandError, match="1 payload"):
        call_command("reparse_pings")
    assert f"ping {bad}: " in capsys.readouterr().err
    assert UsagePing.objects.get(instance=instance).unique_active_users == 33
