"""``POST /usage_data`` and its companions: GitLab-compatible answers, tokens, every bad input.

Every refusal must be a JSON 4xx (never a 500) and must store nothing partial: the row counts of
every ingest table are compared before and after.
"""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
import zlib
from datetime import timedelta

import orjson
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from instances.models import Instance, PingReport, RejectedPayload, UsagePing
from instances.services.storable import decompress_raw
from instances.services.tokens import ingest_token_create
from tests.conftest import PASSWORD
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    FIXTURE,
    PINGS,
    UUID,
    WHEN,
    gitlab_accepts,
    on_each_database,
    payload,
    row_counts,
)
from tests.instances.test_parsing import repair_docs_excerpt, ruby_hash_to_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

anonymous_allowed = override_settings(ALLOW_ANONYMOUS_PINGS=True)
anonymous_refused = override_settings(ALLOW_ANONYMOUS_PINGS=False)


def post(client: Client, body: bytes, *, path="/usage_data", content_type="application/json", **h):
    """POST as GitLab's client does: JSON body, Content-Type and Accept application/json."""
    headers = {"Accept": "application/json", **h}
    # Django's test client sends no Content-Type or Content-Length with an empty body; a real
    # client does.
    empty = {} if body else {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": "0"}
    return client.post(path, data=body, content_type=content_type, headers=headers, **empty)


def error_of(response) -> str:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


@pytest.fixture
def token(db) -> str:
    return ingest_token_create(name="pipeline")[1]


# --------------------------------------------------------------------------------------------------
# Accepted, as GitLab's client expects


@anonymous_allowed
def test_ping_is_stored_and_answered_the_way_gitlabs_client_accepts(client):
    body = orjson.dumps(payload("15.8.0-ee", full_size=True))

    response = post(client, body)

    assert response.status_code == 201
    ping = UsagePing.objects.defer("raw_payload").get()
    assert gitlab_accepts(response.status_code, response["Content-Type"], response.content) == (
        ping.id
    )
    assert response.json() == {
        "conv_index": {"usage_data_id": ping.id},
        "status": "accepted",
        "unmapped": True,
        "not_numeric": [],
    }
    assert ping.source == "http"
    assert decompress_raw(UsagePing.objects.get().raw_payload) == body


@anonymous_allowed
def test_same_ping_posted_twice_is_stored_once_and_both_answers_are_accepted(client):
    body = orjson.dumps(payload())
    first = post(client, body)
    before = row_counts()

    second = post(client, body)

    assert (first.status_code, second.status_code) == (201, 200)
    ids = [gitlab_accepts(r.status_code, r["Content-Type"], r.content) for r in (first, second)]
    assert ids[0] == ids[1] == UsagePing.objects.get().id
    assert second.json()["status"] == "duplicate"
    assert row_counts() == before


@anonymous_allowed
@pytest.mark.parametrize("header", ["gzip", "x-gzip", None])
def test_gzip_body_is_accepted_and_kept_as_json(client, header):
    body = orjson.dumps(payload())
    extra = {"Content-Encoding": header} if header else {}  # None: recognised by its magic bytes

    response = post(client, gzip.compress(body), **extra)

    assert response.status_code == 201
    assert decompress_raw(UsagePing.objects.get().raw_payload) == body


@anonymous_allowed
def test_charset_parameter_on_the_content_type_is_fine(client):
    response = post(client, orjson.dumps(payload()), content_type="application/json; charset=utf-8")
    assert response.status_code == 201


@anonymous_allowed
def test_endpoint_needs_no_csrf_token(db):
    client = Client(enforce_csrf_checks=True)
    assert post(client, orjson.dumps(payload())).status_code == 201


@anonymous_allowed
def test_docs_example_payload_is_accepted(client):
    name = "gitlab-docs_example-payload_v12.10.0-pre_usage-ping-guide_13x-doc.excerpt.json"
    body = orjson.dumps(repair_docs_excerpt((PINGS / name).read_text()))

    response = post(client, body)

    assert response.status_code == 201
    ping = UsagePing.objects.defer("raw_payload").get()
    assert ping.version == "12.10.0-pre"
    assert ping.billable_users is None  # before 14.0


# --------------------------------------------------------------------------------------------------
# Authentication


@anonymous_refused
def test_valid_token_is_accepted_and_marked_used(client, token):
    response = post(client, orjson.dumps(payload()), Authorization=f"Bearer {token}")

    assert response.status_code == 201
    from instances.models import IngestToken

    assert IngestToken.objects.get().last_used_at is not None


@anonymous_refused
def test_missing_token_is_refused_when_anonymous_pings_are_off(client):
    before = row_counts()
    response = post(client, orjson.dumps(payload()))

    assert response.status_code == 401
    assert "ingest token is required" in error_of(response)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert row_counts() == before


@pytest.mark.parametrize(
    "header",
    ["Bearer upt_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "upt_no_scheme"],
    ids=["wrong token", "empty token", "other scheme", "no scheme"],
)
@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous on", "anonymous off"])
def test_wrong_token_is_refused_even_when_anonymous_pings_are_on(client, token, header, anonymous):
    before = row_counts()
    with override_settings(ALLOW_ANONYMOUS_PINGS=anonymous):
        response = post(client, orjson.dumps(payload()), Authorization=header)

    assert response.status_code == 401
    assert error_of(response)
    assert row_counts() == before


@anonymous_refused
def test_revoked_token_is_refused(client, token):
    from instances.models import IngestToken

    IngestToken.objects.update(revoked_at=timezone.now())
    response = post(client, orjson.dumps(payload()), Authorization=f"Bearer {token}")
    assert response.status_code == 401
    assert error_of(response) == "invalid or revoked ingest token"
    assert not UsagePing.objects.exists()


@anonymous_allowed
def test_anonymous_ping_is_accepted_when_allowed(client):
    assert post(client, orjson.dumps(payload())).status_code == 201


def test_tokens_are_stored_hashed(db):
    token, secret = ingest_token_create(name="x")
    assert secret.startswith("upt_") and secret not in token.token_hash
    assert len(token.token_hash) == 64 and token.prefix == secret[:10]


# --------------------------------------------------------------------------------------------------
# Bad input: a clear JSON 4xx, nothing stored


BAD_BODIES = {
    # name: (body, status, words in the error)
    "malformed JSON": (b'{"uuid": "x", ', 400, "malformed JSON"),
    "trailing garbage": (orjson.dumps(payload()) + b"}", 400, "malformed JSON"),
    "empty body": (b"", 400, "malformed JSON"),
    "invalid UTF-8": (b'{"uuid": "\xff\xfe"}', 400, "UTF-8"),
    "NaN literal": (b'{"uuid": "x", "active_user_count": NaN}', 400, "malformed JSON"),
    "nested a million deep": (b"[" * 1_000_000 + b"]" * 1_000_000, 400, "malformed JSON"),
    "broken gzip": (b"\x1f\x8b\x08\x00garbage", 400, "gzip"),
    "array instead of object": (orjson.dumps([payload()]), 422, "JSON array, not an object"),
    "string instead of object": (b'"hello"', 422, "not an object"),
    "null": (b"null", 422, "not an object"),
    "no uuid": (orjson.dumps({"recorded_at": "2024-01-01T00:00:00Z"}), 422, "missing uuid"),
    "number as uuid": (
        orjson.dumps(payload() | {"uuid": 12345}),
        422,
        "uuid must be a string",
    ),
    "huge number as uuid": (
        orjson.dumps(payload())[:-1] + b', "uuid": 123456789012345678901234567890}',
        422,
        "uuid must be a string",
    ),
    "no recorded_at": (orjson.dumps({"uuid": UUID}), 422, "missing recorded_at"),
    "number as recorded_at": (
        orjson.dumps(payload() | {"recorded_at": 1709528767}),
        422,
        "recorded_at must be a string",
    ),
    "garbage recorded_at": (
        orjson.dumps(payload() | {"recorded_at": "last tuesday"}),
        422,
        "not an ISO 8601",
    ),
    "object as version": (
        orjson.dumps(payload() | {"version": {"x": 1}}),
        422,
        "version must be a string",
    ),
    "uuid of 10,000 characters": (
        orjson.dumps(payload() | {"uuid": "u" * 10_000}),
        422,
        "over the limit",
    ),
    "NUL in hostname": (orjson.dumps(payload() | {"hostname": "a\x00b"}), 422, "not text"),
    "GitLab's fixture as is": (FIXTURE.read_bytes(), 422, "version must be a string"),
}


@anonymous_allowed
@pytest.mark.parametrize(("body", "status", "words"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_gets_a_clear_4xx_and_stores_no_ping(client, body, status, words):
    before = row_counts()

    response = post(client, body)

    assert response.status_code == status
    assert words in error_of(response)
    after = row_counts()
    # A body that is JSON but not a ping is kept for ops; nothing else is written.
    kept = 1 if status == 422 else 0
    assert after == before | {"RejectedPayload": before["RejectedPayload"] + kept}


@anonymous_allowed
def test_rejected_ping_is_kept_with_its_reason(client):
    body = orjson.dumps([payload()])
    post(client, body)
    rejected = RejectedPayload.objects.get()
    assert (rejected.source, rejected.reason) == ("http", "payload is a JSON array, not an object")
    assert zlib.decompress(rejected.raw) == body


@anonymous_allowed
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""]
)
def test_wrong_content_type_is_refused(client, content_type):
    before = row_counts()
    response = post(client, orjson.dumps(payload()), content_type=content_type)
    assert response.status_code == 415
    assert "Content-Type must be application/json" in error_of(response)
    assert row_counts() == before


@anonymous_allowed
def test_unknown_content_encoding_is_refused(client):
    response = post(client, orjson.dumps(payload()), **{"Content-Encoding": "br"})
    assert response.status_code == 415
    assert "Content-Encoding" in error_of(response)


@anonymous_allowed
@override_settings(PING_MAX_BODY_BYTES=50_000)
def test_body_over_the_limit_is_refused_before_it_is_read(client):
    before = row_counts()
    big = orjson.dumps(payload(full_size=True))  # ~79 kB
    assert len(big) > 50_000

    response = post(client, big)

    assert response.status_code == 413
    assert "exceeds the limit of 50000 bytes" in error_of(response)
    assert row_counts() == before


@anonymous_allowed
def test_body_without_content_length_is_refused_without_reading_it(client):
    before = row_counts()
    huge = b" " * (50 * 1024 * 1024)  # would be over every limit if it were read

    # CONTENT_LENGTH="" is how a WSGI server presents a body sent without one (e.g. chunked).
    response = client.post(
        "/usage_data", data=huge, content_type="application/json", CONTENT_LENGTH=""
    )

    assert response.status_code == 411
    assert "Content-Length is required" in error_of(response)
    assert row_counts() == before


@anonymous_allowed
def test_content_length_shorter_than_the_body_reads_only_what_it_declares(client):
    body = orjson.dumps(payload())
    response = client.post(
        "/usage_data", data=body, content_type="application/json", CONTENT_LENGTH="20"
    )
    assert response.status_code == 400  # the first 20 bytes are not a JSON document
    assert not UsagePing.objects.exists()


@anonymous_allowed
@pytest.mark.parametrize("length", ["-5", "lots"])
def test_invalid_content_length_is_refused(client, length):
    response = client.post(
        "/usage_data", data=b"{}", content_type="application/json", CONTENT_LENGTH=length
    )
    # Django reads an unparsable length as 0: the body is then missing, never over-read.
    assert response.status_code in (400, 411)
    assert error_of(response)


def _gzip_bomb(inflated_bytes: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"0" * (1024 * 1024)
    parts = [squeeze.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    return b"".join(parts) + squeeze.flush()


@anonymous_allowed
@override_settings(PING_MAX_DECOMPRESSED_BYTES=2 * 1024 * 1024)
def test_gzip_bomb_is_refused_without_inflating_it(client):
    bomb = _gzip_bomb(512 * 1024 * 1024)  # 512 MB of zeros in ~0.5 MB
    assert len(bomb) < 1024 * 1024
    before = row_counts()

    tracemalloc.start()
    try:
        response = post(client, bomb, **{"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert "decompressed body exceeds the limit" in error_of(response)
    assert peak < 16 * 1024 * 1024  # a few MB, nowhere near the 512 MB it would inflate to
    assert row_counts() == before


@anonymous_allowed
def test_get_is_refused_with_json(client):
    response = client.get("/usage_data")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "use POST" in error_of(response)


# --------------------------------------------------------------------------------------------------
# Values that are not counts: the ping is accepted, those metrics are unknown (NULL)


@anonymous_allowed
def test_strings_where_numbers_belong_become_null_and_the_ping_is_accepted(client):
    body = payload()
    body["active_user_count"] = "12"
    body["usage_activity_by_stage_monthly"]["manage"]["events"] = "lots"

    response = post(client, orjson.dumps(body))

    assert response.status_code == 201
    assert set(response.json()["not_numeric"]) == {"active_users", "umau"}
    ping = UsagePing.objects.defer("raw_payload").get()
    assert (ping.active_users, ping.umau) == (None, None)
    assert ping.billable_users == 150  # the rest of the ping is intact


@anonymous_allowed
def test_huge_numbers_become_null_and_the_ping_is_accepted(client):
    body = orjson.dumps(payload())[:-1] + (
        b', "active_user_count": 123456789012345678901234567890'
        b', "historical_max_users": 1e400'
        b', "license_user_count": 9223372036854775808}'
    )

    response = post(client, body)

    assert response.status_code == 201
    assert set(response.json()["not_numeric"]) == {
        "active_users",
        "historical_max_users",
        "licensed_users",
    }
    ping = UsagePing.objects.defer("raw_payload").get()
    assert (ping.active_users, ping.historical_max_users, ping.licensed_users) == (None,) * 3
    # Kept byte for byte, big numbers included.
    assert decompress_raw(UsagePing.objects.get().raw_payload) == body


@anonymous_allowed
def test_largest_64_bit_count_is_stored(client):
    body = payload()
    body["counts"]["merge_requests"] = 2**63 - 1
    assert post(client, orjson.dumps(body)).status_code == 201
    assert UsagePing.objects.defer("raw_payload").get().merge_requests_all == 2**63 - 1


@anonymous_allowed
def test_overlong_license_fields_do_not_break_storage(client):
    body = payload("15.8.0-ee") | {
        "license_md5": "f" * 500,
        "license_subscription_id": "A" * 500,
        "license_plan": "p" * 500,
        "edition": "E" * 500,
    }
    assert post(client, orjson.dumps(body)).status_code == 201
    assert Instance.objects.count() == 1


@anonymous_allowed
def test_no_bad_body_ever_gets_a_500(client):
    base = orjson.dumps(payload())
    bodies = [base[:n] for n in range(0, len(base), max(1, len(base) // 60))]
    bodies += [bytes([b]) for b in range(256)]
    bodies += [b"{}", b"[]", b"0", b"true", b'{"uuid": null}', b'{"uuid": ""}', b'{"": {}}']
    for body in bodies:
        response = post(client, body)
        assert response.status_code < 500, body[:80]
        assert response["Content-Type"] == "application/json"


# --------------------------------------------------------------------------------------------------
# Companion endpoints


def docs_json(name: str) -> dict:
    return repair_docs_excerpt(ruby_hash_to_json((PINGS / name).read_text()))


@anonymous_allowed
def test_error_report_from_the_docs_is_stored_for_ops(client):
    body = {"error": docs_json("gitlab-docs_error-payload_v14.7.0-pre.ruby-hash.txt")}

    response = post(client, orjson.dumps(body), path="/usage_ping_errors")

    assert response.status_code == 201
    report = PingReport.objects.get()
    assert response.json() == {"id": report.id}
    assert (report.kind, report.version, report.hostname) == ("error", "14.7.0-pre", "127.0.0.1")
    assert report.message.startswith("PG::UndefinedColumn")
    assert report.elapsed == pytest.approx(0.006946)


@anonymous_allowed
def test_metadata_report_from_the_docs_is_stored_for_ops(client):
    body = docs_json("gitlab-docs_metadata-payload_v15.x.ruby-hash.txt")

    response = post(client, orjson.dumps(body), path="/usage_ping_metadata")

    assert response.status_code == 201
    report = PingReport.objects.get()
    assert report.kind == "metadata"
    assert report.payload["metadata"]["metrics"][0]["name"] == "version"


@anonymous_allowed
@pytest.mark.parametrize("path", ["/usage_ping_errors", "/usage_ping_metadata"])
@pytest.mark.parametrize("body", [b"[]", b'{"nothing": 1}', b'{"error": [], "metadata": 3}'])
def test_malformed_report_is_refused(client, path, body):
    before = row_counts()
    response = post(client, body, path=path)
    assert response.status_code == 422
    assert error_of(response)
    assert row_counts() == before


@anonymous_allowed
def test_report_with_nul_characters_and_huge_numbers_is_stored(client):
    body = (
        b'{"error": {"uuid": "u", "message": "bad\\u0000byte", "elapsed": 1e400,'
        b' "extra": {"n\\u0000": 123456789012345678901234567890, "f": 1e999}}}'
    )
    response = post(client, body, path="/usage_ping_errors")
    assert response.status_code == 201
    report = PingReport.objects.get()
    assert report.message == "bad\ufffdbyte"
    assert report.elapsed is None


@anonymous_refused
@pytest.mark.parametrize("path", ["/usage_ping_errors", "/usage_ping_metadata"])
def test_reports_need_a_token_too(client, path):
    response = post(client, b'{"error": {}}', path=path)
    assert response.status_code == 401


# --------------------------------------------------------------------------------------------------
# Freshness of the stored instance


@anonymous_allowed
def test_instance_last_ping_and_version_follow_posted_pings(client):
    post(client, orjson.dumps(payload("16.5.1-ee")))
    post(client, orjson.dumps(payload("16.8.0-ee", recorded_at=WHEN + timedelta(weeks=1))))
    instance = Instance.objects.get()
    assert (instance.version, instance.last_ping_at) == ("16.8.0-ee", WHEN + timedelta(weeks=1))


# --------------------------------------------------------------------------------------------------
# Tokens managed in the admin; admin lists never load raw payloads


def test_ops_creates_a_token_in_the_admin_and_sees_its_secret_once(ops, client):
    from instances.models import IngestToken

    client.login(username=ops.username, password=PASSWORD)
    response = client.post(
        "/admin/instances/ingesttoken/add/",
        {"name": "nightly pipeline", "scopes": ["ingest"]},
        follow=True,
    )

    assert response.status_code == 200
    token = IngestToken.objects.get()
    (message,) = [str(m) for m in response.context["messages"] if "Copy this token" in str(m)]
    secret = message.split("<code>")[1].split("</code>")[0]
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.created_by == ops
    with override_settings(ALLOW_ANONYMOUS_PINGS=False):
        accepted = post(Client(), orjson.dumps(payload()), Authorization=f"Bearer {secret}")
    assert accepted.status_code == 201

    client.post(
        "/admin/instances/ingesttoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    with override_settings(ALLOW_ANONYMOUS_PINGS=False):
        refused = post(
            Client(),
            orjson.dumps(payload(recorded_at=WHEN + timedelta(days=1))),
            Authorization=f"Bearer {secret}",
        )
    assert refused.status_code == 401


@anonymous_allowed
def test_admin_ping_list_does_not_load_raw_payloads(ops, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post(client, orjson.dumps(payload(full_size=True)))
    client.login(username=ops.username, password=PASSWORD)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/instances/usageping/")

    assert response.status_code == 200
    ping_queries = [q["sql"] for q in queries if "instances_usageping" in q["sql"]]
    assert ping_queries
    assert not any("raw_payload" in sql for sql in ping_queries)


@anonymous_allowed
def test_deeply_nested_report_is_stored_cut_short(client):
    body = b'{"error": {"uuid": "u", "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    response = post(client, body, path="/usage_ping_errors")
    assert response.status_code == 201
    assert "nested too deeply" in orjson.dumps(PingReport.objects.get().payload).decode()
