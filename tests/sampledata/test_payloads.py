"""The payload builder emits GitLab-shaped pings that the real parser reads back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from instances.metrics import METRIC_NAMES, METRICS
from instances.parsing import ParsedPing, flatten, parse_ping
from instances.transport import decode_body
from instances.versions import parse_version
from usage_portal.sampledata.payloads import KEYTREE_PATH, build_payload

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "pings"
    / "gitlab-spec-fixture_sql_metrics_queries_ee_circa-v15.0.json"
)
RECORDED_AT = datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "f" * 64
VERSIONS = ["13.8.4-ee", "15.4.2-ee", "16.5.0-ee", "17.6.1-ee"]


def sample_metrics() -> dict[str, int | None]:
    """A distinct value per metric, so a value landing on the wrong key path shows."""
    values: dict[str, int | None] = {name: 100 + 7 * i for i, name in enumerate(METRIC_NAMES)}
    values["licensed_users"] = 200
    values["dast_scans_l28"] = None
    return values


def build(release: str, *, full_size: bool = False, **overrides: object) -> dict:
    arguments: dict = {
        "uuid": "5f0c2f4e-6b1a-4d0e-9d7b-0c1f2e3d4a5b",
        "hostname": "gitlab.acme.example",
        "version": release,
        "recorded_at": RECORDED_AT,
        "license_md5": MD5,
        "license_sha256": SHA256,
        "license_subscription_id": "A-S00012345",
        "licensed_users": 200,
        "licensee_company": "ACME Corp",
        "starts_at": date(2024, 1, 1),
        "expires_at": date(2025, 1, 1),
        "metrics": sample_metrics(),
        "full_size": full_size,
    }
    arguments.update(overrides)
    return build_payload(**arguments)


def through_the_wire(payload: dict) -> ParsedPing:
    """Serialise as a client would and parse with the real ingest functions."""
    return parse_ping(decode_body(orjson.dumps(payload), content_encoding=None, max_bytes=10**7))


# --------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("full_size", [False, True], ids=["minimal", "full-size"])
@pytest.mark.parametrize("version", VERSIONS)
def test_payload_round_trips_through_the_parser(version: str, full_size: bool) -> None:
    ping = through_the_wire(build(version, full_size=full_size))

    expected = sample_metrics()
    release = parse_version(version)[:2]
    for metric in METRICS:  # keys a version does not send yet arrive as unknown
        if metric.since and release < metric.since:
            expected[metric.name] = None
    assert ping.metrics == expected
    assert ping.not_numeric == ()
    assert ping.uuid == "5f0c2f4e-6b1a-4d0e-9d7b-0c1f2e3d4a5b"
    assert ping.hostname == "gitlab.acme.example"
    assert ping.version == version
    assert ping.recorded_at == RECORDED_AT
    assert ping.license_plan == "ultimate"
    assert ping.edition == "EEU"
    assert ping.license_subscription_id == "A-S00012345"
    assert ping.license_starts_at == date(2024, 1, 1)
    assert ping.license_expires_at == date(2025, 1, 1)
    assert ping.licensee_company == "ACME Corp"
    assert ping.license_trial is False
    assert ping.collected_data_categories == ("standard", "subscription", "operational", "optional")


@pytest.mark.parametrize(
    ("version", "md5", "sha256"),
    [
        ("13.8.4-ee", MD5, None),
        ("15.4.2-ee", MD5, SHA256),
        ("16.5.0-ee", None, SHA256),
        ("17.6.1-ee", None, SHA256),
    ],
)
def test_license_hashes_follow_the_version(
    version: str, md5: str | None, sha256: str | None
) -> None:
    payload = build(version)
    assert ("license_md5" in payload) is (md5 is not None)
    assert ("license_sha256" in payload) is (sha256 is not None)
    ping = through_the_wire(payload)
    assert (ping.license_md5, ping.license_sha256) == (md5, sha256)


@pytest.mark.parametrize("full_size", [False, True], ids=["minimal", "full-size"])
def test_billable_users_key_is_absent_before_14_0(full_size: bool) -> None:
    assert "license_billable_users" not in build("13.8.4-ee", full_size=full_size)
    assert build("14.0.0-ee", full_size=full_size)["license_billable_users"] == 100


@pytest.mark.parametrize("full_size", [False, True], ids=["minimal", "full-size"])
def test_ci_builds_move_to_the_newer_key_from_17_5(full_size: bool) -> None:
    ci_builds_l28 = sample_metrics()["ci_builds_l28"]

    old = build("17.4.0-ee", full_size=full_size)
    assert old["counts_monthly"]["ci_builds"] == ci_builds_l28
    assert "ci_builds" in old["counts"]
    assert "count_total_create_ci_build_monthly" not in old["counts"]

    new = build("17.5.0-ee", full_size=full_size)
    assert new["counts"]["count_total_create_ci_build_monthly"] == ci_builds_l28
    assert "ci_builds" not in new["counts"]
    assert "ci_builds" not in new.get("counts_monthly", {})
    assert through_the_wire(new).metrics["ci_builds_l28"] == ci_builds_l28


def test_also_send_adds_a_second_key_for_one_metric_and_the_parser_prefers_the_handbooks() -> None:
    ci_builds_l28 = sample_metrics()["ci_builds_l28"]
    both = build(
        "17.4.0-ee", also_send={"counts.count_total_create_ci_build_monthly": ci_builds_l28 + 5}
    )
    assert both["counts_monthly"]["ci_builds"] == ci_builds_l28
    assert both["counts"]["count_total_create_ci_build_monthly"] == ci_builds_l28 + 5
    assert "ci_builds" in both["counts"]  # the rest of the payload is the version's own
    assert through_the_wire(both).metrics["ci_builds_l28"] == ci_builds_l28 + 5


def test_unknown_metrics_are_sent_as_the_sentinel_and_read_back_as_null() -> None:
    payload = build("16.5.0-ee", metrics={"umau": None, "active_users": 12}, licensed_users=None)
    assert payload["usage_activity_by_stage_monthly"]["manage"]["events"] == -1
    assert payload["license_user_count"] == -1
    assert payload["counts_monthly"]["deployments"] == -1  # not given at all
    ping = through_the_wire(payload)
    assert ping.active_users == 12
    assert all(value is None for name, value in ping.metrics.items() if name != "active_users")
    assert ping.not_numeric == ()


def test_naive_recorded_at_is_taken_as_utc() -> None:
    payload = build("16.5.0-ee", recorded_at=datetime(2024, 3, 4, 5, 6, 7, 890123))
    assert payload["recorded_at"] == "2024-03-04T05:06:07.890Z"
    assert through_the_wire(payload).recorded_at == RECORDED_AT


# --------------------------------------------------------------------------------------------------
# Full-size payloads


def test_full_size_payload_has_the_whole_key_tree_with_numbers() -> None:
    payload = build("16.5.0-ee", full_size=True)
    leaves = flatten(payload)
    assert len(leaves) >= 1700
    text_leaves = {path for path, value in leaves.items() if isinstance(value, str)}
    assert text_leaves == {
        "recorded_at",
        "uuid",
        "hostname",
        "version",
        "installation_type",
        "edition",
        "license_sha256",
        "licensee.Name",
        "licensee.Email",
        "licensee.Company",
        "license_starts_at",
        "license_expires_at",
        "license_plan",
        "license_subscription_id",
    }
    numbers = [v for v in leaves.values() if type(v) is int]
    assert len(numbers) > 1700
    assert len(set(numbers)) > 100  # plausible spread, not a constant
    assert "counts.projects_jira_server_active" in leaves


def test_full_size_payloads_are_deterministic_and_independent() -> None:
    first = build("15.4.2-ee", full_size=True)
    second = build("15.4.2-ee", full_size=True)
    assert first == second
    first["counts"]["assignee_lists"] = -42
    assert build("15.4.2-ee", full_size=True)["counts"]["assignee_lists"] != -42


def test_keytree_is_the_fixture_tree_without_identity_and_with_zero_leaves() -> None:
    keytree = json.loads(KEYTREE_PATH.read_text())
    fixture = json.loads(FIXTURE.read_text())
    identity = {"recorded_at", "uuid", "hostname", "version", "installation_type", "edition"}
    expected_paths = {path for path in flatten(fixture) if path.split(".")[0] not in identity}
    tree_leaves = flatten(keytree)
    assert set(tree_leaves) == expected_paths
    assert len(tree_leaves) == 1797
    assert {json.dumps(v) for v in tree_leaves.values()} == {"0", "{}"}


# --------------------------------------------------------------------------------------------------
# Misuse


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": "next"}, "version 'next' is not a GitLab version"),
        ({"metrics": {"umau_typo": 3}}, "unknown metric names: umau_typo"),
        ({"metrics": {"umau": -3}}, "metric umau must be a non-negative int or None, not -3"),
        ({"metrics": {"umau": True}}, "metric umau must be a non-negative int or None, not True"),
        ({"metrics": {"licensed_users": 5}}, "disagrees with licensed_users (200)"),
    ],
)
def test_builder_refuses_misuse(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        build("16.5.0-ee", **overrides)
    assert message in str(excinfo.value)
