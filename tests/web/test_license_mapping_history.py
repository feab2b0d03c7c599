"""Every change of a license's mapping is an audit row (who, when, from, to, how), and the
rows are shown on Data quality, on the license's map page, on the instance's page and,
read-only, in the admin."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.importers import LicenseMappingRow
from accounts.services import license_mappings_import
from instances.models import LicenseMappingChange, MappingSource, UsagePing
from instances.services.licenses import subscriptions_attach_waiting
from tests.factories import CompanyFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db

MD5 = "c" * 32
OLD = "15.4.0-ee"  # pings name their license by md5 up to 16.1


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def world(csm):
    cyberdyne = SubscriptionFactory(
        name="A-S00000101", company=CompanyFactory(name="Cyberdyne", csm=csm)
    )
    oscorp = SubscriptionFactory(name="A-S00000202", company=CompanyFactory(name="Oscorp"))
    ping = store_ping("u-t800", days_ago=1, license_md5=MD5, hostname="skynet.example", version=OLD)
    assert ping.subscription is None and ping.license_id is not None
    return cyberdyne, oscorp, ping


def remap_by_hand(client, license_id, *names):
    for name in names:
        response = client.post(reverse("license_map", args=[license_id]), {"subscription": name})
        assert response.status_code == 302, text(response.content.decode())[-600:]


def test_cyberdyne_oscorp_cyberdyne_by_hand_keeps_every_step(ops, world):
    cyberdyne, oscorp, ping = world
    client = signed_in(ops)

    remap_by_hand(client, ping.license_id, cyberdyne.name, oscorp.name, cyberdyne.name)

    rows = list(
        LicenseMappingChange.objects.filter(license_id=ping.license_id).order_by("changed_at", "pk")
    )
    assert [(r.from_subscription, r.to_subscription) for r in rows] == [
        (None, cyberdyne),
        (cyberdyne, oscorp),
        (oscorp, cyberdyne),
    ]
    assert {(r.changed_by, r.via) for r in rows} == {(ops, MappingSource.MANUAL)}
    assert [r.from_name for r in rows] == ["", cyberdyne.name, oscorp.name]
    # The pings followed the last mapping.
    assert UsagePing.objects.get(pk=ping.pk).subscription == cyberdyne


def test_the_history_shows_on_data_quality_and_the_map_page(ops, viewer, world):
    cyberdyne, oscorp, ping = world
    client = signed_in(ops)
    remap_by_hand(client, ping.license_id, cyberdyne.name, oscorp.name)

    for user in (ops, viewer):
        page = text(signed_in(user).get("/data-quality/").content.decode())
        assert "License mapping changes" in page
        assert f"{cyberdyne.name} (Cyberdyne) → {oscorp.name} (Oscorp)" in page
        assert "By hand" in page and "ops_user" in page
    map_page = text(client.get(reverse("license_map", args=[ping.license_id])).content.decode())
    assert f"Not mapped → {cyberdyne.name} (Cyberdyne)" in map_page
    assert f"Mapped to {oscorp.name} (Oscorp) since" in map_page


def test_the_history_shows_on_the_instance_page(ops, csm, world):
    cyberdyne, oscorp, ping = world
    remap_by_hand(signed_in(ops), ping.license_id, oscorp.name, cyberdyne.name)
    instance = ping.instance
    url = reverse("instance_edit", args=[cyberdyne.company_id, instance.pk])
    page = text(signed_in(csm).get(url).content.decode())
    assert "Mapping history" in page
    assert f"{oscorp.name} (Oscorp) → {cyberdyne.name} (Cyberdyne)" in page
    assert f"Not mapped → {oscorp.name} (Oscorp)" in page


def test_mapping_to_the_same_subscription_again_is_refused_and_records_nothing(ops, world):
    cyberdyne, _, ping = world
    client = signed_in(ops)
    remap_by_hand(client, ping.license_id, cyberdyne.name)
    again = client.post(
        reverse("license_map", args=[ping.license_id]), {"subscription": cyberdyne.name}
    )
    assert again.status_code == 400
    assert "already mapped to A-S00000101" in again.content.decode()
    assert LicenseMappingChange.objects.count() == 1


def test_a_ping_an_import_and_a_new_subscription_each_leave_a_row(ops):
    named = SubscriptionFactory(name="A-S00000303")
    store_ping("u-named", days_ago=2, license_md5="d" * 32, subscription=named, version=OLD)
    via_ping = LicenseMappingChange.objects.get(license__md5="d" * 32)
    assert (via_ping.from_subscription, via_ping.to_subscription) == (None, named)
    assert (via_ping.via, via_ping.changed_by) == (MappingSource.PING, None)

    imported = SubscriptionFactory(name="A-S00000404")
    license_mappings_import(rows=[LicenseMappingRow(2, "d" * 32, imported.name)], by=ops)
    last = LicenseMappingChange.objects.filter(license__md5="d" * 32).latest("changed_at", "pk")
    assert (last.from_subscription, last.to_subscription) == (named, imported)
    assert (last.via, last.changed_by) == (MappingSource.IMPORT, ops)

    ping = store_ping("u-waits", days_ago=1, license_md5="e" * 32, refresh=False, version=OLD)
    UsagePing.objects.filter(pk=ping.pk).update(license_subscription_id="A-S00000505")
    later = SubscriptionFactory(name="A-S00000505")
    subscriptions_attach_waiting(subscriptions=[later])
    row = LicenseMappingChange.objects.get(license__md5="e" * 32)
    assert (row.to_subscription, row.via) == (later, MappingSource.PING)


def test_the_admin_shows_the_history_read_only(ops, world):
    cyberdyne, oscorp, ping = world
    client = signed_in(ops)
    remap_by_hand(client, ping.license_id, cyberdyne.name, oscorp.name)
    listing = client.get("/admin/instances/licensemappingchange/")
    assert listing.status_code == 200
    assert "A-S00000202" in listing.content.decode()
    row = LicenseMappingChange.objects.latest("changed_at", "pk")
    assert client.get("/admin/instances/licensemappingchange/add/").status_code == 403
    change_url = f"/admin/instances/licensemappingchange/{row.pk}/change/"
    assert client.post(change_url, {"via": "import"}).status_code == 403
    delete_url = f"/admin/instances/licensemappingchange/{row.pk}/delete/"
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert LicenseMappingChange.objects.count() == 2
    license_page = client.get(f"/admin/instances/license/{ping.license_id}/change/")
    assert "A-S00000101" in license_page.content.decode()  # the inline history
