"""Roles: anonymous users reach only the login page; Viewers change nothing; CSMs their own."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from accounts.models import Company
from instances.models import LabelChange
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/accounts/1/",
    "/burndown/",
    "/reports/versions/",
    "/data-quality/",
    "/metrics/",
    "/usage_data/new",
    "/exports/instance-types/",
    "/exports/health.csv",
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_are_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_login_page_is_the_one_page_anonymous_users_see(client, viewer):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "viewer_user", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get("/").status_code == 200


def test_anonymous_admin_is_redirected_to_admin_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_ping_endpoint_is_reachable_but_needs_a_token(client):
    response = client.post("/usage_data", data=b"{}", content_type="application/json")
    assert response.status_code == 401
    assert "ingest token" in response.json()["error"]


WRITE_PERMS = {
    "accounts.set_sentiment",
    "accounts.edit_any_account",
    "instances.label_instance",
    "instances.upload_pings",
    "instances.map_license",
    "instances.apply_label_change_now",
    "instances.add_ingesttoken",
    "accounts.change_company",
}


def test_viewer_can_view_everything_and_change_nothing(viewer):
    for model in apps.get_app_config("instances").get_models():
        assert viewer.has_perm(f"instances.view_{model._meta.model_name}")
    granted = {p for p in viewer.get_all_permissions() if not p.split(".")[1].startswith("view_")}
    assert granted == set()
    assert not viewer.is_staff


def test_csm_can_label_upload_and_set_sentiment_but_not_map_or_apply_now(csm):
    assert {p for p in WRITE_PERMS if csm.has_perm(p)} == {
        "accounts.set_sentiment",
        "instances.label_instance",
        "instances.upload_pings",
    }


def test_ops_hold_every_write_permission_but_never_edit_the_audit_trail(ops):
    assert all(ops.has_perm(p) for p in WRITE_PERMS)
    assert ops.has_perm("instances.view_labelchange")
    assert not ops.has_perm("instances.change_labelchange")
    assert not ops.has_perm("instances.delete_labelchange")


def test_editable_accounts_follow_ownership(csm, other_csm, ops, viewer):
    mine = Company.objects.create(name="Mine", crm_account_id="1", segment="Growth", csm=csm)
    theirs = Company.objects.create(
        name="Theirs", crm_account_id="2", segment="Growth", csm=other_csm
    )
    assert list(Company.objects.editable_by(csm)) == [mine]
    assert set(Company.objects.editable_by(ops)) == {mine, theirs}
    assert list(Company.objects.editable_by(viewer)) == []


def test_viewer_is_refused_the_upload_page_and_a_forged_upload(client, viewer):
    client.force_login(viewer)
    assert client.get("/usage_data/new").status_code == 403
    assert client.post("/usage_data/new", {}).status_code == 403


def test_ops_can_open_every_admin_list_and_the_audit_trail_is_read_only(client, ops, demo):
    client.force_login(ops)
    for model in admin.site._registry:
        if model._meta.app_label not in {"accounts", "instances", "scoring"}:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, url
        search = client.get(url, {"q": "example"})
        assert search.status_code == 200, url
    change = LabelChange.objects.first()
    detail = client.get(reverse("admin:instances_labelchange_change", args=[change.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert client.get(reverse("admin:instances_labelchange_add")).status_code == 403


def test_viewer_cannot_use_the_admin(client, viewer):
    client.force_login(viewer)
    response = client.get("/admin/instances/instance/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
