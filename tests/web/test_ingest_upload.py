"""The manual upload page (/usage_data/new): who may use it, one result line per file."""

from __future__ import annotations

import gzip
from datetime import timedelta

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.utils.datastructures import MultiValueDict

from instances.models import RejectedPayload, UsagePing
from instances.services.files import ping_uploads_store
from instances.services.storable import decompress_raw
from scoring import tasks
from tests.conftest import PASSWORD
from tests.factories import SubscriptionFactory
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    WHEN,
    on_each_database,
    payload,
    row_counts,
)
from usage_portal.web.ingest.forms import PingUploadForm

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


def test_the_form_validates_and_stores_nothing(db):
    before = row_counts()
    form = PingUploadForm(
        data={}, files=MultiValueDict({"files": [upload("a.json", orjson.dumps(payload()))]})
    )
    assert form.is_valid(), form.errors
    assert row_counts() == before  # storing is ping_uploads_store's, called by the view


def test_stored_uploads_queue_one_refresh_for_the_companies_they_touched(
    monkeypatch, django_capture_on_commit_callbacks
):
    calls = []
    monkeypatch.setattr(
        tasks.refresh_companies, "apply_async", lambda args, *_, **__: calls.append(tuple(args))
    )
    subs = [SubscriptionFactory(), SubscriptionFactory()]
    uploads = [
        upload(
            f"{n}.json",
            orjson.dumps(
                payload(
                    uuid=f"00000000-0000-0000-0000-{n:012d}",
                    md5=f"{n:032x}",
                    sha256=None,
                    subscription_id=sub.name,
                )
            ),
        )
        for n, sub in enumerate(subs)
    ] + [upload("broken.json", b"{")]

    with django_capture_on_commit_callbacks(execute=True):
        results = ping_uploads_store(uploads=uploads)

    assert [r.ok for r in results] == [True, True, False]
    assert calls == [(sorted(s.company_id for s in subs), "uploaded pings", None, True)]
