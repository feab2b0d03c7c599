"""An uploaded ping changes an account's scores only when the uploader may change that account.

csm2 uploaded a ping for csm1's instance and moved its license utilization from 1.13 to 0.54:
the upload page is open to every CSM, so the ownership rule has to hold per ping. A refused ping
is kept as a rejected payload (Data quality lists it) with the reason; a ping for an instance
no account holds yet is stored as usual.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from instances.models import Instance, RejectedPayload, UsagePing
from instances.services.files import ping_uploads_store
from tests.factories import SubscriptionFactory
from tests.ingest_support import payload, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def csm1_instance(csm):
    """An instance on an account `csm` owns, with one ping stored by HTTP."""
    sub = SubscriptionFactory(company__csm=csm, company__name="Cyberdyne")
    store(payload(subscription_id=sub.name, recorded_at=timezone.now() - timedelta(days=8)))
    return Instance.objects.get()


def later_ping(**kw) -> SimpleUploadedFile:
    body = payload(recorded_at=timezone.now() - timedelta(days=1), **kw)
    return SimpleUploadedFile("ping.json", orjson.dumps(body), content_type="application/json")


def test_another_csm_cannot_change_an_account_through_an_upload(csm1_instance, other_csm):
    sub = csm1_instance.subscription

    [result] = ping_uploads_store(uploads=[later_ping(subscription_id=sub.name)], by=other_csm)

    assert not result.ok
    assert "Cyberdyne, an account you cannot change" in result.message
    assert UsagePing.objects.count() == 1  # nothing stored, nothing half-done
    kept = RejectedPayload.objects.get()
    assert kept.source == "upload" and "cannot change" in kept.reason and kept.raw


def test_the_owning_csm_and_ops_can_upload_for_the_account(csm1_instance, csm, ops):
    sub = csm1_instance.subscription

    [mine] = ping_uploads_store(uploads=[later_ping(subscription_id=sub.name)], by=csm)
    [theirs] = ping_uploads_store(
        uploads=[later_ping(subscription_id=sub.name, hostname="other.example")], by=ops
    )

    assert mine.ok and theirs.ok
    assert UsagePing.objects.count() == 3


def test_a_ping_for_an_instance_no_account_holds_is_stored_for_anyone(other_csm):
    [result] = ping_uploads_store(uploads=[later_ping()], by=other_csm)

    assert result.ok
    assert Instance.objects.get().company_id is None


def test_the_upload_page_shows_the_refusal_to_another_csm(csm1_instance, other_csm):
    from django.test import Client

    from tests.conftest import PASSWORD

    client = Client()
    client.login(username=other_csm.username, password=PASSWORD)
    sub = csm1_instance.subscription

    response = client.post("/usage_data/new", {"files": [later_ping(subscription_id=sub.name)]})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Rejected" in html and "Cyberdyne, an account you cannot change" in html
    assert UsagePing.objects.count() == 1
