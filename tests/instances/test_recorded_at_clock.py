"""A ping's `recorded_at` is held to the portal's clock: nothing from the future, nothing pre-2016.

A future-dated ping froze its instance (the newest ping always wins, so every real ping after it
lost) and created a monthly row for a month that has not happened; every path that stores new
pings refuses it with a reason naming the problem, and keeps it as a rejected payload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from django.utils import timezone

from instances.models import MonthlyUsage, RejectedPayload, UsagePing
from instances.parsing import CLOCK_SKEW, PingRejected, parse_ping
from instances.saas import parse_saas_row
from tests.ingest_support import command_run, payload


def _body(when: datetime) -> dict:
    return orjson.loads(orjson.dumps(payload(recorded_at=when)))


def test_a_ping_from_the_future_is_refused_with_the_clock_it_was_held_to():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    with pytest.raises(PingRejected) as refused:
        parse_ping(_body(datetime(9999, 1, 1, tzinfo=UTC)), now=now)
    assert refused.value.reason == (
        "recorded_at 9999-01-01 00:00 UTC is in the future "
        "(the portal's clock reads 2026-12-02 12:00 UTC)"
    )


def test_a_sender_clock_slightly_ahead_is_accepted_up_to_the_skew():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_ping(_body(now + CLOCK_SKEW), now=now).recorded_at == now + CLOCK_SKEW
    with pytest.raises(PingRejected, match="in the future"):
        parse_ping(_body(now + CLOCK_SKEW + timedelta(seconds=1)), now=now)


def test_a_ping_from_before_service_ping_existed_is_refused_whatever_the_clock():
    with pytest.raises(PingRejected, match="before Service Ping existed"):
        parse_ping(_body(datetime(1970, 1, 1, tzinfo=UTC)))


def test_stored_pings_are_re_read_without_a_clock():
    # reparse_pings re-reads kept payloads: no `now`, so the future check does not apply there.
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    assert parse_ping(_body(future)).recorded_at == future


def test_a_saas_snapshot_dated_after_today_is_refused():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    row = {"namespace_id": "7", "snapshot_date": "2026-12-03"}
    with pytest.raises(PingRejected, match="2026-12-03 00:00 UTC is in the future"):
        parse_saas_row(row, line=2, now=now)
    today = {"namespace_id": "7", "snapshot_date": "2026-12-02"}
    assert parse_saas_row(today, line=2, now=now).recorded_at.date().isoformat() == "2026-12-02"


@pytest.mark.django_db
def test_ingest_pings_rejects_the_future_file_names_it_and_stores_the_others(tmp_path: Path):
    now = timezone.now()
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(payload(recorded_at=now - timedelta(days=1))))
    bad = tmp_path / "bogus.json"
    bad.write_bytes(orjson.dumps(payload(recorded_at=datetime(9999, 1, 1, tzinfo=UTC))))

    out, err, status, _ = command_run("ingest_pings", str(tmp_path), "--no-progress")

    assert status == 1
    assert f"{bad}: recorded_at 9999-01-01 00:00 UTC is in the future" in err
    assert UsagePing.objects.count() == 1
    assert not MonthlyUsage.objects.filter(month__year=9999).exists()
    assert RejectedPayload.objects.get().reason.startswith("recorded_at 9999-01-01")


@pytest.mark.django_db
def test_ingest_saas_rejects_a_future_snapshot_by_line(tmp_path: Path):
    export = tmp_path / "namespaces.csv"
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    export.write_text(
        "namespace_id,namespace_path,subscription_name,snapshot_date\n"
        f"70,acme,,{tomorrow}\n"
        f"71,acme2,,{(timezone.now() - timedelta(days=1)).date().isoformat()}\n"
    )

    out, err, status, _ = command_run("ingest_saas", str(export))

    assert status == 1, out + err
    assert f"{export}:line 2: recorded_at {tomorrow} 00:00 UTC is in the future" in err
    assert UsagePing.objects.count() == 1
