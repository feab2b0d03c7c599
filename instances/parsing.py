"""Turn a Service Ping request body into plain, validated data.

Pure functions over JSON values: no ORM, no settings. `parse_ping` reads a decoded payload and
raises `PingRejected` with a reason a person can act on. The body's transport (size, gzip, BOM,
JSON) is `instances.transport`; the companion endpoints' payloads are `instances.companions`.

Metric values follow `docs/service-ping.md`: GitLab's failure sentinels, absent keys and
anything that is not a plausible count become `None` (stored as NULL), never 0.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from instances.metrics import METRICS, SENTINELS
from instances.transport import REPLACEMENT, PayloadError, inflate_body, loads_json
from instances.versions import parse_version

__all__ = [
    "MAX_LENGTHS",
    "ParsedPing",
    "PingRejected",
    "bounded_text",
    "check_recorded_at",
    "describe",
    "flatten",
    "parse_ping",
    "parse_timestamp",
    "read_payload_file",
    "read_payload_file_or_reason",
]

INT64_MAX = 2**63 - 1
# Longest text kept per field, matching the database columns. An over-long uuid or hostname means
# a broken sender and refuses the ping; any other over-long field is treated as garbage (None).
MAX_LENGTHS: dict[str, int] = {
    "uuid": 64,
    "hostname": 255,
    "version": 64,
    "edition": 16,
    "license_md5": 32,
    "license_sha256": 64,
    "license_subscription_id": 64,
    "license_id": 64,
    "license_plan": 32,
    "licensee_company": 255,
    "installation_type": 64,
    "message": 10_000,
    "metric_name": 255,
}

_MISSING = object()

# A sender's clock may run a little ahead of ours; a ping further ahead is a broken clock. Stored,
# it would freeze its instance (the newest ping always wins) and create months that have not
# happened, so it is refused.
CLOCK_SKEW = timedelta(minutes=5)
# Service Ping arrived with GitLab 8.10 in 2016; anything earlier is a clock reset, not history.
EARLIEST_RECORDED_AT = datetime(2016, 1, 1, tzinfo=UTC)

# Ruby's Time#to_s ("2020-04-17 07:43:54 UTC", "... +0200") puts a space before the zone.
_TRAILING_ZONE_RE = re.compile(r"\s+(UTC|GMT|Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


class PingRejected(ValueError):
    """A decoded payload that is not a usable Service Ping; `reason` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# Payload files (bulk loading)


def read_payload_file(
    path: str, *, max_bytes: int, compress_level: int = 1, now: datetime | None = None
) -> tuple[ParsedPing, bytes]:
    """Read, inflate and parse one payload file: (parsed ping, its JSON zlib-compressed).

    No Django here: the bulk loader runs this in worker processes. Raises `OSError`,
    `PayloadError` (the file, or its decompressed form, is over `max_bytes`, or is not gzip or
    JSON) or `PingRejected`.
    """
    # O_NOFOLLOW: a link swapped in after the folder was listed is refused too (ELOOP).
    with open(path, "rb", opener=_open_no_follow) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise PayloadError(413, f"file of {size} bytes exceeds the limit of {max_bytes} bytes")
        data = handle.read()
    text = inflate_body(data, content_encoding=None, max_bytes=max_bytes)
    parsed = parse_ping(loads_json(text), now=now)
    return parsed, zlib.compress(text, compress_level)


def _open_no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def read_payload_file_or_reason(
    path: str, *, max_bytes: int, compress_level: int = 1, now: datetime | None = None
) -> tuple[ParsedPing | None, bytes | None, str | None]:
    """`read_payload_file`, with a refusal returned as (None, None, reason) instead of raised."""
    try:
        parsed, blob = read_payload_file(
            path, max_bytes=max_bytes, compress_level=compress_level, now=now
        )
    except (PayloadError, PingRejected) as exc:
        return None, None, exc.reason
    except OSError as exc:
        return None, None, f"cannot read the file: {exc.strerror or exc}"
    return parsed, blob, None


# --------------------------------------------------------------------------------------------------
# Service Ping


@dataclass(frozen=True, slots=True)
class ParsedPing:
    """The fields of a Service Ping that Usage Portal stores.

    `metrics` has every name in `instances.metrics.METRIC_NAMES`; a value is an int or float >= 0,
    or None when unknown. `failed` names the metrics the instance reported one of GitLab's
    failure values for (-1, -2, -3, -1000, {"-1": -1}): unknown, but sent, unlike an absent key.
    `not_numeric` names the metrics whose leaf was present but unusable (text, booleans,
    objects, other negatives, NaN/inf, beyond 64 bits); nulls mean absent and are not listed.
    """

    uuid: str
    hostname: str
    version: str | None
    version_tuple: tuple[int, int, int] | None
    edition: str | None
    recorded_at: datetime
    license_md5: str | None
    license_sha256: str | None
    license_subscription_id: str | None
    license_id: str | None
    license_plan: str | None
    license_trial: bool | None
    license_starts_at: date | None
    license_expires_at: date | None
    licensee_company: str | None
    installation_type: str | None
    metrics: dict[str, int | float | None]
    not_numeric: tuple[str, ...]
    collected_data_categories: tuple[str, ...]
    failed: tuple[str, ...] = ()

    @property
    def billable_users(self) -> int | float | None:
        return self.metrics["billable_users"]

    @property
    def licensed_users(self) -> int | float | None:
        return self.metrics["licensed_users"]

    @property
    def active_users(self) -> int | float | None:
        return self.metrics["active_users"]

    @property
    def historical_max_users(self) -> int | float | None:
        return self.metrics["historical_max_users"]


# (metric name, key paths split into parts), built once: parse_ping runs per ping at ingest rate.
_METRIC_PATHS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = tuple(
    (m.name, tuple(tuple(path.split(".")) for path in m.key_paths)) for m in METRICS
)


def parse_ping(payload: object, *, now: datetime | None = None) -> ParsedPing:
    """Validate a decoded Service Ping and extract identity, license and metrics.

    Refuses (PingRejected) a payload that is not a JSON object, has no non-empty string `uuid`, has
    a `recorded_at` that is missing, not an ISO 8601 / Ruby timestamp or before 2016, a non-string
    `version` or `hostname`, or an over-long uuid/hostname; given `now` (every new ping), also a
    `recorded_at` more than `CLOCK_SKEW` ahead of it. Everything else is lenient: malformed
    optional fields become None. A missing hostname is "". A naive `recorded_at` is taken as UTC.
    """
    if not isinstance(payload, dict):
        raise PingRejected(f"payload is {describe(payload)}, not an object")

    uuid = _required_identity(payload, "uuid")
    hostname = _optional_identity(payload, "hostname")
    recorded_at = _parse_recorded_at(payload.get("recorded_at", _MISSING))
    check_recorded_at(recorded_at, now=now)
    version = payload.get("version")
    if version is not None and not isinstance(version, str):
        raise PingRejected(f"version must be a string, not {describe(version)}")
    version = bounded_text(version, MAX_LENGTHS["version"])

    metrics, not_numeric, failed = _resolve_metrics(payload)
    settings = payload.get("settings")
    plan = bounded_text(payload.get("license_plan"), MAX_LENGTHS["license_plan"])
    trial = payload.get("license_trial")
    return ParsedPing(
        uuid=uuid,
        hostname=hostname,
        version=version,
        version_tuple=parse_version(version),
        edition=bounded_text(payload.get("edition"), MAX_LENGTHS["edition"]),
        recorded_at=recorded_at,
        license_md5=_field(payload, "license_md5"),
        license_sha256=_field(payload, "license_sha256"),
        license_subscription_id=_field(payload, "license_subscription_id"),
        license_id=_field(payload, "license_id"),
        license_plan=plan.lower() if plan else None,
        license_trial=trial if isinstance(trial, bool) else None,
        license_starts_at=_parse_date(payload.get("license_starts_at")),
        license_expires_at=_parse_date(payload.get("license_expires_at")),
        licensee_company=_company(payload.get("licensee")),
        installation_type=_field(payload, "installation_type"),
        metrics=metrics,
        not_numeric=not_numeric,
        collected_data_categories=_categories(settings),
        failed=failed,
    )


def _resolve_metrics(
    payload: dict,
) -> tuple[dict[str, int | float | None], tuple[str, ...], tuple[str, ...]]:
    metrics: dict[str, int | float | None] = {}
    not_numeric: list[str] = []
    failed: list[str] = []
    for name, paths in _METRIC_PATHS:
        leaf = _MISSING
        for parts in paths:
            leaf = _walk(payload, parts)
            if leaf is not _MISSING:
                break
        if leaf is _MISSING:
            metrics[name] = None
            continue
        value, junk = _metric_value(leaf)
        metrics[name] = value
        if junk:
            not_numeric.append(name)
        elif value is None:
            failed.append(name)
    return metrics, tuple(not_numeric), tuple(failed)


def _walk(node: Any, parts: tuple[str, ...]) -> Any:
    """The value at `parts`, or _MISSING; a null leaf counts as missing so a fallback can apply."""
    for part in parts:
        if type(node) is not dict:
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return _MISSING if node is None else node


def _metric_value(leaf: Any) -> tuple[int | float | None, bool]:
    """(value, junk): value is a count in [0, 2**63-1] or None.

    junk is True when the leaf is None for a reason other than one of GitLab's sentinels.
    """
    kind = type(leaf)
    if kind is int:
        if 0 <= leaf <= INT64_MAX:
            return leaf, False
        return None, leaf not in SENTINELS
    if kind is float:
        if math.isfinite(leaf) and 0.0 <= leaf <= INT64_MAX:
            return leaf, False
        return None, leaf not in SENTINELS
    if kind is dict and _is_sentinel_histogram(leaf):
        return None, False
    return None, True


def _is_sentinel_histogram(leaf: dict) -> bool:
    # GitLab reports a failed histogram as {"-1": -1} (key and value both the sentinel).
    if len(leaf) != 1:
        return False
    ((key, value),) = leaf.items()
    return type(value) is int and value in SENTINELS and key == str(value)


def _required_identity(payload: dict, key: str) -> str:
    value = payload.get(key)
    if value is None:
        raise PingRejected(f"missing {key}")
    if not isinstance(value, str):
        raise PingRejected(f"{key} must be a string, not {describe(value)}")
    value = value.strip()
    if not value:
        raise PingRejected(f"missing {key} (empty string)")
    _check_identity_text(key, value)
    return value


def _optional_identity(payload: dict, key: str) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PingRejected(f"{key} must be a string, not {describe(value)}")
    value = value.strip()
    _check_identity_text(key, value)
    return value


def _check_identity_text(key: str, value: str) -> None:
    limit = MAX_LENGTHS[key]
    if len(value) > limit:
        raise PingRejected(f"{key} is {len(value)} characters long, over the limit of {limit}")
    if "\x00" in value or REPLACEMENT in value:
        # What the transport's sanitiser put in place of a NUL or a lone surrogate: a broken
        # sender, and an identity that would not match the instance's next ping.
        raise PingRejected(f"{key} contains a character that is not text (NUL or lone surrogate)")


def bounded_text(value: object, max_length: int) -> str | None:
    """A stripped, non-empty, storable string of at most `max_length` characters, else None."""
    if type(value) is int:
        # license_id is a database id (an integer) in real payloads; ids are kept as text.
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_length:
        return None
    return value


def _field(payload: dict, key: str) -> str | None:
    return bounded_text(payload.get(key), MAX_LENGTHS[key])


def _company(licensee: object) -> str | None:
    if not isinstance(licensee, dict):
        return None
    return bounded_text(licensee.get("Company"), MAX_LENGTHS["licensee_company"])


def _categories(settings: object) -> tuple[str, ...]:
    if not isinstance(settings, dict):
        return ()
    categories = settings.get("collected_data_categories")
    if not isinstance(categories, list):
        return ()
    return tuple(c for c in categories if isinstance(c, str))


def _parse_recorded_at(value: object) -> datetime:
    if value is _MISSING or value is None:
        raise PingRejected("missing recorded_at")
    if not isinstance(value, str):
        raise PingRejected(f"recorded_at must be a string, not {describe(value)}")
    parsed = parse_timestamp(value)
    if parsed is None:
        raise PingRejected(f"recorded_at {value[:64]!r} is not an ISO 8601 timestamp")
    return parsed


def check_recorded_at(recorded_at: datetime, *, now: datetime | None) -> None:
    """Refuse (PingRejected) a timestamp before 2016 or, given `now`, beyond `CLOCK_SKEW` ahead."""
    if recorded_at < EARLIEST_RECORDED_AT:
        raise PingRejected(
            f"recorded_at {recorded_at:%Y-%m-%d %H:%M} UTC is before Service Ping existed (2016)"
        )
    if now is not None and recorded_at > now + CLOCK_SKEW:
        raise PingRejected(
            f"recorded_at {recorded_at:%Y-%m-%d %H:%M} UTC is in the future "
            f"(the portal's clock reads {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        )


def parse_timestamp(value: str) -> datetime | None:
    """Parse an ISO 8601 or Ruby `Time#to_s` timestamp into an aware UTC datetime, else None.

    Accepts "2020-04-17T07:43:54.162+00:00", "2020-04-17T07:43:54.162Z", "2020-04-17 07:43:54 UTC"
    and "2020-04-17 07:43:54 +0200"; a timestamp without a zone is taken as UTC. A bare date is not
    a timestamp.
    """
    text = value.strip()
    match = _TRAILING_ZONE_RE.search(text)
    if match:
        zone = match.group(1).upper()
        offset = "+00:00" if zone in {"UTC", "GMT", "Z"} else zone
        text = text[: match.start()] + offset
    if len(text) <= 10:  # date only: fromisoformat would accept it as midnight
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def _parse_date(value: object) -> date | None:
    """A license date: "2020-01-01", or a timestamp reduced to its UTC date; else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    parsed = parse_timestamp(text)
    return parsed.date() if parsed else None


def describe(value: object) -> str:
    """How a JSON value reads in a rejection reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Flattening (for inspection and tests; parse_ping walks paths directly)


def flatten(payload: object) -> dict[str, object]:
    """Dotted-path → leaf for every leaf of a JSON value.

    Arrays and empty objects are leaves; non-empty objects are descended into. A non-object
    top-level value is returned under the key "".
    """
    return dict(_leaves(payload, ""))


def _leaves(node: object, prefix: str) -> Iterator[tuple[str, object]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node
