"""Deletes in the admin that would silently unmap data are refused; the rest are audited.

Instances, licenses and pings point at their subscription with ``SET_NULL``: deleting a
subscription they are mapped to used to unmap them all without a word.
"""

from __future__ import annotations

import pytest

from accounts.models import AuditAction, AuditEvent, Subscription
from accounts.services import SubscriptionInUse, subscription_delete
from instances.models import Instance, License, UsagePing
from tests.factories import InstanceFactory, LicenseFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


def delete_url(sub) -> str:
    return f"/admin/accounts/subscription/{sub.pk}/delete/"


@pytest.fixture
def in_use():
    """A subscription with an instance, its license and two pings mapped to it."""
    sub = SubscriptionFactory(name="A-S00000042")
    inst = InstanceFactory(subscription=sub, hostname="gitlab.initech.example")
    for days in (8, 1):
        store_ping(inst, days_ago=days, license_md5="c" * 32, version="15.4.0-ee", refresh=False)
    assert License.objects.filter(subscription=sub).count() == 1
    assert UsagePing.objects.filter(subscription=sub).count() == 2
    return sub


def test_the_delete_page_names_what_depends_on_the_subscription(client, ops, in_use):
    client.force_login(ops)
    page = client.get(delete_url(in_use)).content.decode()

    assert "cannot be deleted" in page
    assert "1 instance mapped to it: gitlab.initech.example" in page
    assert "1 license mapped to it: cccccccccccc" in page
    assert "2 usage pings mapped to it" in page
    assert "Yes, I’m sure" not in page  # no confirmation button


def test_deleting_a_subscription_in_use_is_refused_and_changes_nothing(client, ops, in_use):
    events = list(AuditEvent.objects.values())
    client.force_login(ops)
    response = client.post(delete_url(in_use), {"post": "yes"})

    assert response.status_code == 200 and "cannot be deleted" in response.content.decode()
    assert Subscription.objects.filter(pk=in_use.pk).exists()
    assert Instance.objects.get().subscription_id == in_use.pk
    assert set(UsagePing.objects.values_list("subscription_id", flat=True)) == {in_use.pk}
    assert License.objects.get().subscription_id == in_use.pk
    assert list(AuditEvent.objects.values()) == events  # a refusal is not recorded


def test_a_license_mapped_alone_still_protects_its_subscription(client, ops):
    sub = SubscriptionFactory()
    LicenseFactory(md5="b" * 32, subscription=sub)
    client.force_login(ops)
    client.post(delete_url(sub), {"post": "yes"})
    assert Subscription.objects.filter(pk=sub.pk).exists()


def test_subscriptions_have_no_bulk_delete(client, ops, in_use):
    client.force_login(ops)
    listing = client.get("/admin/accounts/subscription/").content.decode()
    assert 'value="delete_selected"' not in listing
    client.post(
        "/admin/accounts/subscription/",
        {"action": "delete_selected", "_selected_action": [in_use.pk], "post": "yes"},
    )
    assert Subscription.objects.filter(pk=in_use.pk).exists()


def test_an_unreferenced_subscription_is_deleted_and_audited(client, ops):
    sub = SubscriptionFactory(name="A-S00000099", licensed_seats=25)
    client.force_login(ops)
    assert "Yes, I’m sure" in client.get(delete_url(sub)).content.decode()

    response = client.post(delete_url(sub), {"post": "yes"})

    assert response.status_code == 302
    assert not Subscription.objects.filter(pk=sub.pk).exists()
    (event,) = AuditEvent.objects.all()
    assert (event.action, event.actor) == (AuditAction.SUBSCRIPTION_DELETED, ops)
    assert (event.target_type, event.target_id) == ("accounts.subscription", str(sub.pk))
    assert event.detail["name"] == "A-S00000099" and event.detail["licensed_seats"] == 25
    assert event.detail["company"] == sub.company.crm_account_id


def test_the_service_refuses_too(ops, in_use):
    with pytest.raises(SubscriptionInUse) as refusal:
        subscription_delete(subscription=in_use, by=ops)
    assert refusal.value.dependents[0].startswith("1 instance mapped to it")
    assert Subscription.objects.filter(pk=in_use.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.SUBSCRIPTION_DELETED).exists()


def test_deleting_the_account_of_a_subscription_in_use_is_refused_too(client, ops, in_use):
    """The company's delete takes its subscriptions with it: the same refusal, not a way round."""
    client.force_login(ops)
    url = f"/admin/accounts/company/{in_use.company_id}/delete/"
    page = client.get(url).content.decode()
    assert "cannot be deleted" in page
    assert "subscription A-S00000042: 1 instance mapped to it: gitlab.initech.example" in page

    client.post(url, {"post": "yes"})
    assert Subscription.objects.filter(pk=in_use.pk).exists()
    assert Instance.objects.get().subscription_id == in_use.pk
    listing = client.get("/admin/accounts/company/").content.decode()
    assert 'value="delete_selected"' not in listing
