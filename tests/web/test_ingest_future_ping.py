"""``POST /usage_data`` refuses a ping recorded in the future: a broken clock, not usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from instances.models import Instance, MonthlyUsage, RejectedPayload, UsagePing
from tests.ingest_support import payload

pytestmark = [pytest.mark.django_db]


def send(body: dict):
    return Client().post(
        "/usage_data",
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"Accept": "application/json"},
    )


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_a_ping_from_year_9999_is_refused_with_the_reason_and_stores_nothing():
    response = send(payload(recorded_at=datetime(9999, 1, 1, tzinfo=UTC)))

    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert "9999-01-01" in error and "future" in error
    assert not UsagePing.objects.exists()
    assert not MonthlyUsage.objects.exists()
    assert not Instance.objects.exists()
    # Kept for ops, with the same reason.
    assert "future" in RejectedPayload.objects.get(source="http").reason


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_a_sender_clock_a_minute_ahead_is_still_accepted():
    response = send(payload(recorded_at=timezone.now() + timedelta(minutes=1)))
    assert response.status_code == 201
    assert UsagePing.objects.count() == 1 and MonthlyUsage.objects.count() == 1
