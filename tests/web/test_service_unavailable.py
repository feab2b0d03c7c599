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

    monkeypatch.setattr("instances.services.batching.pings_store", fail)

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


def test_an_outage_met_by_middleware_outside_the_view_is_a_503_too(monkeypatch, viewer, settings):
    """The session saved after the view (a sentiment edit's message, a login) meets the
    database outside any view: Django made that a 500 before the middleware could see it.
    Found by the fault suite's PostgreSQL restart (tests/faults)."""
    settings.SESSION_SAVE_EVERY_REQUEST = True  # as a view that changed the session would
    client = Client(raise_request_exception=False)
    client.login(username=viewer.username, password=PASSWORD)
    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.save", down)

    page = client.get("/", HTTP_ACCEPT="text/html")
    api = client.get("/api/v1/accounts/0011/health")

    assert (page.status_code, page["Retry-After"]) == (503, "30")
    assert b"Unavailable for a moment" in page.content
    assert (api.status_code, api["Content-Type"]) == (503, "application/json")
    assert api.json()["retry_after"] == 30


def test_the_login_check_meeting_an_outage_is_a_503(monkeypatch, viewer):
    client = Client(raise_request_exception=False)
    client.login(username=viewer.username, password=PASSWORD)
    monkeypatch.setattr("django.contrib.auth.get_user", down)
    monkeypatch.setattr("django.contrib.auth.middleware.auth.get_user", down)

    response = client.get("/alerts/")

    assert (response.status_code, response["Retry-After"]) == (503, "30")


def test_any_other_error_outside_the_view_stays_a_500(monkeypatch, viewer, settings):
    settings.SESSION_SAVE_EVERY_REQUEST = True
    client = Client(raise_request_exception=False)
    client.login(username=viewer.username, password=PASSWORD)

    def broken(*args, **kwargs):
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.save", broken)
    response = client.get("/")
    assert response.status_code == 500
    assert "Retry-After" not in response
