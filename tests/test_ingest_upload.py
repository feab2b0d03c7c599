"""The manual upload page (/usage_data/new): who may use it, one result line per file."""

from __future__ import annotations

import gzip
from datetime import timedelta

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from instances.models import RejectedPayload, UsagePing
from instances.services import decompress_raw
from tests.conftest import PASSWORD
from tests.test_ingest_support import (  # noqa: F401  (fixtures are used by name)
    WHEN,
    on_each_database,
    payload,
    row_counts,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

URL = "/usage_data/new"


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/json")


def result_rows(response) -> list[tuple[str, bool, str]]:
    return [(r.filename, r.ok, r.message) for r in response.context["results"]]


def test_csm_uploads_several_files_and_gets_a_line_per_file(csm):
    good = orjson.dumps(payload())
    zipped = gzip.compress(orjson.dumps(payload(recorded_at=WHEN + timedelta(weeks=1))))
    files = [
        upload("instance-a.json", good),
        upload("instance-a-again.json", good),
        upload("instance-a-week2.json.gz", zipped),
        upload("broken.json", b'{"uuid": '),
        upload("not-a-ping.json", b"[1, 2, 3]"),
        upload("empty.json", b""),
    ]

    response = signed_in(csm).post(URL, {"files": files})

    assert response.status_code == 200
    rows = result_rows(response)
    assert [(name, ok) for name, ok, _ in rows] == [
        ("instance-a.json", True),
        ("instance-a-again.json", True),
        ("instance-a-week2.json.gz", True),
        ("broken.json", False),
        ("not-a-ping.json", False),
        ("empty.json", False),
    ]
    assert rows[0][2].startswith("stored: gitlab.acme.example, version 16.5.1-ee, 2024-03-04")
    assert "license maps to no subscription yet" in rows[0][2]
    assert rows[1][2] == "already stored (duplicate)"
    assert rows[3][2].startswith("rejected: malformed JSON")
    assert rows[4][2] == "rejected: payload is a JSON array, not an object"
    assert UsagePing.objects.count() == 2
    assert set(UsagePing.objects.values_list("source", flat=True)) == {"upload"}
    assert RejectedPayload.objects.filter(source="upload").count() == 3
    content = response.content.decode()
    assert content.count('data-testid="upload-result"') == 6
    assert "3 of 6 file(s) stored or already present." in content


def test_gzipped_upload_is_kept_as_its_json(csm):
    body = orjson.dumps(payload())
    signed_in(csm).post(URL, {"files": [upload("p.json.gz", gzip.compress(body))]})
    assert decompress_raw(UsagePing.objects.get().raw_payload) == body


@override_settings(PING_MAX_BODY_BYTES=1000)
def test_file_over_the_limit_is_rejected_on_its_own_line(csm):
    response = signed_in(csm).post(
        URL, {"files": [upload("big.json", orjson.dumps(payload(full_size=True)))]}
    )
    ((name, ok, message),) = result_rows(response)
    assert (name, ok) == ("big.json", False)
    assert "exceeds the limit of 1000 bytes" in message
    assert not UsagePing.objects.exists()


def test_ops_may_upload(ops):
    response = signed_in(ops).post(URL, {"files": [upload("a.json", orjson.dumps(payload()))]})
    assert response.status_code == 200
    assert UsagePing.objects.count() == 1


def test_viewer_may_not_upload(viewer):
    before = row_counts()
    client = signed_in(viewer)
    assert client.get(URL).status_code == 403
    response = client.post(URL, {"files": [upload("a.json", orjson.dumps(payload()))]})
    assert response.status_code == 403
    assert row_counts() == before


def test_anonymous_visitor_is_sent_to_the_login_page(db):
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_upload_form_needs_a_csrf_token(csm):
    client = Client(enforce_csrf_checks=True)
    client.login(username=csm.username, password=PASSWORD)
    response = client.post(URL, {"files": [upload("a.json", orjson.dumps(payload()))]})
    assert response.status_code == 403
    assert not UsagePing.objects.exists()


def test_submitting_no_file_shows_a_form_error(csm):
    response = signed_in(csm).post(URL, {})
    assert response.status_code == 200
    assert response.context["form"].errors["files"]
    assert response.context["results"] is None
