"""The Instances section's label changes, read in one query (``label_changes_of_instances``):
the same pending and recent changes as ``label_changes_pending`` and ``label_changes_recent``."""

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


@pytest.mark.parametrize("limit", [40, 5])
def test_one_query_reads_the_same_pending_and_recent_changes_as_two(
    limit, django_assert_num_queries
):
    first = InstanceFactory()
    second = InstanceFactory(subscription=first.subscription, company=first.company)
    other_account = InstanceFactory()
    # An old pending change, older than the latest few: in the pending list, not the recent.
    _change(first, days_ago=300, status="pending", field="health_inclusion")
    _change(second, days_ago=1, status="pending")
    for n in range(12):
        _change(first if n % 2 else second, days_ago=10 + n, status="applied")
    _change(other_account, days_ago=0.5, status="pending")
    company = first.company
    instances = {i.pk: i for i in selectors.instances_list(company)}

    with django_assert_num_queries(1):
        pending, recent = selectors.label_changes_of_instances(instances, limit=limit)

    assert [c.pk for c in pending] == [
        c.pk for c in selectors.label_changes_pending(company, instances=instances)
    ]
    assert [c.pk for c in recent] == [
        c.pk for c in selectors.label_changes_recent(company, instances=instances, limit=limit)
    ]
    assert len(pending) == 2 and len(recent) == min(limit, 14)
    assert all(c.instance is instances[c.instance_id] for c in pending + recent)


def test_an_account_without_instances_reads_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert selectors.label_changes_of_instances({}) == ([], [])
