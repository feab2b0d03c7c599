"""An outage of the database or the broker answers 503 with Retry-After, never a bare 500.

A PostgreSQL restart gave ingest clients HTML 500s (94 of 600 posts) instead of the JSON answer
a sender can retry on. The outage is raised here from the very call that meets the database (or
broker) in each view: what matters is what the client is told.
"""

from __future__ import annotations

import orjson
import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings
from kombu.exceptions import OperationalError as BrokerDown

from tests.conftest import PASSWORD
from tests.ingest_support import payload

pytestmark = pytest.mark.django_db

DOWN = OperationalError("server closed the connection unexpectedly")


def down(*args, **kwargs):
    raise DOWN


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
@pytest.mark.parametrize(
    "error", [DOWN, InterfaceError("connection already closed"), BrokerDown("refused")]
)
def test_a_ping_meeting_an_outage_gets_a_json_503_to_retry_on(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("usage_portal.web.ingest.views.pings_store", fail)

    response = Client().post(
        "/usage_data", orjson.dumps(payload()), content_type="application/json"
    )

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "30"
    assert "unavailable" in response.json()["error"]


def test_the_api_answers_json_503_too(monkeypatch, ops):
    monkeypatch.setattr("usage_portal.web.api.views.current_snapshot", down)
    client = Client()
    client.login(username=ops.username, password=PASSWORD)

    response = client.get("/api/v1/accounts/0011/health")

    assert (response.status_code, response["Retry-After"]) == (503, "30")
    assert response.json()["retry_after"] == 30


def test_a_person_gets_a_page_that_says_why(monkeypatch, viewer):
    monkeypatch.setattr("usage_portal.web.dashboard.views.DashboardView.get_queryset", down)
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)

    response = client.get("/")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    html = response.content.decode()
    assert "Unavailable for a moment" in html and "retry in a minute" in html


def test_other_errors_are_left_to_the_500_page(monkeypatch, viewer):
    def boom(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("usage_portal.web.dashboard.views.DashboardView.get_queryset", boom)
    client = Client(raise_request_exception=False)
    client.login(username=viewer.username, password=PASSWORD)

    assert client.get("/").status_code == 500
