"""A real HTTP round trip: a running server, and a client that submits as GitLab does.

The client below does what ``ServicePing::SubmitService`` does (gitlab-org/gitlab,
``app/services/service_ping/submit_service.rb``): POST the payload's JSON to ``/usage_data`` with
``Content-Type: application/json`` (and, in newer versions, ``Accept: application/json``), then
treat the submission as failed unless the answer is 2xx and its JSON has an Integer
``conv_index.usage_data_id`` (or ``dev_ops_score.usage_data_id``) greater than 0.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest
import requests
from django.test import override_settings

from instances.models import Instance, RejectedPayload, UsagePing
from instances.services.storable import decompress_raw
from instances.services.tokens import ingest_token_create
from tests.factories import SubscriptionFactory
from tests.ingest_support import (  # noqa: F401  (fixture used by name)
    WHEN,
    gitlab_accepts,
    payload,
    row_counts,
)


class SubmissionError(Exception):
    """What GitLab's client raises when the portal's answer is not an acceptance."""


def submit_like_gitlab(base_url: str, usage_data: dict, *, headers: dict | None = None) -> int:
    """ServicePing::SubmitService#submit_usage_data_payload, in Python. Returns the id."""
    if not usage_data:
        raise SubmissionError("Usage data is blank")
    response = requests.post(
        f"{base_url}/usage_data",
        data=json.dumps(usage_data),  # Ruby's usage_data.to_json
        headers={"Content-type": "application/json", "Accept": "application/json"}
        | (headers or {}),
        timeout=30,
    )
    if not 200 <= response.status_code < 300:
        raise SubmissionError(f"Unsuccessful response code: {response.status_code}")
    usage_data_id = gitlab_accepts(
        response.status_code, response.headers.get("Content-Type", ""), response.content
    )
    if usage_data_id is None:
        raise SubmissionError(f"Invalid usage_data_id in response: {response.text[:200]}")
    return usage_data_id


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_gitlab_client_submission_is_accepted_by_a_running_server(live_server):
    sub = SubscriptionFactory()
    body = payload("16.9.1-ee", subscription_id=sub.name, full_size=True)

    usage_data_id = submit_like_gitlab(live_server.url, body)

    ping = UsagePing.objects.get(pk=usage_data_id)
    assert ping.source == "http"
    assert ping.subscription_id == sub.id
    assert json.loads(decompress_raw(ping.raw_payload)) == body
    instance = Instance.objects.get()
    assert (instance.version, instance.company_id) == ("16.9.1-ee", sub.company_id)

    # GitLab retries after a timeout: the second submission is accepted and stores nothing new.
    assert submit_like_gitlab(live_server.url, body) == usage_data_id
    assert UsagePing.objects.count() == 1


@override_settings(ALLOW_ANONYMOUS_PINGS=False)
def test_pipeline_with_a_token_is_accepted_and_without_one_refused(live_server):
    _, secret = ingest_token_create(name="pipeline")
    body = payload()

    with pytest.raises(SubmissionError, match="Unsuccessful response code: 401"):
        submit_like_gitlab(live_server.url, body)
    with pytest.raises(SubmissionError, match="Unsuccessful response code: 401"):
        submit_like_gitlab(live_server.url, body, headers={"Authorization": "Bearer upt_wrong"})
    assert not UsagePing.objects.exists()

    usage_data_id = submit_like_gitlab(
        live_server.url, body, headers={"Authorization": f"Bearer {secret}"}
    )
    assert UsagePing.objects.get().id == usage_data_id


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_a_refused_payload_is_a_failed_submission_for_gitlab(live_server):
    with pytest.raises(SubmissionError, match="Unsuccessful response code: 422"):
        submit_like_gitlab(live_server.url, {"uuid": 12345, "recorded_at": "2024-01-01T00:00Z"})
    assert RejectedPayload.objects.count() == 1
    assert not UsagePing.objects.exists()


@override_settings(ALLOW_ANONYMOUS_PINGS=True, PING_MAX_DECOMPRESSED_BYTES=1024 * 1024)
def test_gzip_and_chunked_bodies_over_real_http(live_server):
    url = f"{live_server.url}/usage_data"
    raw = json.dumps(payload()).encode()

    zipped = requests.post(
        url,
        data=gzip.compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert zipped.status_code == 201

    before = row_counts()
    # A generator body goes out chunked, without Content-Length: refused, never read.
    chunked = requests.post(
        url,
        data=(part for part in (raw[:100], raw[100:])),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 411
    assert chunked.json()["error"].startswith("Content-Length is required")

    bomb = gzip.compress(b" " * (64 * 1024 * 1024), 9)
    exploded = requests.post(
        url,
        data=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert exploded.status_code == 413
    assert row_counts() == before


@pytest.mark.integration
@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_gitlab_client_round_trip_on_postgresql(live_server):
    sub = SubscriptionFactory()
    ids = [
        submit_like_gitlab(
            live_server.url,
            payload(
                version,
                recorded_at=WHEN + timedelta(weeks=week),
                subscription_id=sub.name if week else None,  # the first ping maps later
                full_size=True,
            ),
        )
        for week, version in enumerate(["14.10.0-ee", "15.8.0-ee", "16.9.1-ee", "17.6.2-ee"])
    ]

    assert len(set(ids)) == 4
    assert set(UsagePing.objects.values_list("subscription_id", flat=True)) == {sub.id}
    instance = Instance.objects.get()
    assert (instance.version, instance.subscription_id) == ("17.6.2-ee", sub.id)
    assert instance.license.md5 and instance.license.sha256  # one license, both hashes
