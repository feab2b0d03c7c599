"""The account's label changes read by its instances' ids (one array on PostgreSQL): the same
pending and recent changes as read through the account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from instances.models import LabelChange
from tests.factories import InstanceFactory
from usage_portal.web.c360 import selectors

pytestmark = pytest.mark.django_db


def _change(instance, *, days_ago: float, status: str, field: str = "instance_type"):
    at = timezone.now() - timedelta(days=days_ago)
    return LabelChange.objects.create(
        instance=instance,
        field=field,
        old_value="unknown",
        new_value="production",
        requested_at=at,
        effective_at=at + timedelta(hours=24),
        status=status,
        applied_at=at + timedelta(hours=24) if status == "applied" else None,
        author="csm1",
    )


@pytest.fixture(params=["any-db", pytest.param("postgresql", marks=pytest.mark.integration)])
def account(request):
    first = InstanceFactory()
    second = InstanceFactory(subscription=first.subscription, company=first.company)
    other_account = InstanceFactory()
    _change(first, days_ago=300, status="pending", field="health_inclusion")
    _change(second, days_ago=1, status="pending")
    for n in range(12):
        _change(first if n % 2 else second, days_ago=10 + n, status="applied")
    _change(other_account, days_ago=0.5, status="pending")
    return first.company


def test_by_the_instances_ids_the_changes_are_those_read_through_the_account(
    account, django_assert_num_queries
):
    instances = {i.pk: i for i in selectors.instances_list(account)}

    with django_assert_num_queries(2):
        pending = selectors.label_changes_pending(account, instances=instances)
        recent = selectors.label_changes_recent(account, instances=instances, limit=5)

    assert [c.pk for c in pending] == [c.pk for c in selectors.label_changes_pending(account)]
    assert [c.pk for c in recent] == [
        c.pk for c in selectors.label_changes_recent(account, limit=5)
    ]
    assert len(pending) == 2 and len(recent) == 5
    assert all(c.instance is instances[c.instance_id] for c in pending + recent)


def test_an_account_without_instances_has_no_changes(account):
    assert selectors.label_changes_pending(account, instances={}) == []
    assert selectors.label_changes_recent(account, instances={}) == []
