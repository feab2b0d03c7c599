"""Labeling rules for accounts without a CSM: decisions, the pending path, people first."""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from instances.labels import label_change_request
from instances.models import LabelChange
from instances.rules import (
    SINGLE_INSTANCE_RULE,
    UTILIZATION_RULE,
    RuleInstance,
    rule_decisions,
)
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


def ri(i, **kw):
    base = {
        "instance_id": i,
        "is_saas": False,
        "instance_type": "unknown",
        "subscription_id": 1,
        "licensed_seats": 100,
        "billable_users": 0,
        "umau": 0,
    }
    return RuleInstance(**(base | kw))


def _account(segment, csm=None, seats=100):
    company = CompanyFactory(segment=segment, csm=csm)
    return SubscriptionFactory(company=company, licensed_seats=seats)


def test_rule_decisions_follow_the_handbook():
    decisions = dict(
        rule_decisions(
            [
                ri(1, billable_users=20),  # 20% license utilization → Production
                ri(2, umau=19, billable_users=5),  # 19%: not enough; shares subscription 1
                ri(3, subscription_id=2, billable_users=1),  # the only instance on its subscription
                ri(4, instance_type="non_production", billable_users=90),  # already labeled
                ri(5, is_saas=True, subscription_id=3),
            ]
        )
    )
    assert decisions[1] == UTILIZATION_RULE and decisions[3] == SINGLE_INSTANCE_RULE
    assert 2 not in decisions and 4 not in decisions and 5 in decisions


def test_rules_label_no_csm_accounts_through_the_pending_path(csm):
    scale = _account("Scale")
    busy = InstanceFactory(subscription=scale, company=scale.company, instance_type="unknown")
    store_ping(busy, recorded_at=timezone.now(), metrics={"billable_users": 30}, refresh=False)
    quiet = InstanceFactory(subscription=scale, company=scale.company, instance_type="unknown")
    store_ping(
        quiet, recorded_at=timezone.now(), metrics={"billable_users": 2, "umau": 2}, refresh=False
    )
    strategic = _account("Strategic", csm=csm)
    owned = InstanceFactory(
        subscription=strategic, company=strategic.company, instance_type="unknown"
    )
    store_ping(owned, recorded_at=timezone.now(), metrics={"billable_users": 90}, refresh=False)
    out = io.StringIO()
    call_command("run_labeling_rules", stdout=out)
    change = LabelChange.objects.get(instance=busy)
    assert change.status == "pending" and change.author == f"rule: {UTILIZATION_RULE}"
    assert change.new_value == "production" and change.requested_by is None
    assert not LabelChange.objects.filter(instance__in=[quiet, owned]).exists()
    assert "1 label change(s) requested" in out.getvalue()
    call_command("run_labeling_rules", stdout=out)  # running again adds nothing
    assert LabelChange.objects.filter(instance=busy).count() == 1


def test_rules_never_override_a_person(csm):
    digital = _account("Digital")
    inst = InstanceFactory(subscription=digital, company=digital.company, instance_type="unknown")
    store_ping(inst, recorded_at=timezone.now(), metrics={"billable_users": 80}, refresh=False)
    label_change_request(instance=inst, field="instance_type", value="non_production", by=csm)
    call_command("run_labeling_rules", stdout=io.StringIO())
    assert list(LabelChange.objects.filter(instance=inst).values_list("author", flat=True)) == [
        "csm_user"
    ]
