"""The ping store's plain-SQL reads and writes on PostgreSQL (``instances.services.bulk_sql``,
``accounts`` touch, ``scoring`` pending marks): the same rows and objects as the ORM's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.changes import ALL_HISTORY
from instances.models import Instance, License, UsagePing
from instances.services.bulk_sql import models_select, pings_existing, pings_insert
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


def _new_pings(instances, *, at: datetime, **values) -> list[UsagePing]:
    return [
        UsagePing(instance=inst, recorded_at=at + timedelta(minutes=n), source="http", **values)
        for n, inst in enumerate(instances)
    ]


def test_few_pings_go_in_one_insert_whose_text_is_the_same_for_every_batch_size():
    # The same text for one ping and for three is what lets psycopg parse it once; rows are
    # stored with every kind of value a ping has (bytes, NULL metrics, a boolean, text).
    first, second, third = InstanceFactory(), InstanceFactory(), InstanceFactory()
    at = datetime(2026, 11, 2, 8, 30, 15, 123456, tzinfo=UTC)
    one = _new_pings([first], at=at, raw_payload=b"\x00\xffraw", license_trial=True)
    # Out of (instance, moment) order on purpose: ids must still land on their own pings.
    three = _new_pings(
        [third, second, first],
        at=at + timedelta(days=1),
        version="17.5.1",
        license_trial=None,
        active_users=12,
    )
    three[0].ci_builds_l28 = 2**40

    with CaptureQueriesContext(connection) as single:
        pings_insert(one)
    with CaptureQueriesContext(connection) as batch:
        pings_insert(three)

    assert len(single) == len(batch) == 1
    assert single[0]["sql"] == batch[0]["sql"]
    for ping in one + three:
        stored = UsagePing.objects.get(pk=ping.pk)
        assert (stored.instance_id, stored.recorded_at) == (ping.instance_id, ping.recorded_at)
        for f in UsagePing._meta.concrete_fields:
            value = getattr(stored, f.attname)
            assert (bytes(value) if isinstance(value, memoryview) else value) == getattr(
                ping, f.attname
            ), f.attname
        assert not ping._state.adding
    assert UsagePing.objects.count() == 4


def test_a_ping_inserted_twice_is_an_integrity_error():
    inst = InstanceFactory()
    at = datetime(2026, 11, 2, tzinfo=UTC)
    pings_insert(_new_pings([inst], at=at))

    with pytest.raises(IntegrityError):
        pings_insert(_new_pings([inst], at=at))
