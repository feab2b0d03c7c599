"""Text no database can store — lone UTF-16 surrogates, NUL — never fails a write.

A lone surrogate gets through the standard-library JSON fallback (taken for numbers beyond double
range) and NUL through any JSON ``\\u0000`` escape or a raw CSV byte. Before the one sanitiser
at the decoding boundary (``instances.transport.clean_text``) each answered 500 on the ingest
endpoints, aborted ``ingest_pings``/``ingest_saas`` half-way and failed ``import_crm`` with a
traceback. Both now become U+FFFD; an identity (uuid, hostname) holding one is refused. Run on
SQLite and again on PostgreSQL (which alone refuses NUL).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import Company
from instances.models import Instance, PingReport, UsagePing
from instances.transport import clean_text, loads_json
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    command_run,
    on_each_database,
    payload,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

# Past double range: orjson refuses it, so the whole body goes through the stdlib fallback,
# which (unlike orjson) accepts lone surrogates.
HUGE = "1" + "0" * 400
TEXT_FIELDS = ("hostname", "version", "edition", "installation_type", "license_plan")


def body_with(field: str, escaped: str) -> bytes:
    """A real payload whose `field` is the JSON-escaped text `escaped`, plus a huge number."""
    base = payload(recorded_at=timezone.now() - timedelta(hours=1))
    base[field] = "@@@"
    text = orjson.dumps(base).decode().replace('"@@@"', f'"{escaped}"')
    # First in the text: orjson stops at the number (and the fallback takes over) before it
    # would stop at the surrogate.
    return ('{"counts_overflow": ' + HUGE + ", " + text[1:]).encode()


def post(path: str, body: bytes):
    return Client().post(path, data=body, content_type="application/json")


def test_the_sanitiser_drops_nul_and_replaces_lone_surrogates_only():
    assert clean_text("a\x00b\ud800c\udfffd") == "a\ufffdb\ufffdc\ufffdd"
    assert clean_text("plain 😀 text") == "plain 😀 text"
    nested = loads_json(b'{"k\\u0000": [{"v": "x\\u0000y"}], "n": ' + HUGE.encode() + b"}")
    assert nested == {"k\ufffd": [{"v": "x\ufffdy"}], "n": int(HUGE)}


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("escaped", ["gitlab\\ud800.example", "gitlab\\u0000.example"])
def test_a_ping_with_unstorable_text_is_stored_with_the_text_cleaned(field, escaped):
    response = post("/usage_data", body_with(field, escaped))

    assert response.status_code in (201, 422), response.content
    assert response["Content-Type"] == "application/json"
    if response.status_code == 201:
        stored = getattr(UsagePing.objects.get(), field, None)
        stored = stored if stored is not None else getattr(Instance.objects.get(), field, "")
        assert "\x00" not in (stored or "") and "\ud800" not in (stored or "")
    else:  # a field the parser refuses as malformed, for a reason it names
        assert response.json()["error"]


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
@pytest.mark.parametrize("escaped", ["git\\ud800lab", "git\\u0000lab"])
def test_an_identity_with_unstorable_text_is_refused_by_name(escaped):
    response = post("/usage_data", body_with("hostname", escaped))

    assert response.status_code == 422
    assert "hostname contains a character that is not text" in response.json()["error"]
    assert not UsagePing.objects.exists()


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
def test_other_text_keeps_its_readable_part():
    assert post("/usage_data", body_with("version", "16.1\\ud800-ee")).status_code == 201
    assert UsagePing.objects.get().version == "16.1\ufffd-ee"


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
@pytest.mark.parametrize("path", ["/usage_ping_errors", "/usage_ping_metadata"])
def test_companion_reports_with_unstorable_text_are_stored(path):
    body = (
        b'{"error": {"uuid": "u\\u0000", "hostname": "h\\ud800", "version": "16.0.0",'
        b' "message": "boom\\u0000", "elapsed": 0.1, "time": "2026-01-01T00:00:00Z"},'
        b' "metadata": {"uuid": "u", "metrics": [{"name": "x\\u0000", "time_elapsed": 1}]},'
        b' "big": ' + HUGE.encode() + b"}"
    )
    response = post(path, body)

    assert response.status_code in (201, 400), response.content
    assert response["Content-Type"] == "application/json"
    if response.status_code == 201:
        report = PingReport.objects.get()
        assert "\x00" not in (report.message or "") + orjson.dumps(report.payload).decode()


def test_ingest_pings_stores_every_file_after_one_with_unstorable_text(tmp_path: Path):
    recent = timezone.now() - timedelta(hours=2)
    (tmp_path / "a.json").write_bytes(body_with("installation_type", "a\\ud800"))
    for n in range(3):
        good = payload(uuid=f"00000000-0000-0000-0000-00000000000{n}", recorded_at=recent)
        (tmp_path / f"b{n}.json").write_bytes(orjson.dumps(good))

    out, err, status, _ = command_run("ingest_pings", str(tmp_path), "--no-progress")

    assert (status, err) == (0, ""), out + err
    assert UsagePing.objects.count() == 4


def test_ingest_saas_stores_rows_with_nul_and_reports_nothing_half_done(tmp_path: Path):
    day = (timezone.now() - timedelta(days=1)).date().isoformat()
    export = tmp_path / "namespaces.jsonl"
    export.write_text(
        "\n".join(
            f'{{"namespace_id": {n}, "namespace_path": "ns\\u0000{n}", "snapshot_date": "{day}"}}'
            for n in range(1, 6)
        )
    )

    out, err, status, _ = command_run("ingest_saas", str(export))

    assert (status, err) == (0, ""), out + err
    assert sorted(Instance.objects.values_list("namespace_path", flat=True)) == [
        f"ns\ufffd{n}" for n in range(1, 6)
    ]


def test_import_crm_takes_a_file_with_nul_bytes(tmp_path: Path):
    companies = tmp_path / "accounts.csv"
    companies.write_bytes(
        b"crm_account_id,name,segment,csm,customer_since\n"
        b"0016100000000001,Acme\x00 Robotics,Strategic,,2021-04-01\n"
    )

    out, err, status, _ = command_run("import_crm", str(companies))

    assert (status, err) == (0, ""), out + err
    assert Company.objects.get().name == "Acme\ufffd Robotics"
