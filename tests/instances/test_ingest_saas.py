"""``manage.py ingest_saas PATH``: weekly SaaS namespace exports as CSV or JSON."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import orjson
import pytest

from accounts.importers import SubscriptionRow
from accounts.services import subscriptions_import
from instances.models import Instance, InstanceType, RejectedPayload, UsagePing
from tests.factories import CompanyFactory, SubscriptionFactory
from tests.ingest_support import command_run, on_each_database  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

HEADER = (
    "namespace_id,namespace_path,subscription_name,snapshot_date,seats,seats_in_use,"
    "umau,ci_builds_l28,deployments_l28,extra_column\n"
)


def ingest(*paths) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) of the command."""
    return command_run("ingest_saas", *paths)[:3]


@pytest.fixture
def subscription():
    return SubscriptionFactory(name="A-S00000777", deployment="saas")


def test_csv_export_is_stored_as_production_namespaces(tmp_path, subscription):
    export = tmp_path / "namespaces.csv"
    export.write_text(
        "\ufeff"
        + HEADER
        + "9970,acme-corp,A-S00000777,2024-03-03,250,180,140,5000,12,ignored\n"
        + "9971,acme-labs,,2024-03-03,10,4,,-1,,\n"
    )

    out, err, status = ingest(export)

    assert (status, err) == (0, "")
    assert "2 row(s): 2 accepted, 0 duplicates, 1 unmapped, 0 rejected" in out
    corp = Instance.objects.get(namespace_id=9970)
    assert (corp.kind, corp.instance_type) == ("saas", InstanceType.PRODUCTION)
    assert (corp.namespace_path, corp.subscription_id) == ("acme-corp", subscription.id)
    assert corp.company_id == subscription.company_id
    ping = UsagePing.objects.defer("raw_payload").get(instance=corp)
    assert ping.recorded_at == datetime(2024, 3, 3, tzinfo=UTC)
    assert (ping.licensed_users, ping.billable_users, ping.umau) == (250, 180, 140)
    assert (ping.ci_builds_l28, ping.deployments_l28, ping.source) == (5000, 12, "saas")
    labs = UsagePing.objects.defer("raw_payload").get(instance__namespace_id=9971)
    assert labs.subscription_id is None  # kept, unmapped
    assert (labs.umau, labs.ci_builds_l28) == (None, None)  # blank and -1 are unknown, not 0


def test_json_export_and_a_second_load_stores_each_snapshot_once(tmp_path, subscription):
    rows = [
        {
            "namespace_id": 9970,
            "namespace_path": "acme-corp",
            "subscription_name": "A-S00000777",
            "snapshot_date": "2024-03-03",
            "seats": 250,
            "seats_in_use": 180,
            "umau": 140,
        },
        {
            "namespace_id": 9970,
            "namespace_path": "acme-corp-renamed",
            "subscription_name": "A-S00000777",
            "snapshot_date": "2024-03-10",
            "seats": 250,
            "seats_in_use": 181,
            "umau": 150,
        },
    ]
    export = tmp_path / "namespaces.json"
    export.write_bytes(orjson.dumps(rows))

    ingest(export)
    out, _, status = ingest(export)

    assert status == 0
    assert "2 row(s): 0 accepted, 2 duplicates" in out
    assert UsagePing.objects.count() == 2
    namespace = Instance.objects.get()
    assert namespace.namespace_path == "acme-corp-renamed"  # the newest snapshot's path
    assert namespace.last_ping_at == datetime(2024, 3, 10, tzinfo=UTC)


def test_json_lines_export_is_read(tmp_path):
    export = tmp_path / "namespaces.jsonl"
    export.write_text(
        '{"namespace_id": 1, "namespace_path": "a", "subscription_name": "",'
        ' "snapshot_date": "2024-03-03"}\n\n'
        '{"namespace_id": 2, "namespace_path": "b", "subscription_name": "",'
        ' "snapshot_date": "2024-03-03"}\n'
    )
    _, _, status = ingest(export)
    assert status == 0
    assert Instance.objects.filter(kind="saas").count() == 2


def test_bad_rows_are_listed_kept_and_the_good_rows_stored(tmp_path):
    export = tmp_path / "namespaces.csv"
    export.write_text(
        HEADER
        + "9970,acme-corp,,2024-03-03,250,180,140,5000,12,\n"
        + "abc,broken,,2024-03-03,1,1,1,1,1,\n"
        + "9972,no-date,,03/03/2024,1,1,1,1,1,\n"
        + "-5,negative,,2024-03-03,1,1,1,1,1,\n"
    )

    out, err, status = ingest(export)

    assert status == 1
    assert err.splitlines() == [
        f"{export}:line 3: namespace_id 'abc' is not a positive whole number",
        f"{export}:line 4: snapshot_date '03/03/2024' is not an ISO date (YYYY-MM-DD)",
        f"{export}:line 5: namespace_id '-5' is not a positive whole number",
    ]
    assert "4 row(s): 1 accepted, 0 duplicates, 1 unmapped, 3 rejected" in out
    assert UsagePing.objects.count() == 1
    kept = RejectedPayload.objects.filter(source="saas").order_by("id")
    assert kept.count() == 3
    assert kept[0].reason == "line 3: namespace_id 'abc' is not a positive whole number"
    assert kept[0].filename == str(export)
    assert orjson.loads(zlib.decompress(kept[0].raw))["namespace_path"] == "broken"


def test_json_item_that_is_not_an_object_is_reported_by_position(tmp_path):
    export = tmp_path / "namespaces.json"
    export.write_bytes(orjson.dumps([42]))
    _, err, status = ingest(export)
    assert status == 1
    assert err.strip() == f"{export}:item 1: row is not an object"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("namespace_id,snapshot_date\n1,2024-03-03\n", "missing column(s)"),
        ('[{"namespace_id": 1,', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ],
)
def test_unreadable_export_is_refused_as_a_whole(tmp_path, content, reason):
    export = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        export.write_bytes(content)
    else:
        export.write_text(content)

    _, err, status = ingest(export)

    assert status == 1
    assert err.startswith(f"{export}: {reason}")
    assert not UsagePing.objects.exists()
    assert RejectedPayload.objects.get().reason.startswith(reason)


def test_subscription_imported_later_attaches_the_namespace(tmp_path):
    export = tmp_path / "namespaces.csv"
    export.write_text(HEADER + "9970,acme-corp,A-S00000888,2024-03-03,250,180,140,5000,12,\n")
    ingest(export)
    assert UsagePing.objects.unmapped().count() == 1

    company = CompanyFactory()
    row = SubscriptionRow(
        2, "A-S00000888", company.crm_account_id, "premium", 250, None, None, "active", "saas", None
    )

    summary = subscriptions_import(rows=[row])

    assert summary.attached_pings == 1
    assert UsagePing.objects.unmapped().count() == 0
    assert Instance.objects.get().company_id == company.id
