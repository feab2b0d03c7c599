"""The upload page's Result column says what became of each file, not just that it was read."""

from __future__ import annotations

import re
from datetime import timedelta

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from instances.models import UsagePing
from tests.conftest import PASSWORD
from tests.factories import SubscriptionFactory
from tests.ingest_support import WHEN, payload

pytestmark = pytest.mark.django_db

URL = "/usage_data/new"
ROW = re.compile(
    r'<tr data-testid="upload-result"[^>]*>\s*<td>(?P<file>[^<]*)</td>\s*<td>(?P<result>.*?)</td>',
    re.S,
)


def result_column(response) -> dict[str, str]:
    """File name → the Result cell's text, as a person reads it."""
    return {
        m["file"]: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m["result"])).strip()
        for m in ROW.finditer(response.content.decode())
    }


def test_each_outcome_reads_as_what_happened(csm):
    sub = SubscriptionFactory(company__csm=csm)  # an account the uploader may change
    mapped = orjson.dumps(payload(md5=None, sha256=None, subscription_id=sub.name))
    unmapped = orjson.dumps(
        payload(uuid="other-uuid", hostname="other.example", recorded_at=WHEN + timedelta(days=7))
    )
    files = [
        SimpleUploadedFile("first.json", mapped, content_type="application/json"),
        SimpleUploadedFile("again.json", mapped, content_type="application/json"),
        SimpleUploadedFile("unmapped.json", unmapped, content_type="application/json"),
        SimpleUploadedFile("broken.json", b'{"uuid": ', content_type="application/json"),
    ]
    client = Client()
    assert client.login(username=csm.username, password=PASSWORD)

    response = client.post(URL, {"files": files})

    assert response.status_code == 200
    assert result_column(response) == {
        "first.json": "Stored",
        "again.json": "Duplicate — already stored",
        "unmapped.json": "Kept, unmapped",
        "broken.json": "Rejected",
    }
    assert UsagePing.objects.count() == 2
