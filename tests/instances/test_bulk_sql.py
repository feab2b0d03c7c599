"""The ping store's plain-SQL reads and writes on PostgreSQL (``instances.services.bulk_sql``,
``accounts`` touch, ``scoring`` pending marks): the same rows and objects as the ORM's."""

from __future__ import annotations

from datetime import date

import pytest
from django.utils import timezone

from accounts.changes import ALL_HISTORY
from instances.models import Instance, License, UsagePing
from instances.services.bulk_sql import models_select, pings_existing
from scoring.listeners import record_pending
from scoring.models import PendingRefresh
from tests.factories import (
    CompanyFactory,
    InstanceFactory,
    LicenseFactory,
    SubscriptionFactory,
    store_ping,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_selected_rows_are_the_orms_objects_with_their_related_row_attached():
    sub = SubscriptionFactory()
    mapped = LicenseFactory(subscription=sub, plan="ultimate")
    unmapped = LicenseFactory()
    LicenseFactory()  # not asked for

    rows = models_select(
        License,
        "t.md5 = ANY(%s)",
        [[mapped.md5, unmapped.md5]],
        related="subscription",
    )

    by_pk = {lic.pk: lic for lic in rows}
    assert set(by_pk) == {mapped.pk, unmapped.pk}
    orm = {lic.pk: lic for lic in License.objects.filter(pk__in=by_pk)}
    for pk, lic in by_pk.items():
        assert [getattr(lic, f.attname) for f in License._meta.concrete_fields] == [
            getattr(orm[pk], f.attname) for f in License._meta.concrete_fields
        ]
        assert not lic._state.adding and lic._state.db == "default"
    # Attached, as select_related leaves them: no query to read them.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as reads:
        assert by_pk[mapped.pk].subscription == sub
        assert by_pk[mapped.pk].subscription.name == sub.name
        assert by_pk[unmapped.pk].subscription is None
    assert len(reads) == 0


def test_selected_instances_can_be_saved_as_loaded_ones():
    inst = InstanceFactory()
    (row,) = models_select(Instance, "t.uuid = ANY(%s)", [[inst.uuid]])
    row.hostname = "renamed.example.com"
    row.save(update_fields=["hostname"])
    assert Instance.objects.get(pk=inst.pk).hostname == "renamed.example.com"


def test_existing_pings_are_found_by_instance_and_moment_only():
    inst = InstanceFactory()
    kept = store_ping(inst, days_ago=3, refresh=False)
    store_ping(inst, days_ago=2, refresh=False)
    other = InstanceFactory()

    found = pings_existing({inst.pk, other.pk}, {kept.recorded_at, timezone.now()})

    assert found == [(inst.pk, kept.recorded_at, kept.pk, kept.subscription_id)]
    assert pings_existing(set(), {kept.recorded_at}) == []
    assert UsagePing.objects.count() == 2


@pytest.mark.parametrize("since", [date(2026, 11, 1), ALL_HISTORY, None])
def test_pending_marks_keep_every_kind_of_first_changed_day(since):
    a, b = CompanyFactory(), CompanyFactory()
    record_pending(company_ids=[a.pk, b.pk], since=since, reason="new ping" * 20)

    rows = PendingRefresh.objects.order_by("company_id")
    assert [(r.company_id, r.since, r.reason) for r in rows] == [
        (a.pk, since, ("new ping" * 20)[:64]),
        (b.pk, since, ("new ping" * 20)[:64]),
    ]
    assert all(r.created_at is not None for r in rows)
