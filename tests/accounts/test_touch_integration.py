"""Moving an account's data version under concurrent writers, on real PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from accounts.models import Company, Subscription
from tests.factories import CompanyFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_writers_that_point_rows_at_an_account_then_touch_it_do_not_deadlock():
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
                Company.objects.filter(pk=company.pk).touch()
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
