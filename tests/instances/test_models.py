"""The database itself keeps the data sane: unique identities and valid choices."""

import datetime as dt
from functools import partial

import pytest
from django.utils import timezone

from instances.models import Instance, LabelChange, License, MonthlyUsage, UsagePing
from tests.factories import InstanceFactory, refused

pytestmark = pytest.mark.django_db


def test_self_managed_instance_identity_is_unique_uuid_and_hostname():
    InstanceFactory(uuid="u-1", hostname="a.example.com")
    assert refused(lambda: InstanceFactory(uuid="u-1", hostname="a.example.com"))
    # The same uuid on another hostname is another instance (cloned VMs do this).
    assert not refused(lambda: InstanceFactory(uuid="u-1", hostname="b.example.com"))


def test_instance_identity_must_match_its_kind():
    assert refused(lambda: InstanceFactory(kind="self-managed", uuid=None))
    assert refused(lambda: InstanceFactory(kind="saas", uuid=None, namespace_id=None))
    InstanceFactory(kind="saas", uuid=None, hostname="", namespace_id=42)
    assert refused(lambda: InstanceFactory(kind="saas", uuid=None, hostname="", namespace_id=42))


def test_instance_type_and_inclusion_must_be_valid():
    assert refused(lambda: InstanceFactory(instance_type="staging"))
    assert refused(lambda: InstanceFactory(health_inclusion="maybe"))
    assert Instance.objects.count() == 0


def test_license_needs_an_identity_and_hashes_are_unique():
    assert refused(lambda: License.objects.create())
    License.objects.create(md5="a" * 32)
    assert refused(lambda: License.objects.create(md5="a" * 32))
    License.objects.create(sha256="b" * 64)
    assert refused(lambda: License.objects.create(sha256="b" * 64))


def test_one_ping_per_instance_and_recorded_at():
    instance = InstanceFactory()
    at = timezone.now()
    UsagePing.objects.create(instance=instance, recorded_at=at, source="http")
    assert refused(
        lambda: UsagePing.objects.create(instance=instance, recorded_at=at, source="bulk")
    )
    assert refused(
        lambda: UsagePing.objects.create(
            instance=instance, recorded_at=at + dt.timedelta(days=7), source="pigeon"
        )
    )


def test_monthly_usage_is_one_row_per_instance_month_on_the_first():
    instance = InstanceFactory()
    ping = UsagePing.objects.create(instance=instance, recorded_at=timezone.now(), source="http")
    MonthlyUsage.objects.create(
        instance=instance, month=dt.date(2026, 1, 1), ping=ping, recorded_at=ping.recorded_at
    )
    assert refused(
        lambda: MonthlyUsage.objects.create(
            instance=instance, month=dt.date(2026, 1, 1), ping=ping, recorded_at=ping.recorded_at
        )
    )
    assert refused(
        lambda: MonthlyUsage.objects.create(
            instance=instance, month=dt.date(2026, 2, 3), ping=ping, recorded_at=ping.recorded_at
        )
    )


def test_only_one_pending_label_change_per_instance_field():
    instance = InstanceFactory()
    now = timezone.now()
    change = partial(
        LabelChange.objects.create,
        instance=instance,
        field="instance_type",
        author="x",
        requested_at=now,
        effective_at=now,
    )

    change(old_value="production", new_value="obsolete")
    assert refused(lambda: change(old_value="production", new_value="non_production"))
    assert refused(
        lambda: change(field="hostname", new_value="x", status="applied", applied_at=now)
    )
    # Effective before requested, or applied without a time, are refused too.
    early = now - dt.timedelta(hours=1)
    assert refused(
        lambda: change(field="health_inclusion", new_value="opt_out", effective_at=early)
    )
    assert refused(lambda: change(field="health_inclusion", new_value="opt_out", status="applied"))
