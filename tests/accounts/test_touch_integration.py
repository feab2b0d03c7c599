"""Moving an account's data version under concurrent writers, on real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from accounts.models import Company, Subscription
from tests.factories import CompanyFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "touch",
    [
        lambda pk: Company.objects.filter(pk=pk).touch(),
        lambda pk: Company.objects.touch_ids([pk]),  # the one-statement form every ping takes
    ],
    ids=["touch", "touch_ids"],
)
def test_writers_that_point_rows_at_an_account_then_touch_it_do_not_deadlock(touch):
    """Each writer first inserts a row referencing the account, then touches it. Django's
    foreign keys are checked at commit; checked at once (as here), PostgreSQL holds a KEY SHARE
    lock on the account from the insert on, and a FOR UPDATE touch would make the two writers
    wait on each other. The touch's FOR NO KEY UPDATE must not."""
    company = CompanyFactory()
    ready = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                Subscription.objects.create(
                    name=f"A-S-RACE-{n}",
                    company=company,
                    plan="premium",
                    licensed_seats=10,
                    deployment="self-managed",
                )
                ready.wait()
                touch(company.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    before = Company.objects.get(pk=company.pk).updated_at
    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert Subscription.objects.filter(company=company).count() == 2
    assert Company.objects.get(pk=company.pk).updated_at > before


def test_touching_by_id_moves_exactly_those_accounts_and_counts_them():
    touched, other, gone = CompanyFactory(), CompanyFactory(), CompanyFactory()
    versions = dict(Company.objects.values_list("pk", "updated_at"))
    gone_id = gone.pk
    gone.delete()

    assert Company.objects.touch_ids([touched.pk, touched.pk, gone_id]) == 1
    after = dict(Company.objects.values_list("pk", "updated_at"))
    assert after[touched.pk] > versions[touched.pk]
    assert after[other.pk] == versions[other.pk]
    assert Company.objects.touch_ids([]) == 0


def test_writers_touching_several_accounts_named_in_opposite_orders_do_not_deadlock():
    """The subquery locks in id order whatever order the caller names the accounts in: two
    writers that locked in their own order would each hold one account and wait for the other."""
    a, b, c = CompanyFactory(), CompanyFactory(), CompanyFactory()
    start = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def writer(ids) -> None:
        try:
            start.wait()
            for _ in range(30):
                with transaction.atomic():
                    assert Company.objects.touch_ids(ids) == 3
                    time.sleep(0.002)  # hold the locks a while: the other writer is waiting
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    orders = ([a.pk, b.pk, c.pk], [c.pk, b.pk, a.pk])
    threads = [threading.Thread(target=writer, args=(ids,)) for ids in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
