"""Storing parsed pings: identity, idempotency, license mapping, unmapped pings, monthly rows."""

from __future__ import annotations

import threading
import zlib
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from django.db import connection

from accounts.importers import LicenseMappingRow, SubscriptionRow
from accounts.services import license_mappings_import, subscriptions_import
from instances.metrics import METRIC_NAMES
from instances.models import (
    Instance,
    InstanceType,
    License,
    MappingSource,
    MonthlyUsage,
    UsagePing,
)
from instances.services.licenses import license_map
from instances.services.storable import decompress_raw
from instances.services.store import pings_store
from tests.factories import CompanyFactory, SubscriptionFactory
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    FIXTURE,
    HOST,
    MD5,
    SHA256,
    UUID,
    WHEN,
    on_each_database,
    payload,
    row_counts,
    store,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def only_ping() -> UsagePing:
    return UsagePing.objects.defer("raw_payload").get()


# --------------------------------------------------------------------------------------------------
# Version shapes and values


@pytest.mark.parametrize(
    ("version", "md5", "sha256", "billable"),
    [
        ("13.12.4-ee", MD5, "", None),  # before 14.0: no billable users, md5 only
        ("15.4.2-ee", MD5, SHA256, 150),  # 15.2+: md5 and sha256
        ("16.5.1-ee", "", SHA256, 150),  # 16.2+: no md5
        ("17.6.2-ee", "", SHA256, 150),  # 17.5+: no counts.ci_builds
    ],
)
def test_every_version_shape_is_stored_with_what_it_sends(version, md5, sha256, billable):
    summary = store(payload(version))

    assert summary.accepted == 1
    ping = only_ping()
    assert ping.version == version
    assert (ping.license_md5, ping.license_sha256) == (md5, sha256)
    assert ping.billable_users == billable
    assert ping.umau == 120
    assert ping.licensed_users == 200
    assert ping.ci_builds_l28 == 900  # read from the newer key on 17.5+
    lic = License.objects.get()
    assert (lic.md5 or "", lic.sha256 or "") == (md5, sha256)
    instance = Instance.objects.get()
    assert (instance.uuid, instance.hostname, instance.version) == (UUID, HOST, version)


def test_new_self_managed_instance_starts_unknown():
    store(payload())
    assert Instance.objects.get().instance_type == InstanceType.UNKNOWN


@pytest.mark.parametrize("sentinel", [-1, -2, -3, -1000, {"-1": -1}])
def test_failure_sentinels_are_stored_as_null_never_as_numbers(sentinel):
    body = payload()
    body["active_user_count"] = sentinel
    body["usage_activity_by_stage_monthly"]["manage"]["events"] = sentinel
    body["counts_monthly"]["deployments"] = 0  # a real zero stays zero

    store(body)

    ping = only_ping()
    assert ping.active_users is None
    assert ping.umau is None
    assert ping.deployments_l28 == 0


def test_metric_absent_from_the_payload_is_null():
    body = payload()
    del body["usage_activity_by_stage_monthly"]["secure"]
    store(body)
    ping = only_ping()
    assert ping.sast_scans_l28 is None
    assert ping.secure_scanner_users is None


def test_gitlabs_full_fixture_is_stored_with_every_metric_unknown():
    # Its version is a placeholder object (refused as such, see test_ingest_http); a real one:
    body = orjson.loads(FIXTURE.read_bytes()) | {"version": "15.0.0-ee"}

    summary = store(body)

    assert summary.accepted == 1
    ping = only_ping()
    assert ping.recorded_at == datetime(2021, 1, 1, tzinfo=UTC)
    assert ping.instance.uuid == "d78a1ca1-e25b-4bc8-92ad-be3caf9673da"
    # Its leaves are SQL text, not counts: nothing may be read as a number.
    assert all(getattr(ping, name) is None for name in METRIC_NAMES)
    assert ping.license_id is None and ping.subscription_id is None
    assert MonthlyUsage.objects.get().ping_id == ping.id


def test_full_size_payload_is_stored_and_kept_compressed():
    body = payload(full_size=True)
    raw = orjson.dumps(body)

    store(body)

    blob = bytes(UsagePing.objects.values_list("raw_payload", flat=True).get())
    assert len(blob) < len(raw) / 3
    assert decompress_raw(blob) == raw
    assert orjson.loads(zlib.decompress(blob)) == body


# --------------------------------------------------------------------------------------------------
# Idempotency


def test_same_ping_sent_twice_is_stored_once():
    first = store(payload())
    before = row_counts()

    second = store(payload())

    assert second.outcomes[0].status == "duplicate"
    assert second.outcomes[0].ping_id == first.outcomes[0].ping_id
    assert row_counts() == before


def test_same_ping_twice_in_one_batch_is_stored_once():
    summary = store(payload(), payload())

    assert [o.status for o in summary.outcomes] == ["accepted", "duplicate"]
    assert summary.outcomes[0].ping_id == summary.outcomes[1].ping_id
    assert UsagePing.objects.count() == 1


def test_same_time_on_two_instances_is_two_pings():
    store(payload(), payload(hostname="gitlab-dr.acme.example"))
    assert UsagePing.objects.count() == 2
    assert Instance.objects.count() == 2  # same uuid, other hostname: a different instance


# PostgreSQL only: SQLite's in-memory test database locks whole tables across threads.
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_two_writers_storing_the_same_ping_at_once_store_it_once():
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def send():
        try:
            barrier.wait(timeout=10)
            outcomes.append(store(payload()).outcomes[0].status)
        except Exception as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(outcomes) == ["accepted", "duplicate"]
    assert UsagePing.objects.count() == 1
    assert Instance.objects.count() == 1
    assert License.objects.count() == 1


def test_a_batch_that_deadlocks_with_another_writer_is_stored_on_its_retry(monkeypatch, caplog):
    from django.db import OperationalError

    from instances.services import store as store_module

    class Deadlock(Exception):
        sqlstate = "40P01"

    real, calls = store_module._store, []

    def deadlocking_once(inputs, source):
        calls.append(len(inputs))
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from Deadlock()
        return real(inputs, source)

    monkeypatch.setattr(store_module, "_store", deadlocking_once)
    summary = store(payload())

    assert calls == [1, 1]
    assert [o.status for o in summary.outcomes] == ["accepted"]
    assert UsagePing.objects.count() == 1
    assert "deadlocked with another writer" in caplog.text


def test_a_database_away_is_not_retried_as_a_deadlock(monkeypatch):
    from django.db import OperationalError

    from instances.services import store as store_module

    calls = []

    def away(inputs, source):
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store_module, "_store", away)
    with pytest.raises(OperationalError):
        store(payload())
    assert calls == [1]


def test_rows_are_updated_in_primary_key_order(monkeypatch):
    from instances.services.bulk_sql import rows_update

    first = store(payload(uuid=UUID)).outcomes[0]
    store(payload(uuid="00000000-0000-4000-8000-000000000009"))
    instances = list(Instance.objects.order_by("-pk"))
    assert [i.pk for i in instances] == sorted((i.pk for i in instances), reverse=True)
    seen = []

    def spy(execute, sql, params, many, context):
        if sql.startswith("UPDATE"):
            seen.extend(row[-1] for row in params)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        rows_update(Instance, instances, ["hostname"])
    assert seen == sorted(i.pk for i in instances)
    assert first.ping_id


# --------------------------------------------------------------------------------------------------
# License identity: md5 only (< 15.2), both (15.2 – 16.1), sha256 only (16.2+) are ONE license

ERAS = {"md5-only": "14.10.0-ee", "both": "15.8.0-ee", "sha-only": "16.9.0-ee"}


def era_ping(era: str, week: int) -> dict:
    return payload(ERAS[era], recorded_at=WHEN + timedelta(weeks=week))


@pytest.mark.parametrize(
    "order",
    [
        ("md5-only", "both", "sha-only"),
        ("sha-only", "md5-only", "both"),
        ("md5-only", "sha-only", "both"),
        ("both", "sha-only", "md5-only"),
    ],
)
@pytest.mark.parametrize("batches", ["one batch", "one call each"])
def test_one_license_key_is_one_license_row_whatever_hashes_arrive_first(order, batches):
    pings = [era_ping(era, week) for week, era in enumerate(order)]
    if batches == "one batch":
        store(*pings)
    else:
        for body in pings:
            store(body)

    lic = License.objects.get()
    assert (lic.md5, lic.sha256) == (MD5, SHA256)
    assert set(UsagePing.objects.values_list("license_id", flat=True)) == {lic.id}
    assert Instance.objects.get().license_id == lic.id


def test_hash_case_does_not_split_a_license():
    store(payload("14.10.0-ee", md5=MD5.upper()))
    store(payload("15.8.0-ee", recorded_at=WHEN + timedelta(weeks=1)))
    lic = License.objects.get()
    assert lic.md5 == MD5


def test_merging_keeps_the_imported_mapping_and_attaches_the_waiting_pings():
    sub = SubscriptionFactory()
    license_mappings_import(rows=[LicenseMappingRow(2, MD5, sub.name)])
    store(era_ping("sha-only", 0))  # known only by its sha256 yet: a second row, unmapped
    assert License.objects.count() == 2
    assert only_ping().subscription_id is None

    store(era_ping("both", 1))  # proves md5 and sha256 are one key

    lic = License.objects.get()
    assert (lic.md5, lic.sha256, lic.subscription_id) == (MD5, SHA256, sub.id)
    assert lic.mapped_via == MappingSource.IMPORT
    assert set(UsagePing.objects.values_list("subscription_id", flat=True)) == {sub.id}
    instance = Instance.objects.get()
    assert (instance.subscription_id, instance.company_id) == (sub.id, sub.company_id)


# --------------------------------------------------------------------------------------------------
# Mapping to a subscription, unmapped pings


def test_ping_maps_by_its_subscription_id_first():
    by_id, by_hash = SubscriptionFactory(), SubscriptionFactory()
    license_mappings_import(rows=[LicenseMappingRow(2, MD5, by_hash.name)])

    store(payload("15.8.0-ee", subscription_id=by_id.name))

    assert only_ping().subscription_id == by_id.id
    assert Instance.objects.get().company_id == by_id.company_id


def test_ping_without_subscription_id_maps_by_license_md5():
    sub = SubscriptionFactory()
    license_mappings_import(rows=[LicenseMappingRow(2, MD5, sub.name)])

    summary = store(payload("15.8.0-ee"))

    assert summary.unmapped == 0
    assert only_ping().subscription_id == sub.id


def test_ping_naming_an_unknown_subscription_falls_back_to_the_mapping():
    sub = SubscriptionFactory()
    license_mappings_import(rows=[LicenseMappingRow(2, MD5, sub.name)])
    store(payload("15.8.0-ee", subscription_id="A-S99999999"))
    assert only_ping().subscription_id == sub.id


def test_unmapped_ping_is_kept_and_flagged():
    summary = store(payload("15.8.0-ee"))

    assert summary.accepted == 1
    assert summary.unmapped == 1
    assert summary.outcomes[0].unmapped is True
    ping = only_ping()
    assert ping.subscription_id is None
    assert UsagePing.objects.unmapped().count() == 1
    instance = Instance.objects.get()
    assert instance.subscription_id is None and instance.company_id is None
    assert License.objects.get().subscription_id is None


def test_unmapped_ping_attaches_when_the_mapping_file_names_its_license():
    store(payload("15.8.0-ee"))
    sub = SubscriptionFactory()

    summary = license_mappings_import(rows=[LicenseMappingRow(2, MD5, sub.name)])

    assert summary.attached_pings == 1
    assert only_ping().subscription_id == sub.id
    instance = Instance.objects.get()
    assert (instance.subscription_id, instance.company_id) == (sub.id, sub.company_id)
    assert MonthlyUsage.objects.get().company_id == sub.company_id
    lic = License.objects.get()
    assert (lic.subscription_id, lic.mapped_via) == (sub.id, MappingSource.IMPORT)


def test_unmapped_ping_attaches_when_its_subscription_is_imported_later():
    company = CompanyFactory()
    store(payload("14.10.0-ee"))  # an older ping: no subscription id in it
    store(payload("15.8.0-ee", recorded_at=WHEN + timedelta(weeks=1), subscription_id="A-S7"))
    assert UsagePing.objects.unmapped().count() == 2

    summary = subscriptions_import(
        rows=[
            SubscriptionRow(
                2,
                "A-S7",
                company.crm_account_id,
                "ultimate",
                100,
                date(2024, 1, 1),
                date(2025, 1, 1),
                "active",
                "self-managed",
                None,
            )
        ]
    )

    sub = company.subscriptions.get()
    assert summary.attached_pings == 2  # the one naming it, and the older one of its license
    assert UsagePing.objects.unmapped().count() == 0
    lic = License.objects.get()
    assert (lic.subscription_id, lic.mapped_via) == (sub.id, MappingSource.PING)
    assert Instance.objects.get().company_id == company.id


def test_a_ping_naming_its_subscription_attaches_earlier_pings_of_its_license():
    sub = SubscriptionFactory()
    store(payload("15.8.0-ee"))
    assert UsagePing.objects.unmapped().count() == 1

    store(payload("15.8.0-ee", recorded_at=WHEN + timedelta(weeks=1), subscription_id=sub.name))

    assert UsagePing.objects.unmapped().count() == 0
    assert License.objects.get().subscription_id == sub.id


def test_license_map_by_hand_attaches_waiting_pings_and_records_who(django_user_model):
    store(payload("16.5.1-ee"))  # sha256 only: no mapping file can name it
    sub = SubscriptionFactory()
    person = django_user_model.objects.create_user("ops_person")

    attached = license_map(
        license=License.objects.get(), subscription=sub, by=person, via=MappingSource.MANUAL
    )

    assert attached == 1
    lic = License.objects.get()
    assert (lic.mapped_via, lic.mapped_by, lic.subscription) == ("manual", person, sub)
    assert lic.mapped_at is not None
    assert Instance.objects.get().subscription_id == sub.id


def test_correcting_a_mapping_moves_pings_it_mapped_but_not_pings_naming_their_own():
    wrong, right = SubscriptionFactory(), SubscriptionFactory()
    license_mappings_import(rows=[LicenseMappingRow(2, MD5, wrong.name)])
    store(payload("15.8.0-ee"))  # mapped through the (wrong) license mapping
    store(payload("15.8.0-ee", recorded_at=WHEN - timedelta(weeks=1), subscription_id=wrong.name))

    license_map(license=License.objects.get(), subscription=right, via=MappingSource.MANUAL)

    by_time = dict(UsagePing.objects.values_list("recorded_at", "subscription_id"))
    assert by_time == {WHEN: right.id, WHEN - timedelta(weeks=1): wrong.id}
    assert Instance.objects.get().company_id == right.company_id


# --------------------------------------------------------------------------------------------------
# Instance and monthly rows move with the newest ping


def test_instance_takes_version_and_dates_of_its_newest_ping_even_out_of_order():
    store(payload("16.5.1-ee", recorded_at=WHEN))
    store(payload("16.7.0-ee", recorded_at=WHEN + timedelta(weeks=2)))
    store(payload("16.3.0-ee", recorded_at=WHEN - timedelta(weeks=3)))  # arrives late

    instance = Instance.objects.get()
    assert instance.version == "16.7.0-ee"
    assert instance.version_sort == 16_007_000
    assert instance.last_ping_at == WHEN + timedelta(weeks=2)
    assert instance.first_ping_at == WHEN - timedelta(weeks=3)


def test_monthly_usage_is_the_last_ping_of_each_calendar_month():
    def ping_on(day: datetime, umau: int) -> dict:
        return payload(recorded_at=day, metrics={"umau": umau})

    store(
        ping_on(datetime(2024, 1, 5, tzinfo=UTC), 10),
        ping_on(datetime(2024, 1, 26, tzinfo=UTC), 26),
        ping_on(datetime(2024, 2, 2, tzinfo=UTC), 32),
    )
    store(ping_on(datetime(2024, 1, 12, tzinfo=UTC), 12))  # older than January's last: ignored

    def months():
        return {
            m.month: m.umau for m in MonthlyUsage.objects.only("month", "umau").order_by("month")
        }

    assert months() == {date(2024, 1, 1): 26, date(2024, 2, 1): 32}

    store(ping_on(datetime(2024, 1, 31, 23, 59, tzinfo=UTC), 31))  # newer: replaces it
    assert months() == {date(2024, 1, 1): 31, date(2024, 2, 1): 32}
    january = MonthlyUsage.objects.get(month=date(2024, 1, 1))
    assert january.ping.recorded_at == datetime(2024, 1, 31, 23, 59, tzinfo=UTC)


def test_a_batch_queues_one_score_refresh_after_commit(
    monkeypatch, django_capture_on_commit_callbacks
):
    from scoring import tasks

    calls = []
    monkeypatch.setattr(
        tasks.refresh_companies, "apply_async", lambda args, *_, **__: calls.append(tuple(args))
    )
    sub = SubscriptionFactory()
    inputs = [
        payload(recorded_at=WHEN + timedelta(weeks=w), subscription_id=sub.name) for w in range(3)
    ]

    with django_capture_on_commit_callbacks(execute=True):
        store(*inputs, refresh=True)

    # One refresh, rescoring history from the earliest new ping's month on.
    assert calls == [([sub.company_id], "new ping", WHEN.date().isoformat(), True)]


def test_empty_batch_stores_nothing():
    assert pings_store(inputs=[], source="bulk").outcomes == []


def test_a_large_batch_stores_every_field_of_every_ping():
    # 40 pings: on PostgreSQL this goes through COPY rather than INSERT.
    bodies = [
        payload(
            "15.8.0-ee",
            uuid=f"00000000-0000-0000-0000-{n:012d}",
            recorded_at=WHEN + timedelta(hours=n),
            metrics={"umau": n, "billable_users": 1000 + n},
        )
        for n in range(40)
    ]

    summary = store(*bodies, source="bulk")

    assert summary.accepted == 40
    pings = {p.id: p for p in UsagePing.objects.select_related("instance")}
    for n, outcome in enumerate(summary.outcomes):
        ping = pings[outcome.ping_id]
        assert ping.instance.uuid == f"00000000-0000-0000-0000-{n:012d}"
        assert (ping.umau, ping.billable_users) == (n, 1000 + n)
        assert ping.recorded_at == WHEN + timedelta(hours=n)
        assert (ping.source, ping.version, ping.license_md5) == ("bulk", "15.8.0-ee", MD5)
        assert ping.license_trial is False
        assert orjson.loads(decompress_raw(ping.raw_payload)) == bodies[n]
    assert MonthlyUsage.objects.count() == 40
    assert License.objects.count() == 1  # forty instances, one license key
    # New rows keep getting ids after the COPY (the sequence moved past the ids it used).
    assert store(payload(uuid="another")).outcomes[0].ping_id > max(pings)


def test_license_merge_proven_by_a_late_older_ping_leaves_the_instance_on_the_merged_row():
    store(payload("14.10.0-ee", recorded_at=WHEN))  # md5 only
    store(payload("16.9.0-ee", recorded_at=WHEN + timedelta(weeks=5)))  # sha256 only, newest
    assert License.objects.count() == 2

    store(payload("15.8.0-ee", recorded_at=WHEN + timedelta(weeks=2)))  # both, arriving late

    lic = License.objects.get()
    instance = Instance.objects.get()
    assert instance.license_id == lic.id
    assert instance.version == "16.9.0-ee"  # the late ping did not move the instance back
    assert set(UsagePing.objects.values_list("license_id", flat=True)) == {lic.id}
