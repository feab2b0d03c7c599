"""Build realistic Service Ping payloads in GitLab's own format.

Used by the demo seeder (``seed``), the ingest benchmarks and the tests: they build payloads here
and feed them through the real ingest path (`decode_body` → `parse_ping`), so demo data exercises
the same code as real pings. The load generator (``loadgen``) reads the same key lifetimes
(``key_path_available``) to leave out what a version does not send.

Version shapes follow `docs/service-ping.md` ("Versions"): `license_billable_users` from 14.0,
`license_sha256` from 15.2, no `license_md5` from 16.2, and from 17.5 no `counts.ci_builds` with CI
builds L28 under `counts.count_total_create_ci_build_monthly` instead of `counts_monthly.ci_builds`.

`data/service_ping_keytree.json` is the key tree of GitLab's generated fixture
`spec/fixtures/lib/gitlab/usage/sql_metrics_queries.json` (~15.0, 1,797 leaves once the top-level
identity keys are dropped) with every leaf replaced by 0; `full_size=True` payloads are built on it.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from instances.metrics import METRICS, METRICS_BY_NAME
from instances.versions import parse_version

__all__ = ["EDITIONS", "KEYTREE_PATH", "build_payload", "key_path_available"]

Version = tuple[int, int, int]

KEYTREE_PATH = Path(__file__).resolve().parent / "data" / "service_ping_keytree.json"

# Emitted for a metric given as None: the parser reads it back as unknown (NULL).
UNKNOWN_VALUE = -1


def _key_lifetimes() -> dict[str, tuple[Version | None, Version | None]]:
    """Key path → (first version that sends it, first version that no longer does); None = open.

    Metrics whose `introduced` is a plain version contribute their first key path.
    """
    lifetimes: dict[str, tuple[Version | None, Version | None]] = {
        "license_sha256": ((15, 2, 0), None),
        "license_md5": (None, (16, 2, 0)),
        "counts.ci_builds": (None, (17, 5, 0)),
        "counts_monthly.ci_builds": (None, (17, 5, 0)),
        "counts.count_total_create_ci_build_monthly": ((17, 5, 0), None),
    }
    for metric in METRICS:
        introduced = parse_version(metric.introduced)  # None for "< 13.9" and unknown
        if introduced is not None:
            lifetimes.setdefault(metric.key_paths[0], (introduced, None))
    return lifetimes


_KEY_LIFETIMES = _key_lifetimes()
#: The edition a license plan reports (a plan not listed reports "EE Free").
EDITIONS = {"ultimate": "EEU", "premium": "EEP", "starter": "EES", "bronze": "EES"}
_CATEGORIES = ["standard", "subscription", "operational", "optional"]


def key_path_available(path: str, version: Version) -> bool:
    """Whether a payload of `version` carries `path` (paths with no known lifetime always are)."""
    since, until = _KEY_LIFETIMES.get(path, (None, None))
    return (since is None or version >= since) and (until is None or version < until)


def build_payload(
    *,
    uuid: str,
    hostname: str,
    version: str,
    recorded_at: datetime,
    license_md5: str | None = None,
    license_sha256: str | None = None,
    license_subscription_id: str | None = None,
    license_plan: str | None = "ultimate",
    licensed_users: int | None,
    licensee_company: str | None,
    starts_at: date | None,
    expires_at: date | None,
    metrics: Mapping[str, int | None],
    full_size: bool = False,
    also_send: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A Service Ping payload as a GitLab instance of `version` would send it.

    `metrics` maps names from `instances.metrics.METRIC_NAMES` to counts (ints >= 0) or None; a
    metric that is None or not given is sent as the sentinel -1 (the parser reads it as NULL), and a
    metric whose key does not exist in `version` (e.g. billable users before 14.0) is left out.
    `licensed_users` is sent as `license_user_count` (a "licensed_users" entry in `metrics`, if any,
    must agree with it). License hashes are sent only where the version has them. `recorded_at` is
    sent in UTC with millisecond precision (naive means UTC).

    With `full_size=True` the payload carries GitLab's whole ~1,800-leaf key tree, every other leaf
    holding a deterministic plausible number. `also_send` maps further key paths to the values
    sent there whatever the version, as an instance sending two keys for one metric does.

    Raises ValueError for an unparsable version, an unknown metric name, a value that is not a
    non-negative int or None, or conflicting licensed seat counts.
    """
    parsed_version = parse_version(version)
    if parsed_version is None:
        raise ValueError(f"version {version!r} is not a GitLab version")
    values = _checked_metrics(metrics, licensed_users)

    payload: dict[str, Any] = {
        "recorded_at": _format_time(recorded_at),
        "uuid": uuid,
        "hostname": hostname,
        "version": version,
        "installation_type": "omnibus-gitlab",
        "edition": EDITIONS.get((license_plan or "").lower(), "EE Free"),
    }
    if full_size:
        payload.update(orjson.loads(_filled_template()))
    payload.update(
        {
            "license_md5": license_md5,
            "license_sha256": license_sha256,
            "license_id": _license_id(license_md5, license_sha256, license_subscription_id),
            "licensee": {
                "Name": licensee_company,
                "Email": f"admin@{hostname}" if hostname else None,
                "Company": licensee_company,
            },
            "license_user_count": licensed_users,
            "license_starts_at": starts_at.isoformat() if starts_at else None,
            "license_expires_at": expires_at.isoformat() if expires_at else None,
            "license_plan": license_plan,
            "license_add_ons": {},
            "license_trial": False,
            "license_subscription_id": license_subscription_id,
        }
    )
    for key in ("license_md5", "license_sha256", "license_subscription_id"):
        if payload[key] is None:
            del payload[key]
    _set_path(payload, "settings.collected_data_categories", list(_CATEGORIES))
    if not full_size:
        ci_builds_l28 = values.get("ci_builds_l28")
        all_time_builds = UNKNOWN_VALUE if ci_builds_l28 is None else ci_builds_l28 * 13
        _set_path(payload, "counts.ci_builds", all_time_builds)

    for path in _KEY_LIFETIMES:
        if not key_path_available(path, parsed_version):
            _delete_path(payload, path)
    for metric in METRICS:
        path = next((p for p in metric.key_paths if key_path_available(p, parsed_version)), None)
        if path is not None:
            value = values.get(metric.name)
            _set_path(payload, path, UNKNOWN_VALUE if value is None else value)
    for path, value in (also_send or {}).items():
        _set_path(payload, path, value)
    return payload


def _checked_metrics(
    metrics: Mapping[str, int | None], licensed_users: int | None
) -> dict[str, int | None]:
    unknown = sorted(set(metrics) - METRICS_BY_NAME.keys())
    if unknown:
        raise ValueError(f"unknown metric names: {', '.join(unknown)}")
    for name, value in metrics.items():
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"metric {name} must be a non-negative int or None, not {value!r}")
    if "licensed_users" in metrics and metrics["licensed_users"] != licensed_users:
        raise ValueError(
            f"metrics['licensed_users'] ({metrics['licensed_users']!r}) disagrees with "
            f"licensed_users ({licensed_users!r})"
        )
    return {**metrics, "licensed_users": licensed_users}


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _license_id(*identities: str | None) -> int | None:
    identity = next((i for i in identities if i), None)
    return None if identity is None else zlib.crc32(identity.encode()) % 100_000 + 1


def _set_path(tree: dict[str, Any], path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _delete_path(tree: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


@functools.cache
def _keytree() -> dict[str, Any]:
    return orjson.loads(KEYTREE_PATH.read_bytes())


@functools.cache
def _filled_template() -> bytes:
    """The key tree with plausible numbers in every leaf, serialised once: a copy is one parse."""
    tree = orjson.loads(orjson.dumps(_keytree()))
    _fill(tree, "")
    return orjson.dumps(tree)


def _fill(node: dict[str, Any], prefix: str) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _fill(value, path)
        else:
            node[key] = _plausible(path)


def _plausible(path: str) -> int:
    # Stable per key path, so full-size payloads are reproducible; all-time counts run larger.
    spread = 50_000 if path.startswith("counts.") else 500
    return zlib.crc32(path.encode()) % spread
