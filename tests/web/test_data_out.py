"""Data out: the health API, the health CSV and the instance-type export."""

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from instances.services.tokens import ingest_token_create
from scoring.exports import instance_types_export_write
from scoring.services import companies_refresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.health_api import HEALTH_API_FIELDS, HEALTH_API_MEASURES

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored():
    sub = SubscriptionFactory(licensed_seats=200)
    inst = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(inst, days_ago=1, metrics={"billable_users": 80}, refresh=False)
    companies_refresh(company_ids=[sub.company_id])
    return sub.company


def test_health_api_shape_with_session(client, viewer, scored):
    client.force_login(viewer)
    body = client.get(f"/api/v1/accounts/{scored.crm_account_id}/health").json()
    assert list(body) == HEALTH_API_FIELDS
    assert list(body["measures"]) == HEALTH_API_MEASURES
    lu = body["measures"]["license_utilization"]
    assert lu == {"color": "Red", "value": pytest.approx(0.4), "reason": None}
    assert body["scheme"] == "gitlab-handbook-2025@" + body["scheme"].split("@")[1]
    assert dt.date.fromisoformat(body["as_of"]) == timezone.now().date() - dt.timedelta(days=1)
    assert body["crm_account_id"] == scored.crm_account_id


def test_health_api_needs_a_session_or_a_token(client, scored):
    url = f"/api/v1/accounts/{scored.crm_account_id}/health"
    assert client.get(url).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    _, secret = ingest_token_create(name="salesforce sync", scopes=["read"])
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200 and response.json()["crm_account_id"]


def test_health_api_unknown_account_is_404(client, viewer):
    client.force_login(viewer)
    response = client.get("/api/v1/accounts/nope/health")
    assert response.status_code == 404 and "no account" in response.json()["error"]


def test_health_csv_has_the_salesforce_fields(client, viewer, scored):
    client.force_login(viewer)
    response = client.get("/exports/health.csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][2] == "[GS] Health: License Utilization"
    assert rows[1][0] == scored.crm_account_id and rows[1][2] == "Red"


def test_instance_type_export_file_and_download(client, ops, viewer, scored, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path
    path = instance_types_export_write(on=dt.date(2026, 11, 22))
    assert path.name == "instance_types_2026-11-22.csv"
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["crm_account_id"] == scored.crm_account_id
    assert rows[0]["instance_type"] == "Production"
    assert rows[0]["included_in_health_measures"] == "Automatic"
    client.force_login(viewer)
    assert client.get("/exports/instance-types/?download=1").status_code == 403
    client.force_login(ops)
    response = client.get("/exports/instance-types/?download=1")
    assert response.status_code == 200
    assert b"instance_type" in b"".join(response.streaming_content)


def test_csv_exports_neutralise_spreadsheet_formulas(settings, tmp_path, scored):
    settings.EXPORT_DIR = tmp_path
    scored.instances.update(hostname='=HYPERLINK("http://evil","x")')
    path = instance_types_export_write()
    row = next(csv.DictReader(path.open()))
    assert row["hostname"] == '\'=HYPERLINK("http://evil","x")'
