"""Data quality stays up when an unmapped instance goes stale.

It answered 500 to everyone (``NoReverseMatch account_summary (None,)`` from the stale table's
account link) once any instance with no account stopped reporting — and it is the page that
holds license mapping.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import InstanceFactory
from tests.web.test_reports_views import client_for

pytestmark = pytest.mark.django_db


def test_a_stale_instance_without_an_account_is_listed_as_unmapped(client, viewer):
    InstanceFactory(
        subscription=None,
        company=None,
        hostname="lost.example",
        last_ping_at=timezone.now() - timedelta(days=200),
    )

    response = client_for(client, viewer).get("/data-quality/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "lost.example" in html and "No account (unmapped)" in html
