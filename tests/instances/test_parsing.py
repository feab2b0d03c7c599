"""Service Ping decoding and parsing, against GitLab's own samples and hand-made edge cases."""

from __future__ import annotations

import gzip
import json
import re
import time
import tracemalloc
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from instances.companions import parse_ping_error, parse_ping_metadata
from instances.metrics import (
    METRIC_NAMES,
    METRICS,
    METRICS_BY_NAME,
    SCAN_METRICS,
    SEAT_METRICS,
    SENTINELS,
)
from instances.parsing import PingRejected, flatten, parse_ping, parse_timestamp
from instances.transport import PayloadError, decode_body
from instances.versions import parse_version

PINGS = Path(__file__).resolve().parents[1] / "data" / "pings"
FIXTURE = PINGS / "gitlab-spec-fixture_sql_metrics_queries_ee_circa-v15.0.json"
MB = 1_000_000


# --------------------------------------------------------------------------------------------------
# Helpers: GitLab's docs elide with "..." and show some payloads as Ruby hashes.


def repair_docs_excerpt(text: str) -> dict:
    """Turn a docs excerpt into the JSON object it elides.

    Drops lines that are only dots, wraps a fragment that lacks its opening brace, closes any
    brackets the excerpt left open, and removes the trailing commas the elision leaves behind.
    """
    kept = [line for line in text.splitlines() if not re.fullmatch(r"\s*\.{3,}\s*", line)]
    body = "\n".join(kept).strip()
    if not body.startswith("{"):
        body = "{" + body
    body += _missing_closers(body)
    body = re.sub(r",(\s*[}\]])", r"\1", body)
    return json.loads(body)


def _missing_closers(text: str) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            stack.pop()
    return "".join(reversed(stack))


def ruby_hash_to_json(text: str) -> str:
    """Rewrite Ruby hash notation (`"k"=>'v'`) as JSON text; single-quoted strings are literal."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif char == "'":
            end = i + 1
            chars: list[str] = []
            while text[end] != "'":
                if text[end] == "\\" and text[end + 1] in "\\'":
                    end += 1
                chars.append(text[end])
                end += 1
            out.append(json.dumps("".join(chars)))
            i = end + 1
        elif text.startswith("=>", i):
            out.append(":")
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _leaf(payload: dict, path: str) -> object:
    node: object = payload
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def load_excerpt(name: str) -> dict:
    return repair_docs_excerpt((PINGS / name).read_text())


def minimal_ping(**extra: object) -> dict:
    return {"uuid": "a-uuid", "recorded_at": "2024-05-06T07:08:09.123Z", **extra}


@pytest.fixture(scope="module")
def fixture_payload() -> dict:
    return json.loads(FIXTURE.read_text())


# --------------------------------------------------------------------------------------------------
# The metric table


def test_metric_table_names_and_exports_are_consistent() -> None:
    assert tuple(m.name for m in METRICS) == METRIC_NAMES
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES) == 26
    assert set(METRICS_BY_NAME) == set(METRIC_NAMES)
    assert set(SEAT_METRICS) | set(SCAN_METRICS) <= set(METRIC_NAMES)
    assert len(SCAN_METRICS) == 7
    assert {-1, -2, -3, -1000} == SENTINELS
    assert METRICS_BY_NAME["ci_builds_l28"].key_paths == (
        "counts.count_total_create_ci_build_monthly",  # the handbook's key first
        "counts_monthly.ci_builds",
    )
    assert METRICS_BY_NAME["billable_users"].introduced == "14.0"
    assert METRICS_BY_NAME["billable_users"].time_frame == "all"
    for metric in METRICS:
        assert metric.time_frame in {"28d", "all", "none"}
        assert metric.key_paths and metric.label and metric.description


# --------------------------------------------------------------------------------------------------
# GitLab's generated fixture: the whole key tree with SQL text for leaves


def test_fixture_flattens_to_its_documented_1803_leaves(fixture_payload: dict) -> None:
    leaves = flatten(fixture_payload)
    assert len(leaves) == 1803
    assert leaves["settings.collected_data_categories"] == [
        "standard",
        "subscription",
        "operational",
        "optional",
    ]
    assert leaves["license"] == {}
    assert leaves["version.alt_usage_data_block"] == "non-SQL usage data block"


def test_fixture_is_refused_for_its_placeholder_version(fixture_payload: dict) -> None:
    with pytest.raises(PingRejected) as excinfo:
        parse_ping(fixture_payload)
    assert excinfo.value.reason == "version must be a string, not an object"


def test_fixture_with_a_real_version_yields_null_for_every_metric(fixture_payload: dict) -> None:
    ping = parse_ping({**fixture_payload, "version": "15.0.0-ee"})

    assert ping.uuid == "d78a1ca1-e25b-4bc8-92ad-be3caf9673da"
    assert ping.hostname == "localhost"
    assert ping.recorded_at == datetime(2021, 1, 1, tzinfo=UTC)
    assert ping.version_tuple == (15, 0, 0)
    assert ping.edition == "EE Free"
    assert ping.installation_type is None  # a placeholder object in the fixture
    assert ping.license_md5 is None and ping.license_plan is None
    assert ping.collected_data_categories == ("standard", "subscription", "operational", "optional")
    assert set(ping.metrics) == set(METRIC_NAMES)
    assert all(value is None for value in ping.metrics.values())

    present = {m.name: _leaf(fixture_payload, m.key_paths[0]) for m in METRICS}
    sql_text = {name for name, leaf in present.items() if str(leaf).startswith("SELECT")}
    placeholders = {name for name, leaf in present.items() if isinstance(leaf, dict)}
    assert len(sql_text) == 19
    assert placeholders == {"git_operation_users"}  # {"redis_usage_data_block": "non-SQL ..."}
    assert set(ping.not_numeric) == sql_text | placeholders
    # Absent from the ~15.0 tree: NULL without a complaint.
    for name in ("billable_users", "licensed_users", "historical_max_users", "ci_builds_l28"):
        assert name not in ping.not_numeric


# --------------------------------------------------------------------------------------------------
# GitLab's docs examples


def test_docs_example_payload_has_its_documented_values() -> None:
    payload = load_excerpt(
        "gitlab-docs_example-payload_v12.10.0-pre_service-ping-index_latest.excerpt.json"
    )
    ping = parse_ping(payload)

    assert ping.uuid == "0000000-0000-0000-0000-000000000000"
    assert ping.hostname == "example.com"
    assert ping.version == "12.10.0-pre"
    assert ping.version_tuple == (12, 10, 0)
    assert ping.edition == "EEU"
    assert ping.installation_type == "omnibus-gitlab"
    assert ping.recorded_at == datetime(2020, 4, 17, 7, 43, 54, 162000, tzinfo=UTC)
    assert ping.license_md5 == "0" * 32
    assert ping.license_sha256 == "0" * 64
    assert ping.license_id is None
    assert ping.license_plan == "ultimate"
    assert ping.license_trial is False
    assert ping.license_starts_at == date(2020, 1, 1)
    assert ping.license_expires_at == date(2021, 1, 1)
    assert ping.licensee_company == "ABC, Inc."
    assert ping.active_users == 999
    assert ping.licensed_users == 999
    assert ping.historical_max_users == 999
    assert ping.billable_users is None  # 12.10 predates license_billable_users
    assert ping.metrics["umau"] == 999
    assert ping.metrics["ci_build_users"] == 999
    assert ping.metrics["deployment_users"] == 999
    assert ping.metrics["merge_requests_all"] is None  # elided from the excerpt
    assert ping.not_numeric == ()


def test_older_docs_example_has_no_sha256() -> None:
    payload = load_excerpt(
        "gitlab-docs_example-payload_v12.10.0-pre_usage-ping-guide_13x-doc.excerpt.json"
    )
    ping = parse_ping(payload)
    assert ping.license_md5 == "0" * 32
    assert ping.license_sha256 is None
    assert ping.active_users == 999
    assert ping.metrics["umau"] == 999


def test_docs_sql_queries_export_is_refused_for_null_uuid_and_reports_sql_as_not_numeric() -> None:
    payload = load_excerpt("gitlab-docs_api-usage_data-queries_v13.11.0-pre_gdk.excerpt.json")
    with pytest.raises(PingRejected, match=r"^missing uuid$"):
        parse_ping(payload)

    ping = parse_ping({**payload, "uuid": "gdk"})
    assert ping.recorded_at == datetime(2021, 3, 23, 6, 31, 21, 267000, tzinfo=UTC)
    assert ping.license_plan == "starter"
    assert ping.license_subscription_id == "0000"
    assert ping.license_trial is None
    assert ping.licensed_users is None  # null: unknown, not junk
    assert ping.historical_max_users == 0
    assert ping.active_users is None
    assert set(ping.not_numeric) == {
        "active_users",
        "ci_internal_pipelines_all",
        "ci_external_pipelines_all",
    }


def test_docs_non_sql_export_turns_the_minus_3_sentinel_into_null() -> None:
    payload = load_excerpt(
        "gitlab-docs_api-usage_data-non_sql_metrics_v13.11.0-pre_gdk.excerpt.json"
    )
    assert payload["active_user_count"] == -3
    ping = parse_ping({**payload, "uuid": "gdk"})
    assert ping.active_users is None
    assert ping.historical_max_users == 0
    assert ping.not_numeric == ()
    assert ping.licensee_company is None  # the licensee has only a Name


def test_docs_16_9_fragment_parses_once_given_an_identity() -> None:
    payload = load_excerpt("gitlab-docs_api-usage_data-service_ping_v16.9-era.excerpt.json")
    assert payload["counts"]["ci_builds"] == 463
    with pytest.raises(PingRejected, match=r"^missing uuid$"):
        parse_ping(payload)

    ping = parse_ping({**payload, "uuid": "saas"})
    assert ping.recorded_at == datetime(2024, 1, 15, 23, 33, 50, 387000, tzinfo=UTC)
    assert ping.hostname == ""
    assert ping.version is None and ping.version_tuple is None
    assert ping.metrics["ci_external_pipelines_all"] == 0
    assert ping.metrics["ci_builds_l28"] is None  # counts.ci_builds is all-time, not L28


def test_seat_link_sync_request_is_not_a_service_ping() -> None:
    payload = json.loads((PINGS / "gitlab-docs_license-sync-request_v14.1.0-pre.json").read_text())
    with pytest.raises(PingRejected, match=r"^missing uuid$"):
        parse_ping(payload)


def test_docs_error_payload_parses() -> None:
    text = (PINGS / "gitlab-docs_error-payload_v14.7.0-pre.ruby-hash.txt").read_text()
    error = parse_ping_error({"error": json.loads(ruby_hash_to_json(text))})

    assert error.uuid == "02333324-1cd7-4c3b-a45b-a4993f05fb1d"
    assert error.hostname == "127.0.0.1"
    assert error.version == "14.7.0-pre"
    assert error.version_tuple == (14, 7, 0)
    assert error.elapsed == pytest.approx(0.006946)
    assert error.message.startswith("PG::UndefinedColumn: ERROR:  column")
    assert error.time is None  # the docs example omits it


def test_docs_metadata_payload_parses() -> None:
    text = (PINGS / "gitlab-docs_metadata-payload_v15.x.ruby-hash.txt").read_text()
    metadata = parse_ping_metadata(repair_docs_excerpt(ruby_hash_to_json(text)))

    assert metadata.uuid == "0000000-0000-0000-0000-000000000000"
    assert [m.name for m in metadata.metrics] == [
        "version",
        "installation_type",
        "license_billable_users",
        "counts.clusters_platforms_eks",
        "counts.clusters_platforms_gke",
        "counts.clusters_platforms_user",
        "counts.clusters_management_project",
    ]
    assert metadata.metrics[0].time_elapsed == pytest.approx(1.1811964213848114e-05)
    assert metadata.skipped == 0


# --------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([{"uuid": "x"}], "payload is a JSON array, not an object"),
        ("{}", "payload is a string, not an object"),
        (None, "payload is null, not an object"),
        (42, "payload is a number, not an object"),
        ({}, "missing uuid"),
        ({"uuid": None, "recorded_at": "2024-01-01T00:00:00Z"}, "missing uuid"),
        ({"uuid": "  ", "recorded_at": "2024-01-01T00:00:00Z"}, "missing uuid (empty string)"),
        ({"uuid": 7, "recorded_at": "2024-01-01T00:00:00Z"}, "uuid must be a string, not a number"),
        ({"uuid": "u"}, "missing recorded_at"),
        ({"uuid": "u", "recorded_at": "abc"}, "recorded_at 'abc' is not an ISO 8601 timestamp"),
        (
            {"uuid": "u", "recorded_at": "2020-04-17"},
            "recorded_at '2020-04-17' is not an ISO 8601 timestamp",
        ),
        (
            {"uuid": "u", "recorded_at": "2020-13-45T00:00:00Z"},
            "recorded_at '2020-13-45T00:00:00Z' is not an ISO 8601 timestamp",
        ),
        ({"uuid": "u", "recorded_at": 1700000000}, "recorded_at must be a string, not a number"),
        (minimal_ping(version=15), "version must be a string, not a number"),
        (minimal_ping(hostname=["h"]), "hostname must be a string, not a JSON array"),
        (minimal_ping(uuid="u" * 65), "uuid is 65 characters long, over the limit of 64"),
        (
            minimal_ping(uuid="a\ufffdb"),
            "uuid contains a character that is not text (NUL or lone surrogate)",
        ),
    ],
)
def test_unusable_payloads_are_refused_with_a_precise_reason(payload: object, reason: str) -> None:
    with pytest.raises(PingRejected) as excinfo:
        parse_ping(payload)
    assert excinfo.value.reason == reason
    assert str(excinfo.value) == reason
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("parse", "payload", "reason"),
    [
        (parse_ping_error, [], "payload is a JSON array, not an object"),
        (parse_ping_error, {"uuid": "u"}, "missing error"),
        (parse_ping_error, {"error": "boom"}, "error must be an object, not a string"),
        (parse_ping_metadata, {"uuid": "u"}, "missing metadata"),
        (parse_ping_metadata, {"metadata": None}, "metadata must be an object, not null"),
        (
            parse_ping_metadata,
            {"metadata": {"metrics": {"name": "x"}}},
            "metadata.metrics must be an array, not an object",
        ),
    ],
)
def test_companion_payloads_without_their_wrapper_are_refused(
    parse: object, payload: object, reason: str
) -> None:
    with pytest.raises(PingRejected) as excinfo:
        parse(payload)  # type: ignore[operator]
    assert excinfo.value.reason == reason


def test_companion_payloads_are_lenient_inside_the_wrapper() -> None:
    error = parse_ping_error(
        {"error": {"time": "2024-01-01 10:00:00 UTC", "elapsed": "slow", "message": 3}}
    )
    assert error.time == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert error.elapsed is None
    assert error.message == ""
    assert error.uuid is None and error.hostname == ""

    metadata = parse_ping_metadata(
        {"metadata": {"metrics": [{"name": "a", "time_elapsed": 0.5}, "junk", {"name": ""}]}}
    )
    assert [(m.name, m.time_elapsed) for m in metadata.metrics] == [("a", 0.5)]
    assert metadata.skipped == 2


# --------------------------------------------------------------------------------------------------
# Identity fields


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-04-17T07:43:54.162+00:00", datetime(2020, 4, 17, 7, 43, 54, 162000, tzinfo=UTC)),
        ("2020-04-17T07:43:54.162Z", datetime(2020, 4, 17, 7, 43, 54, 162000, tzinfo=UTC)),
        ("2020-04-17 07:43:54 UTC", datetime(2020, 4, 17, 7, 43, 54, tzinfo=UTC)),
        ("2020-04-17 09:43:54 +0200", datetime(2020, 4, 17, 7, 43, 54, tzinfo=UTC)),
        ("2020-04-17T09:43:54+02:00", datetime(2020, 4, 17, 7, 43, 54, tzinfo=UTC)),
        ("2020-04-17T07:43:54", datetime(2020, 4, 17, 7, 43, 54, tzinfo=UTC)),  # naive → UTC
    ],
)
def test_recorded_at_formats_become_aware_utc(text: str, expected: datetime) -> None:
    ping = parse_ping({"uuid": "u", "recorded_at": text})
    assert ping.recorded_at == expected
    assert ping.recorded_at.utcoffset().total_seconds() == 0
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("15.4.2-ee", (15, 4, 2)),
        ("12.10.0-pre", (12, 10, 0)),
        ("16.9", (16, 9, 0)),
        ("17.6.1", (17, 6, 1)),
        ("banana", None),
        ("", None),
        (None, None),
    ],
)
def test_version_tuple(version: str | None, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(version) == expected
    assert parse_ping(minimal_ping(version=version)).version_tuple == expected


def test_license_fields_are_normalised_and_junk_becomes_none() -> None:
    ping = parse_ping(
        minimal_ping(
            license_id=4242,
            license_plan="Ultimate",
            license_trial="no",
            license_starts_at="2024-02-01T00:00:00Z",
            license_expires_at="someday",
            license_md5="x" * 33,
            license_subscription_id="A-S00012345",
            licensee="ACME",
        )
    )
    assert ping.license_id == "4242"
    assert ping.license_plan == "ultimate"
    assert ping.license_trial is None
    assert ping.license_starts_at == date(2024, 2, 1)
    assert ping.license_expires_at is None
    assert ping.license_md5 is None  # longer than an md5 column can hold
    assert ping.license_subscription_id == "A-S00012345"
    assert ping.licensee_company is None
    assert ping.hostname == ""
    assert ping.collected_data_categories == ()


# --------------------------------------------------------------------------------------------------
# Metric values


@pytest.mark.parametrize("sentinel", [*sorted(SENTINELS), -1.0, {"-1": -1}, {"-2": -2}])
def test_sentinels_are_unknown_not_junk(sentinel: object) -> None:
    ping = parse_ping(minimal_ping(active_user_count=sentinel, counts={"merge_requests": sentinel}))
    assert ping.active_users is None
    assert ping.metrics["merge_requests_all"] is None
    assert ping.not_numeric == ()


@pytest.mark.parametrize(
    "junk",
    [
        "42",
        "SELECT COUNT(*) FROM users",
        True,
        False,
        {"a": 1},
        {"-1": 5},
        [1, 2],
        -5,
        -0.5,
        2**63,
        2**70,
        18446744073709551615,
        1e30,
        float("nan"),
        float("inf"),
    ],
)
def test_unusable_leaves_are_null_and_reported(junk: object) -> None:
    ping = parse_ping(minimal_ping(license_billable_users=junk))
    assert ping.billable_users is None
    assert ping.not_numeric == ("billable_users",)


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 12.5])
def test_valid_counts_keep_their_type(value: int | float) -> None:
    ping = parse_ping(minimal_ping(usage_activity_by_stage_monthly={"manage": {"events": value}}))
    assert ping.metrics["umau"] == value
    assert type(ping.metrics["umau"]) is type(value)
    assert ping.not_numeric == ()


def test_absent_and_null_metrics_are_unknown_without_complaint() -> None:
    ping = parse_ping(minimal_ping(license_user_count=None, counts={"merge_requests": None}))
    assert set(ping.metrics) == set(METRIC_NAMES)
    assert all(value is None for value in ping.metrics.values())
    assert ping.not_numeric == ()


def test_a_path_through_a_non_object_is_absent() -> None:
    ping = parse_ping(minimal_ping(usage_activity_by_stage_monthly={"manage": 5}))
    assert ping.metrics["umau"] is None
    assert ping.not_numeric == ()


@pytest.mark.parametrize(
    ("counts_monthly", "counts", "expected"),
    [
        ({"ci_builds": 11}, {"count_total_create_ci_build_monthly": 22}, 22),
        ({}, {"count_total_create_ci_build_monthly": 22}, 22),
        ({"ci_builds": 11}, {"count_total_create_ci_build_monthly": None}, 11),
        ({"ci_builds": 11}, {}, 11),
    ],
)
def test_ci_builds_l28_prefers_the_handbooks_key(
    counts_monthly: dict, counts: dict, expected: int
) -> None:
    ping = parse_ping(minimal_ping(counts_monthly=counts_monthly, counts=counts))
    assert ping.metrics["ci_builds_l28"] == expected


# --------------------------------------------------------------------------------------------------
# Version shapes (hand-written, independent of the payload builder)


def test_pre_14_0_ping_has_no_billable_users() -> None:
    ping = parse_ping(
        minimal_ping(version="13.8.4-ee", license_md5="a" * 32, license_user_count=100)
    )
    assert ping.version_tuple == (13, 8, 4)
    assert ping.billable_users is None
    assert ping.licensed_users == 100
    assert ping.not_numeric == ()


def test_15_2_plus_ping_carries_both_hashes() -> None:
    ping = parse_ping(
        minimal_ping(
            version="15.4.2-ee",
            license_md5="a" * 32,
            license_sha256="b" * 64,
            license_billable_users=80,
        )
    )
    assert (ping.license_md5, ping.license_sha256) == ("a" * 32, "b" * 64)
    assert ping.billable_users == 80


def test_16_2_plus_ping_has_sha256_only() -> None:
    ping = parse_ping(minimal_ping(version="16.5.0-ee", license_sha256="b" * 64))
    assert ping.license_md5 is None
    assert ping.license_sha256 == "b" * 64


def test_17_5_plus_ping_reads_ci_builds_from_the_newer_key() -> None:
    ping = parse_ping(
        minimal_ping(
            version="17.6.1-ee",
            counts={"count_total_create_ci_build_monthly": 1234, "ci_internal_pipelines": 9},
        )
    )
    assert ping.metrics["ci_builds_l28"] == 1234
    assert ping.metrics["ci_internal_pipelines_all"] == 9


# --------------------------------------------------------------------------------------------------
# flatten


def test_flatten_keeps_arrays_and_empty_objects_as_leaves() -> None:
    assert flatten({"a": {"b": 1, "c": [1, {"d": 2}]}, "e": {}, "f": None}) == {
        "a.b": 1,
        "a.c": [1, {"d": 2}],
        "e": {},
        "f": None,
    }
    assert flatten(3) == {"": 3}


# --------------------------------------------------------------------------------------------------
# decode_body


def _gzip_stream(chunks: int, chunk_size: int = 1 << 20) -> bytes:
    """gzip of `chunks` × `chunk_size` zero bytes, built without holding the plain text."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(chunk_size)
    return b"".join([deflater.compress(zeros) for _ in range(chunks)] + [deflater.flush()])


BODY = {"uuid": "u", "recorded_at": "2024-01-01T00:00:00Z", "active_user_count": 5}


def test_plain_json_body_decodes() -> None:
    assert decode_body(orjson.dumps(BODY), content_encoding=None, max_bytes=MB) == BODY


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", " x-gzip ", None, "identity"])
def test_gzip_bodies_decode_by_header_or_magic(encoding: str | None) -> None:
    raw = gzip.compress(orjson.dumps(BODY))
    assert decode_body(raw, content_encoding=encoding, max_bytes=MB) == BODY


def test_concatenated_gzip_members_decode_as_one_body() -> None:
    text = orjson.dumps(BODY)
    raw = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert decode_body(raw, content_encoding="gzip", max_bytes=MB) == BODY


def test_gzip_bomb_is_refused_quickly_without_inflating_it() -> None:
    bomb = _gzip_stream(50)  # 50 MB of zeros
    assert len(bomb) < MB
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadError) as excinfo:
            decode_body(bomb, content_encoding="gzip", max_bytes=MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert excinfo.value.status == 413
    assert "decompressed body exceeds the limit of 1000000 bytes" in excinfo.value.reason
    assert time.perf_counter() - started < 2
    assert peak < 4 * MB


def test_oversized_raw_body_is_refused_before_decoding() -> None:
    raw = b'{"pad": "' + b"x" * MB + b'"}'
    with pytest.raises(PayloadError) as excinfo:
        decode_body(raw, content_encoding=None, max_bytes=MB)
    assert excinfo.value.status == 413
    assert excinfo.value.reason == f"body is {len(raw)} bytes, over the limit of {MB} bytes"


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, br"])
def test_unsupported_encodings_are_refused(encoding: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        decode_body(orjson.dumps(BODY), content_encoding=encoding, max_bytes=MB)
    assert excinfo.value.status == 415
    assert repr(encoding) in excinfo.value.reason


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (
            b'{"a": 1,}',
            None,
            "malformed JSON: trailing comma is not allowed: line 1 column 8 (char 7)",
        ),
        (b"", None, "malformed JSON: "),
        (b'{"a": NaN}', None, "malformed JSON: "),
        (b"[" * 5000, None, "malformed JSON: "),
        (
            b'{"a": "caf\xe9"}',
            None,
            "body is not valid UTF-8: invalid continuation byte at byte 10",
        ),
        (b"not gzip at all", "gzip", "body is not valid gzip: "),
        (gzip.compress(b'{"a": 1}')[:-12], None, "gzip stream is truncated"),
    ],
)
def test_malformed_bodies_are_refused_with_400(raw: bytes, encoding: str, message: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        decode_body(raw, content_encoding=encoding, max_bytes=MB)
    assert excinfo.value.status == 400
    assert excinfo.value.reason.startswith(message)


def test_utf8_bom_is_stripped() -> None:
    raw = b"\xef\xbb\xbf" + orjson.dumps(BODY)
    assert decode_body(raw, content_encoding=None, max_bytes=MB) == BODY
    assert decode_body(gzip.compress(raw), content_encoding=None, max_bytes=MB) == BODY


@pytest.mark.parametrize(
    "number",
    [
        b"18446744073709551615",
        b"123456789012345678901234567890",
        b"-123456789012345678901234567890",
        b"1e400",
        b"9" * 5000,
    ],
)
def test_huge_numbers_parse_and_become_null(number: bytes) -> None:
    raw = b'{"uuid": "u", "recorded_at": "2024-01-01T00:00:00Z", "active_user_count": ' + number
    payload = decode_body(raw + b"}", content_encoding=None, max_bytes=MB)
    ping = parse_ping(payload)
    assert ping.active_users is None
    assert ping.not_numeric == ("active_users",)


def test_fallback_parser_keeps_big_integers_exact() -> None:
    raw = b'{"a": 1e400, "b": 123456789012345678901234567890}'
    assert decode_body(raw, content_encoding=None, max_bytes=MB) == {
        "a": float("inf"),
        "b": 123456789012345678901234567890,
    }


def test_fixture_survives_the_whole_transport_path() -> None:
    raw = gzip.compress(FIXTURE.read_bytes())
    payload = decode_body(raw, content_encoding=None, max_bytes=10 * MB)
    assert len(flatten(payload)) == 1803
