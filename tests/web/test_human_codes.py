"""Codes stay in the database: label values, how a change was applied and GitLab editions are
shown to people in words, from one home each (``instances.models``)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from instances.labels import label_change_apply, label_change_request
from instances.models import AppliedVia, edition_label
from scoring.models import HealthAlert
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

EDITIONS = {
    "EEU": "Ultimate (EEU)",
    "EEP": "Premium (EEP)",
    "EES": "Starter (EES)",
    "EE": "Enterprise Edition (EE)",
    "EE Free": "Free (EE Free)",
    "CE": "Community Edition (CE)",
}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cells(html: str) -> list[str]:
    """The text of every table cell, tags stripped."""
    found = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", html, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in found]


@pytest.fixture
def account(csm):
    company = CompanyFactory(csm=csm, segment="Strategic")
    sub = SubscriptionFactory(company=company)
    instances = [
        InstanceFactory(
            subscription=sub,
            edition=code,
            version="16.5.1-ee",
            version_sort=16_005_001,
            instance_type="unknown",
        )
        for code in EDITIONS
    ]
    return company, instances


def test_every_edition_code_has_a_name():
    for code, label in EDITIONS.items():
        assert edition_label(code) == label
    assert edition_label("") == ""
    assert edition_label("XYZ") == "XYZ"  # a code GitLab adds later is shown as sent


def test_versions_report_names_the_edition_with_a_tooltip(ops, account):
    html = signed_in(ops).get("/reports/versions/?csm=").content.decode()
    shown = cells(html)
    for code, label in EDITIONS.items():
        assert label in shown, code
    assert re.search(r'<span title="[^"]*Ultimate license[^"]*">Ultimate \(EEU\)</span>', html)
    assert "EEU" not in shown


def test_versions_export_names_the_edition(ops, account):
    text = signed_in(ops).get("/reports/versions/?csm=&_export=csv").getvalue().decode()
    assert "Ultimate (EEU)" in text and "Community Edition (CE)" in text


def test_c360_instances_rows_name_the_edition(csm, account):
    company, _ = account
    html = signed_in(csm).get(reverse("account_instances", args=[company.pk])).content.decode()
    for label in EDITIONS.values():
        assert label in html
    assert re.search(r'title="[^"]*Ultimate license[^"]*"', html)


def test_admin_label_changes_list_shows_values_in_words(ops, account):
    _, (instance, *_) = account
    label_change_request(instance=instance, field="instance_type", value="production", by=ops)
    change = label_change_request(
        instance=instance, field="health_inclusion", value="opt_out", by=ops, schedule=False
    )
    label_change_apply(change_id=change.pk, via=AppliedVia.APPLY_NOW, by=ops, force=True)
    html = signed_in(ops).get("/admin/instances/labelchange/").content.decode()
    shown = cells(html)
    assert "Instance type: Unknown → Production" in shown
    # The empty inclusion value is "Automatic".
    assert "Included in health measure: Automatic → Opt-Out" in shown
    assert any(f"({AppliedVia.APPLY_NOW.label} by ops_user)" in cell for cell in shown)
    words = " ".join(shown).split()
    for code in ("unknown", "production", "opt_out", "apply_now", "instance_type"):
        assert code not in words, code


def test_admin_instance_pages_name_the_edition(ops, account):
    _, instances = account
    client = signed_in(ops)
    listing = cells(client.get("/admin/instances/instance/").content.decode())
    assert any("Ultimate (EEU)" in cell for cell in listing) and "EEU" not in listing
    page = client.get(f"/admin/instances/instance/{instances[0].pk}/change/").content.decode()
    assert "Ultimate (EEU)" in page


@pytest.mark.parametrize("via", AppliedVia.values)
def test_c360_label_history_says_how_a_change_was_applied(ops, csm, account, via):
    company, (instance, *_) = account
    change = label_change_request(
        instance=instance, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    label_change_apply(change_id=change.pk, via=via, by=ops, force=True)
    page = signed_in(csm).get(reverse("instance_edit", args=[company.pk, instance.pk]))
    html = page.content.decode()
    assert f"({AppliedVia(via).label} by ops_user)" in html
    assert via not in cells(html)
    assert f"({via}" not in html and f"({via.replace('_', '')}" not in html


def test_admin_health_alerts_name_the_measure(ops, account):
    company, _ = account
    HealthAlert.objects.create(
        company=company, measure="license_utilization", from_color="Green", to_color="Red"
    )
    shown = cells(signed_in(ops).get("/admin/scoring/healthalert/").content.decode())
    assert "License Utilization" in shown and "license_utilization" not in shown
