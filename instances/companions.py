"""The companion endpoints of Service Ping: `/usage_ping_errors` and `/usage_ping_metadata`.

An instance that cannot build its ping reports why, and one that can reports how long each
metric took. Same rules as `instances.parsing`: pure, malformed inner fields become None, a
payload that is not the expected object raises `PingRejected`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from instances.parsing import MAX_LENGTHS, PingRejected, bounded_text, describe, parse_timestamp
from instances.versions import parse_version

#: Longest plausible timing, in seconds (a day): anything beyond is a broken sender.
MAX_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class PingError:
    """A `/usage_ping_errors` report: the instance could not build its Service Ping."""

    uuid: str | None
    hostname: str
    version: str | None
    version_tuple: tuple[int, int, int] | None
    time: datetime | None
    message: str
    elapsed: float | None


@dataclass(frozen=True, slots=True)
class MetricTiming:
    """How long an instance took to compute one metric (seconds)."""

    name: str
    time_elapsed: float | None


@dataclass(frozen=True, slots=True)
class PingMetadata:
    """A `/usage_ping_metadata` report; entries without a string name are counted in `skipped`."""

    uuid: str | None
    metrics: tuple[MetricTiming, ...]
    skipped: int


def parse_ping_error(payload: object) -> PingError:
    """Read `{"error": {time, uuid, hostname, version, message, elapsed}}`.

    Refuses a payload that is not an object or whose `error` is missing or not an object; inner
    fields are optional: malformed ones become None ("" for hostname and message); the message is
    truncated to MAX_LENGTHS["message"] characters.
    """
    body = _wrapped(payload, "error")
    version = bounded_text(body.get("version"), MAX_LENGTHS["version"])
    time = body.get("time")
    message = body.get("message")
    return PingError(
        uuid=bounded_text(body.get("uuid"), MAX_LENGTHS["uuid"]),
        hostname=bounded_text(body.get("hostname"), MAX_LENGTHS["hostname"]) or "",
        version=version,
        version_tuple=parse_version(version),
        time=parse_timestamp(time) if isinstance(time, str) else None,
        message=_message(message),
        elapsed=_seconds(body.get("elapsed")),
    )


def parse_ping_metadata(payload: object) -> PingMetadata:
    """Read `{"metadata": {uuid, metrics: [{name, time_elapsed}]}}`.

    Refuses a payload that is not an object or whose `metadata` is missing or not an object, or
    whose `metrics` is present but not an array.
    """
    body = _wrapped(payload, "metadata")
    entries = body.get("metrics")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise PingRejected(f"metadata.metrics must be an array, not {describe(entries)}")
    timings = []
    for entry in entries:
        if isinstance(entry, dict) and (
            name := bounded_text(entry.get("name"), MAX_LENGTHS["metric_name"])
        ):
            elapsed = _seconds(entry.get("time_elapsed"))
            timings.append(MetricTiming(name=name, time_elapsed=elapsed))
    return PingMetadata(
        uuid=bounded_text(body.get("uuid"), MAX_LENGTHS["uuid"]),
        metrics=tuple(timings),
        skipped=len(entries) - len(timings),
    )


def _message(value: object) -> str:
    # An error message is kept even when long or odd: truncated (its text is already storable,
    # `instances.transport.clean_text`).
    if not isinstance(value, str):
        return ""
    return value[: MAX_LENGTHS["message"]]


def _wrapped(payload: object, key: str) -> dict:
    if not isinstance(payload, dict):
        raise PingRejected(f"payload is {describe(payload)}, not an object")
    if key not in payload:
        raise PingRejected(f"missing {key}")
    body = payload[key]
    if not isinstance(body, dict):
        raise PingRejected(f"{key} must be an object, not {describe(body)}")
    return body


def _seconds(value: object) -> float | None:
    # Ints are compared as ints: a 309-digit "elapsed" overflows float(), so it is None here.
    if type(value) is int:
        return float(value) if 0 <= value <= MAX_SECONDS else None
    if type(value) is float and math.isfinite(value) and 0 <= value <= MAX_SECONDS:
        return value
    return None
