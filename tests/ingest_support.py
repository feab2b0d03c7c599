"""Shared helpers and fixtures for the ingest tests (this module holds no tests itself).

Ingest tests run twice: once as unit tests on whatever database the run uses (SQLite by
default) and once marked ``integration``, which must run on PostgreSQL and fails otherwise.
A module opts in with ``pytestmark = pytest.mark.usefixtures("on_each_database")`` and imports
the two fixtures below.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from instances.models import (
    Instance,
    License,
    MonthlyUsage,
    PingReport,
    RejectedPayload,
    UsagePing,
)
from instances.parsing import parse_ping
from instances.services.inputs import PingInput
from instances.services.store import pings_store
from instances.transport import decode_body
from usage_portal.sampledata.payloads import build_payload

PINGS = Path(__file__).resolve().parent / "data" / "pings"
FIXTURE = PINGS / "gitlab-spec-fixture_sql_metrics_queries_ee_circa-v15.0.json"
UUID = "5f0c2f4e-6b1a-4d0e-9d7b-0c1f2e3d4a5b"
HOST = "gitlab.acme.example"
MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32
WHEN = datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@pytest.fixture(params=["any-db", pytest.param("postgresql", marks=pytest.mark.integration)])
def on_each_database(request) -> str:
    """Run a test as a unit test and again as an integration test (on PostgreSQL)."""
    return request.param


def payload(
    version: str = "16.5.1-ee",
    *,
    uuid: str = UUID,
    hostname: str = HOST,
    recorded_at: datetime = WHEN,
    md5: str | None = MD5,
    sha256: str | None = SHA256,
    subscription_id: str | None = None,
    metrics: dict | None = None,
    full_size: bool = False,
) -> dict:
    """A GitLab-format payload of ``version`` (hashes are dropped where the version has none)."""
    return build_payload(
        uuid=uuid,
        hostname=hostname,
        version=version,
        recorded_at=recorded_at,
        license_md5=md5,
        license_sha256=sha256,
        license_subscription_id=subscription_id,
        licensed_users=200,
        licensee_company="ACME Corp",
        starts_at=date(2024, 1, 1),
        expires_at=date(2025, 1, 1),
        metrics={"billable_users": 150, "umau": 120, "ci_builds_l28": 900} | (metrics or {}),
        full_size=full_size,
    )


def store(*payloads: dict, source: str = "http", refresh: bool = False):
    """Send payloads through the real decode → parse → store path, as one batch."""
    inputs = []
    for item in payloads:
        raw = orjson.dumps(item)
        parsed = parse_ping(decode_body(raw, content_encoding=None, max_bytes=10**8))
        inputs.append(PingInput.from_parsed(parsed, raw=raw))
    return pings_store(inputs=inputs, source=source, refresh=refresh)


def command_run(name: str, *args) -> tuple[str, str, int, CommandError | None]:
    """(stdout, stderr, exit status, the CommandError it ended with) of a management command."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *map(str, args), stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc.returncode, exc
    return out.getvalue(), err.getvalue(), 0, None


def row_counts() -> dict[str, int]:
    """Rows per ingest table, to prove a refused request stored nothing (or exactly one thing)."""
    return {
        model.__name__: model.objects.count()
        for model in (UsagePing, Instance, License, MonthlyUsage, PingReport, RejectedPayload)
    }


def gitlab_accepts(status: int, content_type: str, body: bytes) -> int | None:
    """The usage_data_id GitLab's ``ServicePing::SubmitService`` would record, or None.

    Its rule: ``response.success?`` (2xx), then the JSON body's
    ``conv_index.usage_data_id || dev_ops_score.usage_data_id`` must be an Integer > 0.
    HTTParty parses the body as JSON only when the response says it is JSON; Ruby's ``||`` falls
    through on nil and false only, and ``true`` is not an Integer.
    """
    if not 200 <= status < 300 or "json" not in content_type.lower():
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None

    def dig(key: str):
        inner = data.get(key)
        return inner.get("usage_data_id") if isinstance(inner, dict) else None

    found = dig("conv_index")
    if found is None or found is False:
        found = dig("dev_ops_score")
    return found if type(found) is int and found > 0 else None
