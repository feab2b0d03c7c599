"""Raw payloads are purged after RAW_PAYLOAD_RETENTION_DAYS, and never all at once by mistake."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from instances.models import UsagePing
from instances.retention import raw_payloads_purge
from tests.ingest_support import payload, store

pytestmark = pytest.mark.django_db


def _two_pings():
    now = timezone.now()
    store(payload(recorded_at=now - timedelta(days=1)))
    old = UsagePing.objects.get()
    UsagePing.objects.filter(pk=old.pk).update(received_at=now - timedelta(days=800))
    store(payload(uuid="11111111-1111-1111-1111-111111111111", recorded_at=now))
    return old


@override_settings(RAW_PAYLOAD_RETENTION_DAYS=730)
def test_only_payloads_older_than_the_retention_are_cleared():
    old = _two_pings()

    assert raw_payloads_purge() == 1

    kept = dict(UsagePing.objects.values_list("pk", "raw_payload"))
    assert kept[old.pk] is None
    assert all(raw is not None for pk, raw in kept.items() if pk != old.pk)


@pytest.mark.parametrize("days", [0, -1])
def test_a_retention_of_zero_or_less_purges_nothing(days):
    _two_pings()

    with override_settings(RAW_PAYLOAD_RETENTION_DAYS=days), pytest.raises(ValueError):
        raw_payloads_purge()

    assert not UsagePing.objects.filter(raw_payload__isnull=True).exists()
