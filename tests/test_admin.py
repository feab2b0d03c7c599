"""Ops' bulk actions in the admin go through the same audited paths as the pages."""

import pytest
from django.utils import timezone

from instances.models import Instance, LabelChange, License
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


def act(client, model, action, ids, **extra):
    return client.post(
        f"/admin/{model}/",
        {"action": action, "_selected_action": [str(i) for i in ids], **extra},
        follow=True,
    )


def test_set_instance_type_action_records_pending_changes(client, ops):
    instances = [InstanceFactory(instance_type="unknown") for _ in range(2)]
    client.force_login(ops)
    response = act(client, "instances/instance", "set_production", [i.id for i in instances])
    assert "2 pending label change(s) recorded" in response.content.decode()
    assert LabelChange.objects.pending().filter(author="ops_user").count() == 2
    assert set(Instance.objects.values_list("instance_type", flat=True)) == {"unknown"}


def test_apply_pending_now_action(client, ops):
    inst = InstanceFactory(instance_type="unknown")
    client.force_login(ops)
    act(client, "instances/instance", "set_obsolete", [inst.id])
    response = act(client, "instances/instance", "apply_pending_now", [inst.id])
    assert "Applied 1 pending label change(s) now." in response.content.decode()
    assert Instance.objects.get(pk=inst.pk).instance_type == "obsolete"
    assert LabelChange.objects.get().applied_via == "apply_now"


def test_labels_are_not_editable_in_the_instance_form(client, ops):
    inst = InstanceFactory(instance_type="unknown")
    client.force_login(ops)
    page = client.get(f"/admin/instances/instance/{inst.id}/change/").content.decode()
    assert 'name="instance_type"' not in page and 'name="health_inclusion"' not in page


def test_map_license_action_attaches_waiting_pings(client, ops):
    sub = SubscriptionFactory()
    ping = store_ping(
        "u-unmapped", days_ago=1, license_md5="f" * 32, version="15.4.0-ee", refresh=False
    )
    assert ping.subscription is None
    client.force_login(ops)
    response = act(
        client, "instances/license", "map_to_subscription", [ping.license_id], subscription=sub.name
    )
    assert "1 waiting ping(s) attached" in response.content.decode()
    ping.refresh_from_db()
    assert ping.subscription == sub
    lic = License.objects.get(pk=ping.license_id)
    assert lic.mapped_via == "manual" and lic.mapped_by == ops
    bad = act(
        client,
        "instances/license",
        "map_to_subscription",
        [ping.license_id],
        subscription="A-S-nope",
    )
    assert "No subscription named" in bad.content.decode()


def test_csm_without_admin_rights_cannot_run_actions(client, csm):
    inst = InstanceFactory(instance_type="unknown")
    client.force_login(csm)
    response = act(client, "instances/instance", "set_production", [inst.id])
    assert LabelChange.objects.count() == 0
    assert response.status_code in (200, 302, 403)


def test_recompute_action_on_companies(client, ops):
    company = CompanyFactory()
    client.force_login(ops)
    response = act(client, "accounts/company", "recompute_scores", [company.id])
    assert "Recomputed 1 companies" in response.content.decode()
    assert company.score_snapshots.filter(is_current=True).exists()


def test_editing_seats_in_the_admin_rescores_the_account(
    client, ops, django_capture_on_commit_callbacks
):
    sub = SubscriptionFactory(licensed_seats=100)
    inst = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(inst, recorded_at=timezone.now(), metrics={"billable_users": 50}, refresh=False)
    client.force_login(ops)
    page = client.get(f"/admin/accounts/subscription/{sub.pk}/change/").content.decode()
    assert 'name="company"' not in page  # moving accounts goes through import_crm
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/accounts/subscription/{sub.pk}/change/",
            {
                "name": sub.name,
                "plan": "ultimate",
                "licensed_seats": "200",
                "status": "active",
                "deployment": "self-managed",
            },
        )
    assert response.status_code == 302
    snap = sub.company.score_snapshots.get(is_current=True)
    assert snap.license_utilization == pytest.approx(0.25)
