"""``manage.py import_crm PATH...``: companies, subscriptions and GitLab's license mapping file."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from accounts.models import Company, Subscription
from instances.models import Instance, License, MappingSource, MonthlyUsage, UsagePing
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    MD5,
    command_run,
    on_each_database,
    payload,
    store,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

COMPANIES = (
    "crm_account_id,name,segment,csm,customer_since,region\n"
    "0016100000000001,Acme Robotics,Strategic,csm_user,2021-04-01,EMEA\n"
    "0016100000000002,Globex,scale,,,AMER\n"
)
SUBSCRIPTIONS = (
    "subscription_name,crm_account_id,plan,licensed_seats,start_date,end_date,status,"
    "deployment,arr\n"
    "A-S00000001,0016100000000001,Ultimate,250,2024-01-01,2025-01-01,active,self-managed,"
    "120000.50\n"
    "A-S00000002,0016100000000002,silver,50,2024-02-01,2025-02-01,,saas,\n"
)
MAPPINGS = f"license_md5,zuora_subscription_id\n{MD5},A-S00000001\n"


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def run(*paths) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) of the command."""
    out, err, status, error = command_run("import_crm", *paths)
    assert error is None or str(error).endswith("not imported, listed above")
    return out, err, status


def test_companies_and_subscriptions_are_created_from_their_headers(tmp_path, csm):
    companies = write(tmp_path, "accounts.csv", COMPANIES, bom=True)
    subscriptions = write(tmp_path, "subs.csv", SUBSCRIPTIONS)

    out, err, status = run(subscriptions, companies)  # order on the command line is irrelevant

    assert (status, err) == (0, "")
    assert f"{companies}: companies: 2 created, 0 updated, 0 unchanged, 0 with errors" in out
    assert f"{subscriptions}: subscriptions: 2 created, 0 updated, 0 unchanged" in out
    acme = Company.objects.get(crm_account_id="0016100000000001")
    assert (acme.name, acme.segment, acme.csm, acme.customer_since) == (
        "Acme Robotics",
        "Strategic",
        csm,
        date(2021, 4, 1),
    )
    assert Company.objects.get(name="Globex").segment == "Scale"
    ultimate = Subscription.objects.get(name="A-S00000001")
    assert (ultimate.company, ultimate.plan, ultimate.licensed_seats) == (acme, "ultimate", 250)
    assert ultimate.arr == Decimal("120000.50")
    premium = Subscription.objects.get(name="A-S00000002")
    assert (premium.plan, premium.status, premium.deployment) == ("premium", "active", "saas")


def test_reimport_updates_and_never_duplicates(tmp_path, csm):
    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    changed = SUBSCRIPTIONS.replace(",250,", ",300,")

    out, _, status = run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", changed))

    assert status == 0
    assert "companies: 0 created, 0 updated, 2 unchanged" in out
    assert "subscriptions: 0 created, 1 updated, 1 unchanged" in out
    assert Company.objects.count() == 2
    assert Subscription.objects.count() == 2
    assert Subscription.objects.get(name="A-S00000001").licensed_seats == 300


def test_mapping_file_attaches_the_pings_that_waited_for_it(tmp_path, csm):
    store(payload("15.8.0-ee"))  # license md5 MD5, no subscription id: unmapped
    assert UsagePing.objects.unmapped().count() == 1

    out, _, status = run(
        write(tmp_path, "m.csv", MAPPINGS),
        write(tmp_path, "a.csv", COMPANIES),
        write(tmp_path, "s.csv", SUBSCRIPTIONS),
    )

    assert status == 0
    assert "license mappings: 0 created, 1 updated, 0 unchanged" in out
    assert "1 waiting ping(s) attached" in out
    sub = Subscription.objects.get(name="A-S00000001")
    assert UsagePing.objects.unmapped().count() == 0
    lic = License.objects.get()
    assert (lic.subscription, lic.mapped_via) == (sub, MappingSource.IMPORT)
    instance = Instance.objects.get()
    assert (instance.subscription, instance.company_id) == (sub, sub.company_id)
    assert MonthlyUsage.objects.get().company_id == sub.company_id

    again, _, _ = run(write(tmp_path, "m.csv", MAPPINGS))
    assert "license mappings: 0 created, 0 updated, 1 unchanged" in again


def test_mapping_for_a_license_no_ping_has_shown_yet_applies_when_it_arrives(tmp_path, csm):
    run(
        write(tmp_path, "a.csv", COMPANIES),
        write(tmp_path, "s.csv", SUBSCRIPTIONS),
        write(tmp_path, "m.csv", MAPPINGS.replace(MD5, MD5.upper())),
    )
    assert License.objects.get().md5 == MD5

    store(payload("15.8.0-ee"))

    assert UsagePing.objects.get().subscription.name == "A-S00000001"


def test_a_mapping_made_by_hand_is_left_as_it_is(tmp_path, csm):
    from instances.services.licenses import license_map

    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    store(payload("15.8.0-ee"))
    by_hand = Subscription.objects.get(name="A-S00000002")
    license_map(license=License.objects.get(), subscription=by_hand, via=MappingSource.MANUAL)

    out, _, status = run(write(tmp_path, "m.csv", MAPPINGS))

    assert status == 0
    assert f"line 2: license {MD5} was mapped by hand to A-S00000002; left as is" in out
    assert License.objects.get().subscription == by_hand


def test_subscription_moved_to_another_company_takes_its_instances_along(tmp_path, csm):
    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    store(payload("15.8.0-ee", subscription_id="A-S00000001"))
    moved = SUBSCRIPTIONS.replace("A-S00000001,0016100000000001", "A-S00000001,0016100000000002")

    run(write(tmp_path, "s.csv", moved))

    globex = Company.objects.get(name="Globex")
    assert Instance.objects.get().company == globex
    assert MonthlyUsage.objects.get().company == globex


def test_bad_rows_are_reported_by_line_and_the_good_rows_imported(tmp_path, csm):
    companies = write(
        tmp_path,
        "a.csv",
        COMPANIES
        + "0016100000000003,Initech,Enterprise,,,\n"  # line 4: unknown segment
        + "0016100000000004,Hooli,Growth,nobody,,\n"  # line 5: unknown CSM
        + "0016100000000005,Soylent,Digital,,01/02/2020,\n"  # line 6: not an ISO date
        + "0016100000000001,Acme again,Growth,,,\n"  # line 7: repeated account id
        + f"{'9' * 65},Too Long,Growth,,,\n"  # line 8: id over 64 characters
        + ",Nameless,Growth,,,\n"  # line 9: empty id
        + f"0016100000000008,Long CSM,Growth,{'c' * 151},,\n",  # line 10: no such username
    )
    subscriptions = write(
        tmp_path,
        "s.csv",
        SUBSCRIPTIONS
        + "A-S00000003,0016100000000099,premium,10,,,active,saas,\n"  # line 4: unknown company
        + "A-S00000004,0016100000000001,premium,-3,,,active,saas,\n"  # line 5: negative seats
        + "A-S00000005,0016100000000001,premium,10,,,active,saas,NaN\n"  # line 6: NaN ARR
        + "A-S00000006,0016100000000001,premium,10,2025-01-01,2024-01-01,active,saas,\n"
        + "A-S00000007,0016100000000001,premium,10,,,active,on-prem,\n",  # line 8
    )

    out, err, status = run(companies, subscriptions)

    assert status == 1
    assert err.splitlines() == [
        f"{companies}:line 4: segment 'Enterprise' is not one of Strategic, Growth, Scale, Digital",
        f"{companies}:line 5: csm 'nobody' is not a known username",
        f"{companies}:line 6: customer_since '01/02/2020' is not an ISO date (YYYY-MM-DD)",
        f"{companies}:line 7: '0016100000000001' already appears on line 2",
        f"{companies}:line 8: crm_account_id is 65 characters long, over the limit of 64",
        f"{companies}:line 9: crm_account_id is empty",
        f"{companies}:line 10: csm is 151 characters long, over the limit of 150",
        f"{subscriptions}:line 4: crm_account_id '0016100000000099' is not a known company",
        f"{subscriptions}:line 5: licensed_seats '-3' is out of range",
        f"{subscriptions}:line 6: arr 'NaN' must be a non-negative amount below 10^12",
        f"{subscriptions}:line 7: end_date is before start_date",
        f"{subscriptions}:line 8: deployment 'on-prem' is not one of self-managed, saas",
    ]
    assert "companies: 2 created, 0 updated, 0 unchanged, 7 with errors" in out
    assert "subscriptions: 2 created, 0 updated, 0 unchanged, 5 with errors" in out
    assert Company.objects.count() == 2
    assert Subscription.objects.count() == 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"id,title\n1,x\n", "header not recognised"),
        (b"", "empty file (no header row)"),
        (b"crm_account_id,name\xff\n", "not UTF-8 text"),
    ],
)
def test_unreadable_file_is_refused_whole(tmp_path, content, problem):
    path = tmp_path / "x.csv"
    path.write_bytes(content)

    _, err, status = run(path)

    assert status == 1
    assert err.startswith(f"{path}: {problem}")
    assert not Company.objects.exists()


def test_missing_file_is_reported(tmp_path):
    _, err, status = run(tmp_path / "nope.csv")
    assert status == 1
    assert "nope.csv: cannot read the file" in err


# --------------------------------------------------------------------------------------------------
# Re-imports: blank keeps, "-" clears, every change listed


def test_a_reimport_with_blank_optional_columns_keeps_what_the_portal_holds(tmp_path, csm):
    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    cancelled = SUBSCRIPTIONS.replace(",active,", ",cancelled,")
    run(write(tmp_path, "s2.csv", cancelled))
    blank_companies = (
        "crm_account_id,name,segment,csm,customer_since\n"
        "0016100000000001,Acme Robotics,Strategic,,\n"
    )
    blank_subs = (
        "subscription_name,crm_account_id,plan,licensed_seats,start_date,end_date,status,"
        "deployment,arr\n"
        "A-S00000001,0016100000000001,Ultimate,250,,,,self-managed,\n"
    )

    out, err, status = run(
        write(tmp_path, "a3.csv", blank_companies), write(tmp_path, "s3.csv", blank_subs)
    )

    assert (status, err) == (0, "")
    assert "companies: 0 created, 0 updated, 1 unchanged" in out
    assert "subscriptions: 0 created, 0 updated, 1 unchanged" in out
    acme = Company.objects.get(crm_account_id="0016100000000001")
    assert (acme.csm, acme.customer_since) == (csm, date(2021, 4, 1))
    sub = Subscription.objects.get(name="A-S00000001")
    assert (sub.start_date, sub.end_date, sub.status, sub.arr) == (
        date(2024, 1, 1),
        date(2025, 1, 1),
        "cancelled",
        Decimal("120000.50"),
    )


def test_a_dash_clears_an_optional_column_and_every_change_is_listed(tmp_path, csm):
    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    cleared = (
        "crm_account_id,name,segment,csm,customer_since\n"
        "0016100000000001,Acme Robotics,Growth,-,-\n"
    )

    out, err, status = run(write(tmp_path, "a2.csv", cleared))

    assert (status, err) == (0, "")
    assert "companies: 0 created, 1 updated, 0 unchanged" in out
    path = tmp_path / "a2.csv"
    assert f"{path}:line 2: 0016100000000001: segment Strategic → Growth" in out
    assert f"{path}:line 2: 0016100000000001: csm csm_user → (blank)" in out
    assert f"{path}:line 2: 0016100000000001: customer_since 2021-04-01 → (blank)" in out
    acme = Company.objects.get(crm_account_id="0016100000000001")
    assert (acme.segment, acme.csm, acme.customer_since) == ("Growth", None, None)


def test_a_blank_status_makes_a_new_subscription_active(tmp_path, csm):
    run(write(tmp_path, "a.csv", COMPANIES), write(tmp_path, "s.csv", SUBSCRIPTIONS))
    assert Subscription.objects.get(name="A-S00000002").status == "active"


@pytest.mark.parametrize("written", ["20200102", "2020-W01-1", "2020-1-2", "2020-01-02T00:00"])
def test_dates_must_be_written_yyyy_mm_dd(tmp_path, csm, written):
    companies = (
        "crm_account_id,name,segment,csm,customer_since\n"
        f"0016100000000001,Acme Robotics,Strategic,,{written}\n"
    )

    out, err, status = run(write(tmp_path, "a.csv", companies))

    assert status == 1
    assert f"line 2: customer_since {written!r} is not an ISO date (YYYY-MM-DD)" in err
    assert not Company.objects.exists()


@pytest.mark.parametrize("written", ["202001", "2020-W01"])
def test_ticket_months_must_be_written_yyyy_mm(tmp_path, csm, written):
    run(write(tmp_path, "a.csv", COMPANIES))
    tickets = f"crm_account_id,month,tickets\n0016100000000001,{written},3\n"

    out, err, status = run(write(tmp_path, "t.csv", tickets))

    assert status == 1
    assert f"line 2: month {written!r} is not YYYY-MM" in err
