"""CSM Burn-Down shows a pending label change beside the Unknown it will replace."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from instances.labels import label_change_request
from tests.conftest import PASSWORD
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def unknowns(csm):
    company = CompanyFactory(csm=csm, segment="Strategic")
    sub = SubscriptionFactory(company=company)
    waiting = InstanceFactory(subscription=sub, instance_type="unknown", hostname="waiting.example")
    plain = InstanceFactory(subscription=sub, instance_type="unknown", hostname="plain.example")
    change = label_change_request(
        instance=waiting, field="instance_type", value="production", by=csm
    )
    return waiting, plain, change


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_pending_label_shows_its_new_type_and_when_it_applies(csm, unknowns):
    waiting, plain, change = unknowns
    response = signed_in(csm).get("/burndown/")
    assert response.status_code == 200
    rows = {row.record.pk: row for row in response.context["table"].rows}
    assert set(rows) == {waiting.pk, plain.pk}  # still Unknown until it applies
    when = f"{change.effective_at:%-d %b %H:%M} UTC"
    shown = _text(rows[waiting.pk].get_cell("instance"))
    assert shown.strip().startswith("waiting.example")
    assert shown.strip().endswith(f"Unknown → Production on {when}")
    assert "→" not in _text(rows[plain.pk].get_cell("instance"))
    assert f"Unknown → Production on {when}" in _text(response.content.decode())


def test_the_export_says_it_too(csm, unknowns):
    waiting, plain, change = unknowns
    response = signed_in(csm).get("/burndown/?_export=csv")
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    by_host = {r["Instance"]: r["Type"] for r in rows}
    assert by_host == {
        "waiting.example": f"Unknown → Production on {change.effective_at:%-d %b %H:%M} UTC",
        "plain.example": "Unknown",
    }
